"""Where the Gaussians start: SfM points when there are some, else random points in a cube about the scene, as
gsplat's trainer starts; coloured from the frames they project into and sized by their neighbours."""
from __future__ import annotations

import math

import numpy as np
import torch

from ..camera import Trajectory
from .gaussians import Gaussians, rgb_to_sh_dc, sh_bases

INITIAL_OPACITY = 0.1  # gsplat's default: start faint, let the fit decide
PROJECTED_AT_ONCE = 1 << 21  # (point, camera) pairs projected together when the cube is culled


def camera_extent(cameras: Trajectory) -> float:
    """The cameras' largest distance from their mean position (gsplat's scene scale is 1.1 x this)."""
    return float(np.linalg.norm(cameras.positions - cameras.positions.mean(axis=0), axis=1).max())


def scene_depth(cameras: Trajectory) -> float:
    """Typical distance from the first camera to the scene: to the pivot when the path has one, else a
    multiple of the camera path's size (at least 1 unit, the pack's default scene distance)."""
    if cameras.pivot is not None:
        in_first = np.linalg.inv(cameras.c2w_opencv[0]) @ np.append(cameras.pivot, 1.0)
        if in_first[2] > 1e-6:
            return float(in_first[2])
    return max(1.0, 3.0 * camera_extent(cameras))


def scene_scale(cameras: Trajectory) -> float:
    """gsplat's scene scale (1.1 x the cameras' extent), kept from collapsing for small camera moves."""
    return max(1.1 * camera_extent(cameras), 0.5 * scene_depth(cameras))


def _project(points: np.ndarray, cameras: Trajectory) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates (C, P, 2) and depths (C, P) of world points in every camera."""
    w2c = np.linalg.inv(cameras.c2w_opencv)
    local = np.einsum("cij,pj->cpi", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
    depth = local[..., 2]
    pixels = np.einsum("cij,cpj->cpi", cameras.intrinsics, local)[..., :2] / np.where(depth > 1e-9, depth, 1e-9)[..., None]
    return pixels, depth


def _visible(pixels: np.ndarray, depth: np.ndarray, cameras: Trajectory) -> np.ndarray:
    return ((depth > 1e-6) & (pixels[..., 0] >= 0) & (pixels[..., 0] < cameras.width)
            & (pixels[..., 1] >= 0) & (pixels[..., 1] < cameras.height))


def scene_centre(cameras: Trajectory) -> np.ndarray:
    """The pivot the path turns about, else the point `scene_depth` ahead of the first camera."""
    if cameras.pivot is not None:
        return np.asarray(cameras.pivot, dtype=np.float64)
    return cameras.c2w_opencv[0, :3, 3] + scene_depth(cameras) * cameras.c2w_opencv[0, :3, 2]


def cube_points(cameras: Trajectory, count: int, generator: np.random.Generator) -> np.ndarray:
    """Of `count` points uniform in a cube about the scene centre, as gsplat's trainer starts without SfM, those that
    some camera sees: a point no camera sees never gets a gradient and would stay, unfitted, as haze in the saved
    scene (and as work on a CPU). The cube's half width is 3 x gsplat's scene scale (1.1 x the cameras' extent), at
    least 0.75 x the scene depth so a zoom or a short pan (cameras that barely move) still gets a cube about as deep
    as the scene. Measured on 720x480 orbits (bench/RESULTS-recon-start-device.md), this start beat points confined
    to the cameras' shared frustum by 1.0-3.4 dB in the 3D fit."""
    half_width = max(3.0 * 1.1 * camera_extent(cameras), 0.75 * scene_depth(cameras))
    points = scene_centre(cameras) + generator.uniform(-half_width, half_width, (count, 3))
    seen = np.concatenate([_visible(*_project(batch, cameras), cameras).any(axis=0)
                           for batch in np.array_split(points, -(-count * len(cameras) // PROJECTED_AT_ONCE) or 1)])
    if not seen.any():
        raise ValueError("no camera of this trajectory sees any of the starting points about its scene centre; "
                         "check that the cameras look at the scene (their poses and intrinsics)")
    return points[seen]


def shared_frustum_points(cameras: Trajectory, count: int, generator: np.random.Generator) -> np.ndarray:
    """`count` points seen by every camera (or by most, when the views barely overlap), between a quarter and
    two and a half times the scene depth, denser near the cameras (log-uniform in depth). Drawn in batches so
    memory stays small for 100k points and 49 cameras."""
    depth = scene_depth(cameras)
    k_inv = np.linalg.inv(cameras.intrinsics[0])
    chosen: list[np.ndarray] = []
    needed_share, found, drawn = 1.0, 0, 0
    while found < count:
        batch = min(4 * count, 1 << 16)
        pixels = generator.uniform([0, 0], [cameras.width, cameras.height], (batch, 2))
        depths = depth * np.exp(generator.uniform(math.log(0.25), math.log(2.5), batch))
        local = (np.c_[pixels, np.ones(batch)] @ k_inv.T) * depths[:, None]
        world = local @ cameras.c2w_opencv[0, :3, :3].T + cameras.c2w_opencv[0, :3, 3]
        seen = _visible(*_project(world, cameras), cameras).mean(axis=0)
        chosen.append(world[seen >= needed_share - 1e-9])
        found, drawn = found + len(chosen[-1]), drawn + batch
        if drawn >= 12 * count and found < count / 2:  # the views barely overlap: accept points most cameras see
            if needed_share <= 0.5:
                raise ValueError("the cameras of this trajectory share almost no field of view; cannot place "
                                 "starting points for the reconstruction")
            needed_share, drawn = max(0.5, needed_share - 0.1), 0
    return np.concatenate(chosen)[:count]


def neighbour_scales(points: np.ndarray, alone: float) -> np.ndarray:
    """gsplat's starting size: the root mean square distance to the 3 nearest other points (`alone` for a point
    that has none)."""
    from scipy.spatial import cKDTree

    if len(points) < 2:
        return np.full(len(points), alone)
    distances, _ = cKDTree(points).query(points, k=min(4, len(points)))
    return np.sqrt((distances[:, 1:] ** 2).mean(axis=1))


def sample_colours(points: np.ndarray, cameras: Trajectory, frames: np.ndarray) -> np.ndarray:
    """Mean colour of each point over the frames it projects into (grey where it projects into none)."""
    pixels, depth = _project(points, cameras)
    visible = _visible(pixels, depth, cameras)
    total = np.zeros((len(points), 3))
    hits = np.zeros(len(points))
    for index, frame in enumerate(frames):
        seen = visible[index]
        columns = np.clip(pixels[index, seen, 0].astype(int), 0, cameras.width - 1)
        rows = np.clip(pixels[index, seen, 1].astype(int), 0, cameras.height - 1)
        total[seen] += frame[rows, columns]
        hits[seen] += 1
    return np.where(hits[:, None] > 0, total / np.maximum(hits, 1)[:, None], 0.5)


# where the random starting points lie when SfM gives none: (cameras, count, generator) -> points
STARTS = {"cube": cube_points, "frustum": shared_frustum_points}


def initial_gaussians(cameras: Trajectory, frames: np.ndarray, *, count: int, sh_degree: int, seed: int,
                      start: str = "cube", points: np.ndarray | None = None,
                      colours: np.ndarray | None = None) -> Gaussians:
    """Isotropic Gaussians as wide as their distance to their neighbours, faint, with the DC colour of their
    points: gsplat's trainer's start, coloured from the frames instead of at random. Without SfM points, `start` (a
    key of STARTS) places `count` random ones."""
    if start not in STARTS:
        raise ValueError(f"start must be one of {', '.join(STARTS)}, got {start!r}")
    if points is None or len(points) == 0:
        points = STARTS[start](cameras, count, np.random.default_rng(seed))
        colours = None
    if colours is None:
        colours = sample_colours(points, cameras, frames)
    scales = np.maximum(neighbour_scales(np.asarray(points, dtype=np.float64), 0.1 * scene_depth(cameras)), 1e-6)
    n = len(points)
    sh = torch.zeros(n, sh_bases(sh_degree), 3)
    sh[:, 0] = rgb_to_sh_dc(torch.as_tensor(colours, dtype=torch.float32))
    return Gaussians(means=torch.as_tensor(points, dtype=torch.float32),
                     log_scales=torch.as_tensor(np.log(scales), dtype=torch.float32)[:, None].repeat(1, 3),
                     quats_wxyz=torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
                     opacity_logits=torch.full((n,), math.log(INITIAL_OPACITY / (1 - INITIAL_OPACITY))), sh=sh)
