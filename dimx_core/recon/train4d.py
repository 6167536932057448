"""Gaussian4DReconstruct: K per-camera videos of N frames and their K cameras -> canonical Gaussians + deformation.

Read top to bottom: check the inputs (frames camera after camera, as Multi-View Generate outputs them), camera
poses from the K views at the reference time (SfM or the trajectory, chosen as the 3D fit chooses them; the K
poses are shared by every time), confidence per camera video, starting points; then the fit loop the 3D fit runs
(fit.py: the same optimiser, densification and pose correction), fed by a sampler in two stages:
1. warm-up: the canonical Gaussians alone, fitted to the K views at the reference time (a static 3D fit);
2. joint: every training frame (camera j, time i), rendered from the Gaussians moved to time i by the HexPlane
   deformation field (deform.py), which trains alongside them with K-Planes' smoothness regularisers.
The canonical Gaussians are the scene at the reference time (the field is zero there by construction).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..camera import Trajectory
from ..hooks import NO_HOOKS, Hooks
from ..identity.multiview import evenly_spaced_views
from ..optional import require
from . import confidence as conf
from .deform import Deformation, DeformationField, FieldConfig, deform
from .fit import VIEW_ORDERS, Heldout, Preset, Reconstruction, Sample, conclude, run_fit
from .poses import choose_poses
from .train import ReconstructOptions, as_frames, content_warnings, frame_loss, matched_trajectory, prepare_fit


@dataclass(frozen=True)
class Preset4D:
    fit: Preset                 # total steps (warm-up included), starting points, densification and SH schedules
    warmup: int                 # static steps at the reference time, out of fit.steps
    resolutions: tuple[int, ...]  # spatial sizes of the field's planes
    features: int
    hidden: int


# The 4D fit starts from points every camera sees, not the 3D fit's cube: on the synthetic moving scene (48x32, 8
# cameras x 4 times, 1200 steps with densification) the cube scored 23.1 / 25.3 dB held out from 300 / 1200 points,
# the frustum 25.3 / 28.1 dB (bench/RESULTS-recon-start-device.md, last section).
START_4D = "frustum"
PRESETS_4D = {
    "fast": Preset4D(Preset(steps=6000, initial_points=30_000, refine_start=500, refine_stop=4000, refine_every=100,
                            sh_interval=600, start=START_4D), warmup=1500, resolutions=(32, 64), features=16,
                     hidden=64),
    "standard": Preset4D(Preset(steps=14_000, initial_points=50_000, refine_start=500, refine_stop=9000,
                                refine_every=100, sh_interval=1000, start=START_4D), warmup=3000,
                         resolutions=(64, 128), features=32, hidden=64),
    "high": Preset4D(Preset(steps=30_000, initial_points=100_000, refine_start=500, refine_stop=15_000,
                            refine_every=100, sh_interval=1000, start=START_4D), warmup=3000,
                     resolutions=(64, 128), features=32, hidden=128),
}
# Adam rates of the planes ("grid") and the MLP ("deformation"), each decaying 10x over the joint stage. 6x
# 4DGaussians' nominal rates (which it multiplies by the camera extent): on the synthetic moving scene these learn
# the motion within a few hundred steps, and match 3x higher rates after 1200 steps (26.9 vs 26.8 dB held out),
# where 4DGaussians' own values had barely started (19.4 dB vs 19.2 dB without motion, at 300 steps).
FIELD_RATES = {"planes": 1e-2, "decoder": 1e-3}
FIELD_DECAY = 0.1
SMOOTHNESS_WEIGHT, TOTAL_VARIATION_WEIGHT = 1e-3, 2e-4  # K-Planes / 4DGaussians regulariser weights
MAX_TIME_KNOTS = 25
BOUNDS_QUANTILE, BOUNDS_MARGIN = 0.01, 0.1  # the field's box: 1%-99% of the canonical means, 10% wider


@dataclass
class Reconstruct4DOptions(ReconstructOptions):
    """The 3D fit's options (poses, confidence, LPIPS, hold-out, device, rasterizer, ...: the same meaning) with
    the 4D presets, the reference time and a switch for densification."""
    preset: str = "fast"
    reference_time: int = 0              # index of the time the warm-up fits (the reference frame's time)
    densify: bool = True                 # False keeps the starting Gaussian count (benchmarks)

    def check(self, presets: dict = PRESETS_4D, *, times: int = 2) -> None:
        super().check(presets)
        if self.steps is not None and self.steps < 2:
            raise ValueError(f"steps must be at least 2 (warm-up and joint stage), got {self.steps}")
        if not 0 <= self.reference_time < times:
            raise ValueError(f"reference_time must be a time index from 0 to {times - 1} (there are {times} times), "
                             f"got {self.reference_time}")


def kept_cameras(path: Trajectory, views: int) -> Trajectory:
    """The K cameras of an S-Director path that Multi-View Generate kept with `views` (the same evenly spaced
    frames of the path, first and last included); the whole path when it already has `views` poses."""
    if views == len(path):
        return path
    if views > len(path):
        raise ValueError(f"views is {views} but the trajectory has only {len(path)} poses; connect the camera path "
                         "the multi-view videos were generated along (one pose per generated frame)")
    kept = evenly_spaced_views(views, len(path))
    return replace(_subset(path, kept), meta={**path.meta, "kept_frames": kept})


def _subset(cameras: Trajectory, positions: list[int]) -> Trajectory:
    return replace(cameras, c2w_opencv=cameras.c2w_opencv[positions], intrinsics=cameras.intrinsics[positions])


def fitted_times(count: int) -> list[float]:
    """N times evenly over [0, 1]: time i of the multi-view videos is i / (N - 1)."""
    return [i / (count - 1) for i in range(count)]


def heldout_frames(cameras: int, times: int, every: int) -> list[tuple[int, int]]:
    """(camera, time) pairs on every `every`-th diagonal, i + j = 0 mod `every`: about one frame in `every`,
    spread so that every camera and every time keeps most of its frames."""
    if not every:
        return []
    return [(j, i) for j in range(cameras) for i in range(times) if (i + j) % every == 0]


def field_config(means: torch.Tensor, preset: Preset4D, times: list[float], reference: float) -> FieldConfig:
    """The field's box from the canonical means (robust to a few stray Gaussians), knots along time."""
    low = torch.quantile(means.detach().float().cpu(), BOUNDS_QUANTILE, dim=0)
    high = torch.quantile(means.detach().float().cpu(), 1.0 - BOUNDS_QUANTILE, dim=0)
    margin = BOUNDS_MARGIN * (high - low).clamp_min(1e-3)
    return FieldConfig(bounds_min=tuple((low - margin).tolist()), bounds_max=tuple((high + margin).tolist()),
                       time_range=(times[0], times[-1]), reference_time=reference, resolutions=preset.resolutions,
                       time_resolution=min(len(times), MAX_TIME_KNOTS), features=preset.features,
                       hidden=preset.hidden)


class FieldOptimizer:
    """Adam for the planes and for the MLP, each with its own rate decaying 10x over the joint stage."""

    def __init__(self, field: DeformationField, steps: int):
        self.optimizer = torch.optim.Adam([
            {"params": list(field.planes.parameters()), "lr": FIELD_RATES["planes"]},
            {"params": list(field.decoder.parameters()), "lr": FIELD_RATES["decoder"]}], eps=1e-15)
        self.decay = torch.optim.lr_scheduler.ExponentialLR(self.optimizer, gamma=FIELD_DECAY ** (1.0 / max(steps, 1)))

    def step(self) -> None:
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.decay.step()


def _check_layout(count: int, views: int, times: int) -> None:
    if views < 1 or times < 2:
        raise ValueError(f"a 4D fit needs at least 1 camera and 2 times, got views={views}, times={times} "
                         "(for one time, use Gaussian Reconstruct)")
    if count != views * times:
        raise ValueError(f"frames: got {count} frames but views x times is {views} x {times} = {views * times}; "
                         "connect Multi-View Generate's multiview, views and times outputs together (K videos of N "
                         "frames, camera after camera)")


class StagedSampler:
    """The warm-up's frames (the reference time, canonical Gaussians) for the first `warmup` steps, then every
    training frame (camera, time) with its time; each stage in the preset's view order."""

    def __init__(self, targets: torch.Tensor, confidences: torch.Tensor, training: list[tuple[int, int]],
                 reference: int, warmup: int, stamps: list[float], seed: int, view_order: str):
        generator = torch.Generator().manual_seed(seed)
        self.targets, self.confidences, self.warmup, self.stamps = targets, confidences, warmup, stamps
        at_reference = [(view, i) for view, i in training if i == reference]
        if not at_reference:
            raise ValueError("every view of the reference time is held out; choose another reference_time")
        order = VIEW_ORDERS[view_order]
        self.warm, self.joint = order(at_reference, generator), order(training, generator)

    def sample(self, step: int) -> Sample:
        view, moment = (self.warm if step < self.warmup else self.joint).next()
        return Sample(view, self.targets[view, moment], self.confidences[view, moment],
                      time=None if step < self.warmup else self.stamps[moment])


class FieldMotion:
    """The Gaussians moved to a sample's time by a deformation field, built at the first timed sample (the end of
    the warm-up) around the canonical means as they are then, and trained with its own optimiser."""

    def __init__(self, preset: Preset4D, stamps: list[float], reference: int, joint_steps: int, seed: int):
        self.preset, self.stamps, self.reference, self.joint_steps, self.seed = preset, stamps, reference, joint_steps, seed
        self.field: DeformationField | None = None
        self.optimizer: FieldOptimizer | None = None

    def place(self, params: dict, sample: Sample):
        if sample.time is None:
            return params["means"], params["quats"], params["scales"]
        if self.field is None:
            config = field_config(params["means"], self.preset, self.stamps, self.stamps[self.reference])
            self.field = DeformationField(config, seed=self.seed).to(params["means"].device)
            self.optimizer = FieldOptimizer(self.field, self.joint_steps)
        return deform(self.field, params["means"], params["quats"], params["scales"], sample.time)

    def regularisation(self) -> torch.Tensor | None:
        return None if self.field is None else self.field.regularisation(SMOOTHNESS_WEIGHT, TOTAL_VARIATION_WEIGHT)

    def step(self) -> None:
        if self.optimizer is not None:
            self.optimizer.step()


@torch.inference_mode(False)  # hosts such as ComfyUI run nodes under inference_mode; a fit needs autograd
@torch.enable_grad()
def reconstruct_4d(frames, views: int, times: int, cameras: Trajectory,
                   options: Reconstruct4DOptions = Reconstruct4DOptions(), *,
                   hooks: Hooks = NO_HOOKS) -> Reconstruction:
    """Fit canonical Gaussians and a deformation field to `frames` ((views x times, H, W, 3) in 0..1, camera
    after camera: frame j * times + i is camera j at time i) seen by `cameras` (one pose per view, shared by
    every time). The result's `deformation` holds the field and the fitted times i / (times - 1)."""
    require("gsplat", "densification (gsplat's strategies)")
    started = time.monotonic()
    images = as_frames(frames)
    _check_layout(len(images), views, times)
    options.check(times=times)
    height, width = images.shape[1:3]
    cameras, notices = matched_trajectory(cameras, views, width, height)
    notices = content_warnings(images) + notices
    grid = images.reshape(views, times, height, width, 3)
    chosen = PRESETS_4D[options.preset]
    preset = options.preset_for({options.preset: chosen.fit})
    warmup = max(1, min(preset.steps - 1, round(chosen.warmup * preset.steps / chosen.fit.steps)))
    if not options.densify:
        preset = replace(preset, refine_start=preset.steps, refine_stop=0)
    torch.manual_seed(options.seed)  # densification splits sample from torch's global generator
    device = torch.device(options.device)
    stamps = fitted_times(times)
    reference = options.reference_time

    # 1. camera poses from the reference time's views (a static scene), shared by every time
    choice = choose_poses(grid[:, reference], cameras, options.poses, hooks=hooks)
    kept = choice.kept
    heldout = [(j, i) for j, i in heldout_frames(views, times, options.holdout_every) if j in kept]
    training = [(position, i) for position, j in enumerate(kept) for i in range(times) if (j, i) not in heldout]

    # 2. confidence per pixel, along each camera's video
    if options.confidence == "flow":
        weights = np.stack([conf.flow_confidence(grid[j]) for j in kept])
    else:
        weights = np.ones((len(kept), times, height, width), np.float32)

    # 3. starting Gaussians, coloured from the reference time's views, and the 3D fit's optimisation state
    fit, rasterizer, lpips_network = prepare_fit(choice, grid[kept, reference], preset, options, notices, hooks=hooks)
    sampler = StagedSampler(torch.as_tensor(grid[kept], device=device), torch.as_tensor(weights, device=device),
                            training, reference, warmup, stamps, options.seed, preset.view_order)
    motion = FieldMotion(chosen, stamps, reference, preset.steps - warmup, options.seed)

    # 4. the fit: a static warm-up at the reference time, then every frame with the field
    final_loss = run_fit(fit, rasterizer, sampler, preset, frame_loss(options, lpips_network, preset.steps),
                         motion=motion, background=torch.as_tensor(options.background, dtype=torch.float32,
                                                                   device=device),
                         preview_every=options.preview_every, hooks=hooks)

    # 5. the result: canonical Gaussians (the scene at the reference time) carrying the field
    deformation = Deformation(motion.field.cpu().eval().requires_grad_(False), tuple(stamps))
    notices = [f"4D: {len(kept)} cameras x {times} times, warm-up {warmup} steps at time {reference} "
               f"(t = {stamps[reference]:g}), joint {preset.steps - warmup} steps", deformation.describe(), *notices]
    flat = [j * times + i for j, i in heldout]
    scored = Heldout(flat, [kept.index(j) for j, _ in heldout], torch.as_tensor(images[flat]),
                     [stamps[i] for _, i in heldout])
    return conclude(fit, choice, rasterizer, preset, final_loss, started=started, notices=notices, heldout=scored,
                    camera_meta={"views": kept}, background=options.background, deformation=deformation)
