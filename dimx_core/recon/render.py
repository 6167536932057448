"""Rendering a scene along camera poses (the fly-through, the turntable, the held-out views)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from ..camera import Trajectory
from ..hooks import NO_HOOKS, Hooks
from .deform import gaussians_at
from .gaussians import Gaussians, check_renderable
from .raster import Rasterizer
from .reference import rasterization as reference_rasterization

CPU_RASTERIZER = Rasterizer("torch", torch.device("cpu"), reference_rasterization)


def camera_tensors(trajectory: Trajectory, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """World-to-camera matrices (N, 4, 4) and intrinsics (N, 3, 3), float32, as rasterizers take them."""
    viewmats = torch.as_tensor(np.linalg.inv(trajectory.c2w_opencv), dtype=torch.float32, device=device)
    return viewmats, torch.as_tensor(trajectory.intrinsics, dtype=torch.float32, device=device)


def look_at_c2w(eye: np.ndarray, target: np.ndarray, down=(0.0, 1.0, 0.0)) -> np.ndarray:
    """Camera-to-world (OpenCV: x right, y down, z forward) of a camera at `eye` looking at `target`, with
    its image's down direction as close to `down` as the view allows."""
    eye, target = np.asarray(eye, np.float64), np.asarray(target, np.float64)
    forward = (target - eye) / np.linalg.norm(target - eye)
    right = np.cross(np.asarray(down, np.float64), forward)
    right /= np.linalg.norm(right)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([right, np.cross(forward, right), forward], axis=1)
    c2w[:3, 3] = eye
    return c2w


def render_views(gaussians: Gaussians, trajectory: Trajectory, *, times: Sequence[float] | None = None,
                 rasterizer: Rasterizer = CPU_RASTERIZER, background=(0.0, 0.0, 0.0),
                 hooks: Hooks = NO_HOOKS) -> torch.Tensor:
    """One image per pose, (N, H, W, 3) float in 0..1 on the CPU. With `times` (one per pose), a deformable
    scene is shown at each frame's own time (a camera-and-time fly-through); without, as it is stored (a 4D
    scene's canonical state)."""
    if times is not None and len(times) != len(trajectory):
        raise ValueError(f"times: got {len(times)} times for {len(trajectory)} poses; give one time per pose")
    check_renderable(gaussians, "the scene")
    scene = gaussians.to(rasterizer.device)
    if scene.deformation is not None:
        scene = replace(scene, deformation=scene.deformation.on(rasterizer.device))
    viewmats, intrinsics = camera_tensors(trajectory, rasterizer.device)
    colour = torch.as_tensor(background, dtype=torch.float32, device=rasterizer.device)
    frames = []
    with torch.no_grad():
        for index in range(len(trajectory)):
            shown = scene if times is None else gaussians_at(scene, times[index])
            image, _, _ = rasterizer.render(shown.means, shown.quats_wxyz, shown.log_scales, shown.opacity_logits,
                                            shown.sh, viewmats[index:index + 1], intrinsics[index:index + 1],
                                            trajectory.width, trajectory.height, sh_degree=shown.sh_degree,
                                            background=colour)
            frames.append(image[0].clamp(0, 1).cpu())
            hooks.step(index + 1, len(trajectory), frames[-1])
    return torch.stack(frames)


def turntable(gaussians: Gaussians, frames: int, width: int, height: int, *, fov_deg: float = 50.0,
              elevation_deg: float = 15.0, around: Trajectory | None = None) -> Trajectory:
    """A full circle of cameras around the scene's centre, upright in the frame of `around` (the fitted
    cameras) when given, at a distance that keeps the scene in view."""
    check_renderable(gaussians, "the scene")
    with torch.no_grad():
        means = gaussians.means.detach().cpu().double().numpy()
        weights = torch.sigmoid(gaussians.opacity_logits.detach()).cpu().double().numpy()
    centre = np.average(means, axis=0, weights=weights + 1e-9)
    spread = np.sqrt(np.average(((means - centre) ** 2).sum(axis=1), weights=weights + 1e-9))
    if around is not None:
        down = around.c2w_opencv[:, :3, 1].mean(axis=0)
        start = around.positions[0] - centre
    else:
        down, start = np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, -1.0])
    down /= np.linalg.norm(down)
    start -= down * (start @ down)
    if np.linalg.norm(start) < 1e-9:
        start = np.cross(down, [1.0, 0.0, 0.0]) if abs(down[0]) < 0.9 else np.cross(down, [0.0, 0.0, 1.0])
    start /= np.linalg.norm(start)
    distance = 2.0 * spread / math.tan(math.radians(fov_deg) / 2) if spread > 0 else 1.0
    if around is not None:
        distance = min(distance, max(np.linalg.norm(around.positions - centre, axis=1).max(), 1e-6) * 1.5)
    focal = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    k = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    side = np.cross(down, start)
    lift = math.radians(elevation_deg)
    poses = []
    for angle in np.linspace(0.0, 2 * math.pi, frames, endpoint=False):
        direction = math.cos(angle) * start + math.sin(angle) * side
        eye = centre + distance * (math.cos(lift) * direction - math.sin(lift) * down)
        poses.append(look_at_c2w(eye, centre, down))
    return Trajectory(np.stack(poses), np.repeat(k[None], frames, axis=0), width, height, pattern="turntable",
                      pivot=centre)
