"""GaussianReconstruct: generated frames + the requested trajectory -> a 3D Gaussian-splat scene.

Read top to bottom: check inputs, choose camera poses (SfM or the trajectory, poses.py), confidence maps,
starting points, then the fit loop shared with the 4D fit (fit.py: gsplat's order, Adam per parameter as in
gsplat's trainer, the preset's densification strategy, SH bands switched on one by one), with the trajectory's
poses refined alongside when they are the pose source. The scene comes out in the trajectory's frame and scale.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..camera import Trajectory
from ..hooks import NO_HOOKS, Hooks
from ..optional import require
from . import confidence as conf
from .fit import (MAX_SH_DEGREE, STRATEGIES, VIEW_ORDERS, Heldout, LossOf, Preset, Reconstruction,
                  ReconstructReport, Sample, SceneOptimizer, conclude, psnr, run_fit, scaled_preset)
from .init import initial_gaussians
from .loss import LPIPS_FILE, check_lpips_weights, load_lpips, lpips_map, photometric_map, weighted_mean
from .poses import POSE_MODES, PoseChoice, choose_poses
from .raster import Rasterizer, select_rasterizer

__all__ = ["PRESETS", "Preset", "ReconstructOptions", "ReconstructReport", "Reconstruction", "psnr", "reconstruct"]

PRESETS = {
    "fast": Preset(steps=3000, initial_points=30_000, refine_start=500, refine_stop=2000, refine_every=100,
                   sh_interval=600),
    "standard": Preset(steps=7000, initial_points=50_000, refine_start=500, refine_stop=5000, refine_every=100,
                       sh_interval=1000),
    "high": Preset(steps=30_000, initial_points=100_000, refine_start=500, refine_stop=15_000, refine_every=100,
                   sh_interval=1000),
}
# which frames of a video are real photos: the first (one image to 3D), or first and last (two views to 3D)
KNOWN_FRAMES = {"none": (), "first": (0,), "first and last": (0, -1)}
RESIDUAL_WARMUP = 0.2      # share of steps before residual-based confidence starts to down-weight


@dataclass
class ReconstructOptions:
    preset: str = "standard"
    steps: int | None = None             # overrides the preset's step count (schedules scale with it)
    seed: int = 0
    poses: str = "auto"                  # auto | trajectory | fixed | sfm (see poses.choose_poses)
    confidence: str = "flow"             # flow | residual | none
    lpips_weight: float = 0.0            # lambda of the optional LPIPS term (needs lpips_weights)
    lpips_weights: str | None = None     # torchvision's VGG16 file (loss.LPIPS_FILE) the LPIPS network is built on
    initial_points: int | None = None    # overrides the preset's random-initialisation count
    holdout_every: int = 0               # > 0: every k-th frame is kept out of the fit and scored (PSNR)
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    device: str = "cpu"
    rasterizer: str = "auto"             # auto | gsplat | torch
    build_dir: str | None = None         # where gsplat's CUDA build is cached (None: the user's cache folder)
    preview_every: int = 50              # steps between preview images sent through the hooks
    strategy: str | None = None          # overrides the preset's densification strategy (default | mcmc)
    known_frames: tuple[int, ...] = ()   # frames that are real photos (the input views; -1: the last frame): full
                                         # confidence, KNOWN_FRAME_WEIGHT times a generated frame's, never held out

    def check(self, presets: dict = PRESETS) -> None:
        if self.preset not in presets:
            raise ValueError(f"preset must be one of {', '.join(presets)}, got {self.preset!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.poses not in POSE_MODES:
            raise ValueError(f"poses must be one of {', '.join(POSE_MODES)}, got {self.poses!r}")
        if self.confidence not in conf.CONFIDENCE_MODES:
            raise ValueError(f"confidence must be one of {', '.join(conf.CONFIDENCE_MODES)}, got {self.confidence!r}")
        if self.strategy is not None and self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if not 0.0 <= self.lpips_weight <= 10.0:
            raise ValueError(f"lpips_weight must be from 0 to 10, got {self.lpips_weight}")
        if self.lpips_weight > 0 and not self.lpips_weights:
            raise ValueError(f"lpips_weight {self.lpips_weight} needs the VGG16 weights file {LPIPS_FILE}: give "
                             "lpips_weights (the CLI's --lpips-vgg; the nodes find it in models/dimensionx/lpips/)")
        if self.lpips_weight > 0:
            check_lpips_weights(self.lpips_weights)
        if not all(isinstance(index, int) for index in self.known_frames):
            raise ValueError(f"known_frames must be frame numbers, got {self.known_frames!r}")
        if self.holdout_every == 1:
            raise ValueError("holdout_every=1 would hold out every frame; use 0 (none) or 2 and more")

    def preset_for(self, presets: dict[str, Preset]) -> Preset:
        """The chosen preset, stretched to `steps` and with the strategy override applied."""
        chosen = presets[self.preset]
        preset = scaled_preset(chosen, self.steps or chosen.steps)
        return preset if self.strategy is None else replace(preset, strategy=self.strategy)


# --- inputs --------------------------------------------------------------------------------------------------------

def as_frames(frames) -> np.ndarray:
    array = frames.detach().float().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.ndim != 4 or array.shape[-1] not in (3, 4):
        raise ValueError(f"frames must be a batch of RGB images (N, H, W, 3), got shape {tuple(array.shape)}")
    array = array[..., :3].astype(np.float32)
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError("frames contain NaN or infinite values")
    if array.max(initial=0) > 1.0 + 1e-3 or array.min(initial=0) < -1e-3:
        raise ValueError(f"frames must hold colours in 0..1, got values from {array.min():.3g} to {array.max():.3g}")
    return np.clip(array, 0.0, 1.0)


def content_warnings(images: np.ndarray) -> list[str]:
    """What the user should know about frames that are valid but carry no picture: all black (a NaN or fp16
    overflow upstream decodes to black), or one flat colour. The fit still runs; its scene is that colour."""
    low, high = float(images.min()), float(images.max())
    if high < 1.0 / 255.0:
        return ["WARNING: every frame is black (all values below 1/255): the fitted scene is empty black. The video "
                "that made these frames probably failed (NaN or fp16 overflow while sampling); check it first"]
    if high - low < 1.0 / 255.0:
        return [f"WARNING: every frame is one flat colour ({low:.3f}): there is no picture to reconstruct; check the "
                "video that made these frames"]
    return []


def matched_trajectory(trajectory: Trajectory, count: int, width: int, height: int) -> tuple[Trajectory, list]:
    if count != len(trajectory):
        raise ValueError(f"frames: got {count} frames but the trajectory has {len(trajectory)} poses; they pair "
                         "one to one, in order (use the trajectory the video was generated with)")
    if (width, height) == (trajectory.width, trajectory.height):
        return trajectory, []
    sx, sy = width / trajectory.width, height / trajectory.height
    if abs(sx / sy - 1.0) > 0.01:
        raise ValueError(f"frames are {width}x{height} but the trajectory was planned for "
                         f"{trajectory.width}x{trajectory.height}, a different aspect ratio; resize or crop the "
                         "frames to the trajectory's size")
    intrinsics = trajectory.intrinsics.copy()
    intrinsics[:, 0, :] *= sx
    intrinsics[:, 1, :] *= sy
    note = (f"frames are {width}x{height}, the trajectory was planned for {trajectory.width}x{trajectory.height}: "
            "intrinsics scaled to the frames")
    return replace(trajectory, intrinsics=intrinsics, width=width, height=height), [note]


def _as_mask(mask, count: int, height: int, width: int) -> np.ndarray | None:
    if mask is None:
        return None
    array = mask.detach().float().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask, np.float32)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3 or array.shape[1:] != (height, width) or array.shape[0] not in (1, count):
        raise ValueError(f"mask must be (H, W), (1, H, W) or ({count}, H, W) with H, W = {height}, {width} like the "
                         f"frames; got {tuple(np.shape(mask))}")
    if array.shape[0] == 1:
        array = np.repeat(array, count, axis=0)
    if (array.reshape(count, -1).max(axis=1) <= 0).any():
        raise ValueError("mask leaves some frames with no pixel to fit (all zero); white marks pixels to fit")
    return np.clip(array, 0.0, 1.0).astype(np.float32)


# --- the fit -------------------------------------------------------------------------------------------------------

def prepare_fit(choice: PoseChoice, frames: np.ndarray, preset: Preset, options: ReconstructOptions,
                notices: list[str], *, anchor: int = 0, hooks: Hooks = NO_HOOKS) -> tuple[SceneOptimizer, Rasterizer,
                                                                                          torch.nn.Module | None]:
    """Starting Gaussians (SfM points, else the preset's random start) coloured from `frames` (one per
    chosen camera), the rasterizer, the optional LPIPS network and the optimiser, whose pose refinement keeps camera
    `anchor` (a position among the chosen cameras; one the fit sees) where it was planned; what the user should know
    about them is appended to `notices`."""
    device = torch.device(options.device)
    scene = initial_gaussians(choice.cameras, frames, count=options.initial_points or preset.initial_points,
                              sh_degree=MAX_SH_DEGREE, seed=options.seed, start=preset.start,
                              points=choice.points, colours=choice.colors)
    rasterizer = select_rasterizer(device, prefer=options.rasterizer, build_dir=options.build_dir, hooks=hooks)
    notices += [rasterizer.notice] if rasterizer.notice else []
    lpips_network = None
    if options.lpips_weight > 0:
        lpips_network = load_lpips(options.lpips_weights, device)
        notices.append(f"LPIPS on: weight {options.lpips_weight:g}, VGG16 from {options.lpips_weights}")
    fit = SceneOptimizer(scene, choice.cameras, preset, device=device, refine_poses=choice.source == "trajectory",
                         anchors=(anchor,))
    return fit, rasterizer, lpips_network


def frame_loss(options: ReconstructOptions, lpips_network: torch.nn.Module | None, steps: int) -> LossOf:
    """The paper's confidence-weighted loss of one rendered frame: C (0.8 L1 + 0.2 (1 - SSIM) + lambda LPIPS),
    C the sample's confidence map, or derived from the residuals after the first RESIDUAL_WARMUP of the steps
    (the confidence 'residual')."""
    def loss_of(image: torch.Tensor, sample: Sample, step: int) -> torch.Tensor:
        per_pixel = photometric_map(image, sample.target)
        if lpips_network is not None:
            per_pixel = per_pixel + options.lpips_weight * lpips_map(lpips_network, image, sample.target)
        confidence = sample.confidence
        if options.confidence == "residual" and step >= RESIDUAL_WARMUP * steps:
            confidence = conf.residual_confidence(per_pixel)
        return weighted_mean(per_pixel, confidence, sample.mask)

    return loss_of


class FrameSampler:
    """The 3D fit's frames, every training frame once per epoch, in the preset's view order."""

    def __init__(self, targets: torch.Tensor, confidences: torch.Tensor, masks: torch.Tensor | None,
                 training: list[int], seed: int, view_order: str):
        self.targets, self.confidences, self.masks = targets, confidences, masks
        self.order = VIEW_ORDERS[view_order](training, torch.Generator().manual_seed(seed))

    def sample(self, step: int) -> Sample:
        view = self.order.next()
        return Sample(view, self.targets[view], self.confidences[view],
                      None if self.masks is None else self.masks[view])


@torch.inference_mode(False)  # hosts such as ComfyUI run nodes under inference_mode; a fit needs autograd
@torch.enable_grad()
def reconstruct(frames, trajectory: Trajectory, options: ReconstructOptions = ReconstructOptions(), *,
                mask=None, hooks: Hooks = NO_HOOKS) -> Reconstruction:
    """Fit 3D Gaussians to `frames` ((N, H, W, 3) in 0..1, tensor or array) taken along `trajectory`.

    `mask` ((H, W), (1, H, W) or (N, H, W), 1 = fit this pixel) restricts the loss. Progress goes through
    `hooks` (SfM, then one step per optimisation step with a preview image every `preview_every`). Works
    whatever the caller's grad mode: inputs are copied into fresh tensors."""
    require("gsplat", "densification (gsplat's strategies)")
    started = time.monotonic()
    options.check()
    images = as_frames(frames)
    count, height, width = images.shape[:3]
    trajectory, notices = matched_trajectory(trajectory, count, width, height)
    if any(not -count <= index < count for index in options.known_frames):
        raise ValueError(f"known_frames {list(options.known_frames)}: there are {count} frames (0 to {count - 1}, "
                         "or -1 for the last)")
    notices = content_warnings(images) + notices
    masks = _as_mask(mask, count, height, width)
    preset = options.preset_for(PRESETS)
    torch.manual_seed(options.seed)  # densification splits sample from torch's global generator
    device = torch.device(options.device)

    # 1. camera poses, in the trajectory's frame and scale
    choice = choose_poses(images, trajectory, options.poses, hooks=hooks)
    kept = choice.kept
    known = sorted({index % count for index in options.known_frames})
    heldout = [i for i in kept if options.holdout_every and i % options.holdout_every == 0 and i not in known]
    training = [position for position, i in enumerate(kept) if i not in heldout]

    # 2. confidence per pixel; the given photos are trusted over the generated frames between them
    if options.confidence == "flow":
        weights = conf.flow_confidence(images)[kept]
    else:
        weights = np.ones((len(kept), height, width), np.float32)
    for index in known:
        if index in kept:
            weights[kept.index(index)] = conf.KNOWN_FRAME_WEIGHT
        else:
            notices.append(f"known frame {index} was left out by the pose step; it is not fitted")

    # 3. starting Gaussians and the optimisation state
    # the first camera the fit sees anchors the frame (the input image's camera, unless it is held out: an anchor
    # that is never rendered leaves the refined cameras and the scene free to drift together off the plan)
    fit, rasterizer, lpips_network = prepare_fit(choice, images[kept], preset, options, notices,
                                                 anchor=training[0] if training else 0, hooks=hooks)
    sampler = FrameSampler(torch.as_tensor(images[kept], device=device), torch.as_tensor(weights, device=device),
                           None if masks is None else torch.as_tensor(masks[kept], device=device), training,
                           options.seed, preset.view_order)

    # 4. the fit
    final_loss = run_fit(fit, rasterizer, sampler, preset, frame_loss(options, lpips_network, preset.steps),
                         background=torch.as_tensor(options.background, dtype=torch.float32, device=device),
                         preview_every=options.preview_every, hooks=hooks)

    # 5. the result, in the trajectory's frame
    scored = Heldout(heldout, [kept.index(i) for i in heldout], torch.as_tensor(images[heldout]))
    return conclude(fit, choice, rasterizer, preset, final_loss, started=started, notices=notices, heldout=scored,
                    camera_meta={"frames": kept}, background=options.background)
