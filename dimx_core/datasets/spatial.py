"""Spatial-variant clips (paper: trajectory planning for spatial-variant data): a reconstructed scene filmed
along the camera path of one S-Director motion, so the director learns that motion through a frozen scene.

For each clip: the PCA box of the scene's cameras (camera.bounds), a start position drawn inside it looking at
the point the scene's cameras look at, the pattern's path planned from there (camera.planner, the same paths
the Trajectory Planner draws), the occupancy check (occupancy.py) and, when it passes, the path rendered at
the model's size and frame count (gsplat on CUDA, the PyTorch reference rasterizer elsewhere). A start that
fails is recorded with its reason and another is drawn, up to `attempts` times per clip.
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..camera import Trajectory, patterns, plan
from ..hooks import NO_HOOKS, Hooks
from ..recon.gaussians import Gaussians
from ..recon.raster import Rasterizer
from ..recon.render import look_at_c2w, render_views
from .captions import caption, parse_templates
from .layout import ClipGeometry, DatasetSummary, DatasetWriter
from .occupancy import SceneOccupancy
from .settings import SPATIAL_TEMPLATE, SpatialSettings

@dataclass(frozen=True)
class Scene:
    name: str             # for captions and the report (the file's stem)
    gaussians: Gaussians  # with the cameras it was fitted from


@dataclass(frozen=True)
class SceneFrame:
    """Where a scene's cameras look, how far they stand from it, which way is down for them, their lens."""
    focus: np.ndarray
    distance: float
    down: np.ndarray
    fov_deg: float


def scene_frame(gaussians: Gaussians) -> SceneFrame:
    """The focus is the point nearest to all the cameras' optical axes (least squares), or, when the axes are
    near parallel (spread by less than about 5 degrees: a forward-facing capture) or meet behind the cameras,
    the opacity-weighted centre of the Gaussians."""
    cameras = gaussians.cameras
    if cameras is None:
        raise ValueError("the scene carries no cameras; spatial clips are planned inside the region the scene's "
                         "cameras covered (load the PLY with its <name>.transforms.json beside it)")
    forward = cameras.c2w_opencv[:, :3, 2]
    projectors = np.eye(3)[None] - forward[:, :, None] * forward[:, None, :]
    system, target = projectors.sum(axis=0), np.einsum("nij,nj->i", projectors, cameras.positions)
    focus = None
    if np.linalg.eigvalsh(system)[0] > len(cameras) * math.sin(math.radians(5.0)) ** 2:
        focus = np.linalg.solve(system, target)
        if np.median(np.einsum("ni,ni->n", focus - cameras.positions, forward)) <= 0:
            focus = None
    if focus is None:
        weights = gaussians.opacities().detach().cpu().double().numpy() + 1e-9
        focus = np.average(gaussians.means.detach().cpu().double().numpy(), axis=0, weights=weights)
    distance = float(np.median(np.linalg.norm(cameras.positions - focus, axis=1)))
    if not distance > 0:
        raise ValueError("the scene's cameras stand at the point they look at; no camera path can be planned")
    down = cameras.c2w_opencv[:, :3, 1].mean(axis=0)
    fov = math.degrees(2 * math.atan(0.5 * cameras.width / cameras.intrinsics[0, 0, 0]))
    return SceneFrame(focus, distance, down / np.linalg.norm(down), fov)


def plan_clip(frame: SceneFrame, start: np.ndarray, pattern: str, settings: SpatialSettings,
              geometry: ClipGeometry) -> tuple[Trajectory, dict]:
    """The pattern's path from a camera at `start` looking at the scene's focus, in the scene's frame."""
    first = look_at_c2w(start, frame.focus, frame.down)
    radius = float(np.linalg.norm(frame.focus - start))
    spec = patterns.get(pattern)
    magnitude = settings.distance_fraction * radius if spec.kind == "translate" else settings.angle_deg
    elevation = math.degrees(math.asin(np.clip(first[:3, 2] @ frame.down, -1.0, 1.0)))
    local = plan(pattern, geometry.frames, magnitude, radius=radius, elevation=elevation, fov_deg=frame.fov_deg,
                 width=geometry.width, height=geometry.height, easing=settings.easing)
    pivot = None if local.pivot is None else (first @ np.append(local.pivot, 1.0))[:3]
    path = Trajectory(first @ local.c2w_opencv, local.intrinsics, local.width, local.height, pattern=pattern,
                      pivot=pivot, director=local.director, meta=dict(local.meta))
    meta = {"pattern": pattern, "magnitude": local.meta["magnitude"], "unit": spec.unit, "radius": radius,
            "elevation_deg": elevation, "fov_deg": frame.fov_deg, "easing": settings.easing,
            "start_c2w_opencv": first.tolist()}
    return path, meta


def _magnitude_text(meta: dict) -> str:
    return f"{meta['magnitude']:.3g} {meta['unit']}"


def build_spatial_dataset(folder: Path, scenes: list[Scene], geometry: ClipGeometry, settings: SpatialSettings, *,
                          rasterizer: Rasterizer, hooks: Hooks = NO_HOOKS) -> DatasetSummary:
    """Fill `folder` (a new, hidden folder the caller renames when this returns) with spatial-variant clips:
    `clips_per_pattern` per pattern, the scenes taken in turn."""
    if not scenes:
        raise ValueError("no scene given: a spatial-variant dataset is rendered from one or more Gaussian scenes")
    templates = parse_templates(settings.templates, settings.patterns, SPATIAL_TEMPLATE)
    frames = [scene_frame(scene.gaussians) for scene in scenes]
    spaces = [SceneOccupancy(scene.gaussians, frame.distance, rasterizer, settings.occupancy)
              for scene, frame in zip(scenes, frames)]
    writer = DatasetWriter(folder, "spatial", geometry, {
        "scenes": [scene.name for scene in scenes], "patterns": list(settings.patterns),
        "clips_per_pattern": settings.clips_per_pattern, "angle_deg": settings.angle_deg,
        "distance_fraction": settings.distance_fraction, "easing": settings.easing, "attempts": settings.attempts,
        "seed": settings.seed, "templates": templates, "rasterizer": rasterizer.name,
        "occupancy": {"method": "depth rendered from the Gaussians, thresholded by opacity; signed distances "
                                "along the scene cameras' rays",
                      **settings.occupancy.__dict__}})
    rng = np.random.default_rng(settings.seed)
    missed: dict[tuple[str, str], Counter] = {}
    total, done = len(settings.patterns) * settings.clips_per_pattern, 0
    for pattern in settings.patterns:
        for index in range(settings.clips_per_pattern):
            which = index % len(scenes)
            scene, frame, space = scenes[which], frames[which], spaces[which]
            reasons = []
            for attempt in range(settings.attempts):
                hooks.check()
                box = space.bounds
                start = box.center + rng.uniform(box.extent_min, box.extent_max) @ box.axes
                path, meta = plan_clip(frame, start, pattern, settings, geometry)
                meta = {"scene": scene.name, "attempt": attempt, **meta}
                reason = space.check(path)
                if reason is None:
                    video = render_views(scene.gaussians, path, rasterizer=rasterizer)
                    fields = {"pattern": pattern, "motion": patterns.get(pattern).description, "scene": scene.name,
                              "magnitude": _magnitude_text(meta)}
                    writer.add(video, caption(templates, pattern, fields), meta, cameras=path)
                    break
                writer.reject(meta, reason)
                reasons.append(reason.split(":")[0])
            else:
                missed.setdefault((scene.name, pattern), Counter()).update(reasons)
            done += 1
            hooks.step(done, total)
    notes = [f"scene '{name}' is too small for {pattern} at this magnitude: {sum(reasons.values())} starts gave no "
             f"free path (mostly: {reasons.most_common(1)[0][0]}); lower the magnitude or the clearance, or widen "
             "box_margin" for (name, pattern), reasons in missed.items()]
    return writer.finish(notes)
