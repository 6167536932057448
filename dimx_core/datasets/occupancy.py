"""Is a planned camera path in free space the scene's cameras covered? (the paper's occupancy check)

The paper fuses depth rendered from the reconstruction into a TSDF mesh and keeps paths away from it, inside
the PCA box of the scene's cameras. Here no mesh is built: depth is rendered from the Gaussians themselves with
an opacity threshold (a pixel has a surface where the accumulated opacity reaches `opacity_threshold`, at the
opacity-weighted mean depth of the Gaussians there), and each camera position of the path is tested against
every reference depth map (the scene's own cameras) as the signed distance along that view's ray - the quantity
TSDF fusion averages - plus the depth each pose of the path sees ahead of it. A path is refused when a position
- leaves the PCA box of the scene's cameras grown by `box_margin`,
- is nearer than `clearance` to a surface along a reference view's ray, or sees one nearer than that ahead,
- lies behind the surface in every reference view that sees it (inside an object, or beyond a wall).
Lengths are fractions of the scene distance (how far the scene's cameras stand from what they look at).
"""
from __future__ import annotations

import numpy as np
import torch

from ..camera import Trajectory, camera_bounds
from ..recon.gaussians import Gaussians
from ..recon.raster import Rasterizer
from ..recon.render import camera_tensors
from .settings import OccupancySettings

NEAR = 1e-3


def scaled_cameras(cameras: Trajectory, width: int) -> Trajectory:
    """The same cameras rendering at most `width` pixels wide (intrinsics scaled with the image)."""
    scale = min(1.0, width / cameras.width)
    size = (max(1, round(cameras.width * scale)), max(1, round(cameras.height * scale)))
    intrinsics = cameras.intrinsics.copy()
    intrinsics[:, 0] *= size[0] / cameras.width
    intrinsics[:, 1] *= size[1] / cameras.height
    return Trajectory(cameras.c2w_opencv, intrinsics, size[0], size[1], pattern=cameras.pattern)


def render_depth(gaussians: Gaussians, cameras: Trajectory, rasterizer: Rasterizer,
                 opacity_threshold: float) -> np.ndarray:
    """(N, H, W) depth along each camera's optical axis; +inf where the accumulated opacity stays below the
    threshold (no surface on that ray)."""
    scene = gaussians.to(rasterizer.device)
    viewmats, intrinsics = camera_tensors(cameras, rasterizer.device)
    maps = []
    with torch.no_grad():
        for index in range(len(cameras)):
            view = viewmats[index]
            depth_of_each = (scene.means @ view[:3, :3].T + view[:3, 3])[:, 2:3]  # (N, 1) camera z
            summed, alpha, _ = rasterizer.render(scene.means, scene.quats_wxyz, scene.log_scales,
                                                 scene.opacity_logits, depth_of_each, view[None],
                                                 intrinsics[index:index + 1], cameras.width, cameras.height,
                                                 sh_degree=None)
            summed, alpha = summed[0, ..., 0].cpu().numpy(), alpha[0, ..., 0].cpu().numpy()
            surface = alpha >= opacity_threshold
            maps.append(np.where(surface, summed / np.maximum(alpha, 1e-6), np.inf))
    return np.stack(maps)


def signed_distances(positions: np.ndarray, cameras: Trajectory, depths: np.ndarray) -> np.ndarray:
    """(P, V) rendered surface depth minus the position's depth, along each view's ray; NaN where view V does
    not see position P (behind it or outside its image)."""
    w2c = np.linalg.inv(cameras.c2w_opencv)                                     # (V, 4, 4)
    local = np.einsum("vij,pj->pvi", w2c[:, :3, :3], positions) + w2c[None, :, :3, 3]
    z = local[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = cameras.intrinsics[None, :, 0, 0] * local[..., 0] / z + cameras.intrinsics[None, :, 0, 2]
        v = cameras.intrinsics[None, :, 1, 1] * local[..., 1] / z + cameras.intrinsics[None, :, 1, 2]
    seen = (z > NEAR) & (u >= 0) & (u < cameras.width) & (v >= 0) & (v < cameras.height)
    columns = np.clip(np.nan_to_num(u), 0, cameras.width - 1).astype(int)
    rows = np.clip(np.nan_to_num(v), 0, cameras.height - 1).astype(int)
    surface = depths[np.arange(len(cameras))[None, :], rows, columns]
    return np.where(seen, surface - z, np.nan)


class SceneOccupancy:
    """The free, covered space of one scene, measured once; `check` tells why a path leaves it (or None)."""

    def __init__(self, gaussians: Gaussians, scene_distance: float, rasterizer: Rasterizer,
                 settings: OccupancySettings = OccupancySettings()):
        if gaussians.cameras is None:
            raise ValueError("the scene carries no cameras: the occupancy check needs the cameras it was fitted "
                             "from (a <name>.transforms.json beside the PLY)")
        self.gaussians, self.rasterizer, self.settings = gaussians, rasterizer, settings
        self.bounds = camera_bounds(gaussians.cameras.positions)
        self.margin = settings.box_margin * scene_distance
        self.clearance = settings.clearance * scene_distance
        self.views = scaled_cameras(gaussians.cameras, settings.depth_width)
        self.depths = render_depth(gaussians, self.views, rasterizer, settings.opacity_threshold)

    def outside_box(self, positions: np.ndarray) -> np.ndarray:
        """(P,) how far each position lies outside the grown camera box (0 inside)."""
        local = (positions - self.bounds.center) @ self.bounds.axes.T
        low = self.bounds.extent_min - self.margin - local
        high = local - self.bounds.extent_max - self.margin
        return np.linalg.norm(np.maximum(np.maximum(low, high), 0.0), axis=1)

    def check(self, path: Trajectory) -> str | None:
        positions = path.positions
        outside = self.outside_box(positions)
        if (outside > 1e-9).any():
            frame = int(np.argmax(outside > 1e-9))
            return (f"leaves the camera region: frame {frame} is {outside[frame]:.3g} outside the PCA box of the "
                    f"scene's cameras (grown by {self.margin:.3g})")
        distances = signed_distances(positions, self.views, self.depths)
        near = np.abs(np.nan_to_num(distances, nan=np.inf)) < self.clearance
        if near.any():
            frame, view = map(int, np.argwhere(near)[0])
            return (f"too close to the surface: frame {frame} is {abs(distances[frame, view]):.3g} from the surface "
                    f"scene camera {view} sees (clearance {self.clearance:.3g})")
        seen = ~np.isnan(distances)
        hidden = seen.any(axis=1) & ~(np.nan_to_num(distances, nan=-np.inf) > 0).any(axis=1)
        if hidden.any():
            frame = int(np.argmax(hidden))
            return (f"inside or behind the surface: frame {frame} lies behind it in every scene camera that sees "
                    "that position")
        checked = sorted({*range(0, len(path), self.settings.ahead_every), len(path) - 1})
        ahead_path = Trajectory(path.c2w_opencv[checked], path.intrinsics[checked], path.width, path.height)
        ahead = render_depth(self.gaussians, scaled_cameras(ahead_path, self.settings.depth_width),
                             self.rasterizer, self.settings.opacity_threshold).min(axis=(1, 2))
        if (ahead < self.clearance).any():
            index = int(np.argmax(ahead < self.clearance))
            return (f"too close to the surface: frame {checked[index]} sees the surface {ahead[index]:.3g} ahead "
                    f"(clearance {self.clearance:.3g})")
        return None
