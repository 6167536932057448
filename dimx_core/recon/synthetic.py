"""Scenes with known ground truth, for tests and benchmarks: a textured ball of Gaussians seen by a camera rig.

The rig follows the pack's trajectory convention (OpenCV cameras, the first camera at the origin looking down
+z) and orbits a pivot on the +z axis, like an S-Director orbit. It is a measuring instrument, not a planner:
trajectories users request come from dimx_core.camera.
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import torch

from ..camera import Trajectory
from .deform import compose_rotation
from .gaussians import Gaussians, rgb_to_sh_dc
from .render import look_at_c2w, render_views


def orbit_rig(frames: int, degrees: float, width: int, height: int, *, distance: float = 2.0,
              fov_deg: float = 50.0, axis: str = "y") -> Trajectory:
    """`frames` cameras turning `degrees` around the pivot (0, 0, distance), always looking at it.

    axis "y" orbits sideways (left/right), "x" over the top (up/down)."""
    pivot = np.array([0.0, 0.0, distance])
    focal = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    intrinsics = np.array([[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]])
    poses = []
    for angle in np.radians(np.linspace(0.0, degrees, frames)):
        c, s = math.cos(angle), math.sin(angle)
        turn = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) if axis == "y" else \
            np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
        poses.append(look_at_c2w(pivot + turn @ np.array([0.0, 0.0, -distance]), pivot,
                                 down=turn @ np.array([0.0, 1.0, 0.0])))
    return Trajectory(np.stack(poses), np.repeat(intrinsics[None], frames, axis=0), width, height,
                      pattern=f"synthetic_orbit_{axis}", pivot=pivot, meta={"degrees": degrees})


def textured_ball(count: int = 600, *, radius: float = 0.6, centre=(0.0, 0.0, 2.0), seed: int = 0) -> Gaussians:
    """Flat Gaussians tiling a sphere (Fibonacci lattice), coloured by a checker of hues and per-Gaussian noise:
    rich in texture (for SfM and for PSNR to mean something), opaque, view-independent (SH degree 0)."""
    generator = np.random.default_rng(seed)
    index = np.arange(count) + 0.5
    polar = np.arccos(1.0 - 2.0 * index / count)
    azimuth = math.pi * (1.0 + 5.0 ** 0.5) * index
    normals = np.stack([np.sin(polar) * np.cos(azimuth), np.cos(polar), np.sin(polar) * np.sin(azimuth)], axis=1)
    spacing = radius * math.sqrt(4.0 * math.pi / count)
    checker = (np.floor(polar / math.pi * 6) + np.floor((azimuth % (2 * math.pi)) / math.pi * 6)) % 2
    hue = (azimuth % (2 * math.pi)) / (2 * math.pi)
    rgb = np.stack([0.5 + 0.4 * np.cos(2 * math.pi * (hue + k / 3)) for k in range(3)], axis=1)
    # half pattern, half per-Gaussian noise: fine texture is what lets SfM fix rotations to a fraction of a degree
    rgb = np.where(checker[:, None] > 0, rgb, 1.0 - rgb) * 0.5 + generator.uniform(0, 0.5, (count, 3))
    # rotate local z onto the normal: the shortest-arc quaternion from (0, 0, 1); half a turn about x at the pole
    quats = np.concatenate([(1.0 + normals[:, 2:3]), -normals[:, 1:2], normals[:, 0:1], np.zeros((count, 1))],
                           axis=1)
    degenerate = np.linalg.norm(quats, axis=1) < 1e-6
    quats[degenerate] = [0.0, 1.0, 0.0, 0.0]
    quats /= np.linalg.norm(quats, axis=1, keepdims=True)
    scales = np.tile([0.55 * spacing, 0.55 * spacing, 0.1 * spacing], (count, 1))
    tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    return Gaussians(means=tensor(normals * radius + np.asarray(centre)), log_scales=tensor(np.log(scales)),
                     quats_wxyz=tensor(quats), opacity_logits=torch.full((count,), 4.0),
                     sh=rgb_to_sh_dc(tensor(rgb))[:, None, :])


def textured_wall(count: int = 900, *, width: float = 4.0, height: float = 3.0, depth: float = 3.5,
                  seed: int = 1) -> Gaussians:
    """Flat Gaussians on a jittered grid in the plane z = `depth`, facing the cameras, in blotchy colours:
    the backdrop that gives structure-from-motion depth variety (a lone ball leaves rotation and translation
    ambiguous)."""
    generator = np.random.default_rng(seed)
    columns = max(int(round(math.sqrt(count * width / height))), 1)
    rows = max(count // columns, 1)
    xs, ys = np.meshgrid((np.arange(columns) + 0.5) / columns - 0.5, (np.arange(rows) + 0.5) / rows - 0.5)
    spacing = width / columns
    positions = np.stack([xs.ravel() * width, ys.ravel() * height, np.full(xs.size, depth)], axis=1)
    positions[:, :2] += generator.uniform(-0.3, 0.3, (xs.size, 2)) * spacing
    blobs = generator.uniform(-0.5, 0.5, (12, 2)) * [width, height]
    blob_colours = generator.uniform(0.1, 0.9, (12, 3))
    distance = np.linalg.norm(positions[:, None, :2] - blobs[None], axis=2)
    rgb = blob_colours[distance.argmin(axis=1)] * 0.5 + generator.uniform(0, 0.5, (xs.size, 3))
    n = xs.size
    tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    return Gaussians(means=tensor(positions),
                     log_scales=tensor(np.log(np.tile([0.7 * spacing, 0.7 * spacing, 0.05 * spacing], (n, 1)))),
                     quats_wxyz=tensor(np.tile([1.0, 0.0, 0.0, 0.0], (n, 1))),
                     opacity_logits=torch.full((n,), 4.0), sh=rgb_to_sh_dc(tensor(rgb))[:, None, :])


def ball_before_wall(count: int = 1500, seed: int = 0) -> Gaussians:
    """The benchmark scene: a textured ball 2 units in front of the first camera, a wall behind it."""
    ball, wall = textured_ball(int(count * 0.4), seed=seed), textured_wall(count - int(count * 0.4), seed=seed + 1)
    return Gaussians(*(torch.cat([getattr(ball, name), getattr(wall, name)])
                       for name in ("means", "log_scales", "quats_wxyz", "opacity_logits", "sh")))


def low_texture_ball_before_wall(count: int = 1500, seed: int = 0, *, noise: float = 0.2) -> Gaussians:
    """`ball_before_wall`'s geometry in smooth colours (a slow colour wave plus `noise` per Gaussian): the kind of
    frames on which SfM still registers every frame, but from few points and with poses degrees off."""
    scene = ball_before_wall(count, seed)
    generator = np.random.default_rng(seed)
    means = scene.means.numpy()
    rgb = (0.5 + 0.15 * np.sin(means[:, [0]] * 3.0 + means[:, [1]] * 2.0 + np.array([0.0, 2.0, 4.0]))
           + noise * generator.uniform(-1.0, 1.0, (len(means), 3)))
    return replace(scene, sh=rgb_to_sh_dc(torch.as_tensor(rgb, dtype=torch.float32))[:, None, :])


def moving_ball_before_wall(t: float, count: int = 1500, seed: int = 0, *, shift: float = 0.4,
                            lift: float = 0.15, turn_deg: float = 60.0) -> Gaussians:
    """The 4D ground truth: a textured ball (smaller than `ball_before_wall`'s, so its motion shows) before the
    wall at time t in [0, 1], sliding `shift` units sideways along a `lift`-high arc (non-linear in time) and
    turning `turn_deg` about its vertical axis while the wall stays."""
    ball = textured_ball(int(count * 0.4), radius=0.45, seed=seed)
    wall = textured_wall(count - int(count * 0.4), seed=seed + 1)
    angle = math.radians(turn_deg) * t
    c, s = math.cos(angle), math.sin(angle)
    turn = torch.tensor([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])
    centre = ball.means.mean(dim=0)
    offset = torch.tensor([shift * (t - 0.5), -lift * math.sin(math.pi * t), 0.0])
    # a turn by `angle` about y is the unit quaternion (cos a/2, 0, sin a/2, 0), i.e. (1, 0, tan a/2, 0) normalised
    delta = torch.tensor([[0.0, math.tan(angle / 2), 0.0]]).expand(len(ball), 3)
    moved = replace(ball, means=(ball.means - centre) @ turn.T + centre + offset,
                    quats_wxyz=compose_rotation(delta, ball.quats_wxyz))
    return Gaussians(*(torch.cat([getattr(moved, name), getattr(wall, name)])
                       for name in ("means", "log_scales", "quats_wxyz", "opacity_logits", "sh")))


def dynamic_frames(cameras: Trajectory, times: list[float], count: int = 1500, *, seed: int = 0,
                   rasterizer=None) -> torch.Tensor:
    """(K x N, H, W, 3) frames of `moving_ball_before_wall` seen by the K `cameras` at each of the N `times`,
    camera after camera (the layout Multi-View Generate outputs)."""
    options = {} if rasterizer is None else {"rasterizer": rasterizer}
    per_time = torch.stack([render_views(moving_ball_before_wall(t, count, seed), cameras, **options)
                            for t in times])                     # (N, K, H, W, 3)
    return per_time.transpose(0, 1).reshape(len(cameras) * len(times), *per_time.shape[2:])


def ball_on_fine_ground(count: int = 3000, seed: int = 0, *, ground_y: float = 0.45, period: float = 0.08) -> Gaussians:
    """`ball_before_wall` standing on a ground plane (y = `ground_y`, below the cameras: OpenCV's y points down)
    painted with a fine checker of `period` units, which the orbit's cameras see at grazing angles: the
    high-frequency texture on which a fit's densification and sampling are put to the test."""
    scene = ball_before_wall(count // 2, seed)
    generator = np.random.default_rng(seed + 2)
    side = max(int(math.sqrt(count - count // 2)), 2)
    xs, zs = np.meshgrid(np.linspace(-1.6, 1.6, side), np.linspace(0.6, 3.5, side))
    spacing = 3.2 / (side - 1)
    positions = np.stack([xs.ravel(), np.full(xs.size, ground_y), zs.ravel()], axis=1)
    checker = (np.floor(positions[:, 0] / period) + np.floor(positions[:, 2] / period)) % 2
    rgb = np.where(checker[:, None] > 0, 0.85, 0.15) + generator.uniform(-0.1, 0.1, (xs.size, 3))
    # flat in the ground plane: local z turned onto the world y axis (a quarter turn about x)
    quats = np.tile([math.cos(math.pi / 4), math.sin(math.pi / 4), 0.0, 0.0], (xs.size, 1))
    tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    ground = Gaussians(means=tensor(positions),
                       log_scales=tensor(np.log(np.tile([0.6 * spacing, 0.6 * spacing, 0.05 * spacing], (xs.size, 1)))),
                       quats_wxyz=tensor(quats), opacity_logits=torch.full((xs.size,), 4.0),
                       sh=rgb_to_sh_dc(tensor(np.clip(rgb, 0, 1)))[:, None, :])
    return Gaussians(*(torch.cat([getattr(scene, name), getattr(ground, name)])
                       for name in ("means", "log_scales", "quats_wxyz", "opacity_logits", "sh")))
