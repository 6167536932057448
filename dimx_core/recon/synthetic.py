"""Scenes with known ground truth, for tests and benchmarks: a textured ball of Gaussians seen by a camera rig.

The rig follows the pack's trajectory convention (OpenCV cameras, the first camera at the origin looking down
+z) and orbits a pivot on the +z axis, like an S-Director orbit. It is a measuring instrument, not a planner:
trajectories users request come from dimx_core.camera.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from ..camera import Trajectory
from .gaussians import Gaussians, rgb_to_sh_dc
from .render import look_at_c2w


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
    """Flat Gaussians tiling a sphere (Fibonacci lattice), coloured by a checker of hues plus noise:
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
    rgb = np.where(checker[:, None] > 0, rgb, 1.0 - rgb) * 0.85 + generator.uniform(0, 0.15, (count, 3))
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
