"""GaussianReconstruct: generated frames + the requested trajectory -> a 3D Gaussian-splat scene.

Read top to bottom: check inputs, choose camera poses (SfM or the trajectory, poses.py), confidence maps,
starting points, then the 3DGS optimisation (gsplat's DefaultStrategy for densification, Adam per parameter as
in gsplat's trainer, SH bands switched on one by one), with the trajectory's poses refined alongside when they
are the pose source. The scene comes out in the trajectory's frame and scale.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..camera import Trajectory
from ..hooks import NO_HOOKS, Hooks
from ..optional import require
from . import confidence as conf
from .gaussians import Gaussians
from .init import initial_gaussians, scene_scale
from .loss import load_lpips, lpips_map, photometric_map, weighted_mean
from .poses import POSE_MODES, PoseCheck, PoseChoice, choose_poses, describe_refinement
from .raster import Rasterizer, select_rasterizer
from .render import render_views


@dataclass(frozen=True)
class Preset:
    """Step counts and densification schedule; counts scale with `steps` when the user overrides it."""
    steps: int
    initial_points: int
    refine_start: int
    refine_stop: int
    refine_every: int
    sh_interval: int       # one more SH band every this many steps, up to degree 3


PRESETS = {
    "fast": Preset(steps=3000, initial_points=30_000, refine_start=500, refine_stop=2000, refine_every=100,
                   sh_interval=600),
    "standard": Preset(steps=7000, initial_points=50_000, refine_start=500, refine_stop=5000, refine_every=100,
                       sh_interval=1000),
    "high": Preset(steps=30_000, initial_points=100_000, refine_start=500, refine_stop=15_000, refine_every=100,
                   sh_interval=1000),
}
MAX_SH_DEGREE = 3
# gsplat's trainer: learning rates per parameter group (means scale with the scene)
LEARNING_RATES = {"means": 1.6e-4, "scales": 5e-3, "quats": 1e-3, "opacities": 5e-2, "sh0": 2.5e-3,
                  "shN": 2.5e-3 / 20}
POSE_LEARNING_RATE = 1e-5  # gsplat trainer's pose_opt_lr: radians (and scene-scale units) per step
RESIDUAL_WARMUP = 0.2      # share of steps before residual-based confidence starts to down-weight
# gsplat's densification threshold (0.0002) was tuned on frames several hundred pixels high; its screen-space
# gradient grows as 1 / height for Gaussians of a given pixel size, so the threshold follows the frame height
# relative to CogVideoX's 480 rows (unchanged there; 10x higher for the 48-row frames of the CPU tests).
GROW_GRAD2D, GROW_REFERENCE_HEIGHT = 0.0002, 480


@dataclass
class ReconstructOptions:
    preset: str = "standard"
    steps: int | None = None             # overrides the preset's step count (schedules scale with it)
    seed: int = 0
    poses: str = "auto"                  # auto | trajectory | sfm (see poses.choose_poses)
    confidence: str = "flow"             # flow | residual | none
    lpips_weight: float = 0.0            # lambda of the optional LPIPS term (only with local VGG16 weights)
    initial_points: int | None = None    # overrides the preset's random-initialisation count
    holdout_every: int = 0               # > 0: every k-th frame is kept out of the fit and scored (PSNR)
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    device: str = "cpu"
    rasterizer: str = "auto"             # auto | gsplat | torch
    build_dir: str | None = None         # where gsplat's CUDA build is cached (None: the user's cache folder)
    preview_every: int = 50              # steps between preview images sent through the hooks

    def check(self, presets: dict = PRESETS) -> None:
        if self.preset not in presets:
            raise ValueError(f"preset must be one of {', '.join(presets)}, got {self.preset!r}")
        if self.steps is not None and self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.poses not in POSE_MODES:
            raise ValueError(f"poses must be one of {', '.join(POSE_MODES)}, got {self.poses!r}")
        if self.confidence not in conf.CONFIDENCE_MODES:
            raise ValueError(f"confidence must be one of {', '.join(conf.CONFIDENCE_MODES)}, got {self.confidence!r}")
        if self.holdout_every == 1:
            raise ValueError("holdout_every=1 would hold out every frame; use 0 (none) or 2 and more")


@dataclass
class ReconstructReport:
    pose_source: str
    pose_notes: list[str]
    pose_check: PoseCheck | None
    steps: int
    final_loss: float
    gaussians: int
    backend: str
    seconds: float
    notices: list[str] = field(default_factory=list)
    heldout_psnr: float | None = None
    heldout_frames: list[int] = field(default_factory=list)

    def as_text(self) -> str:
        lines = [f"pose source: {self.pose_source}", *self.pose_notes,
                 f"steps: {self.steps}, final loss: {self.final_loss:.4f}, Gaussians: {self.gaussians}",
                 f"rasterizer: {self.backend}, time: {self.seconds:.1f} s"]
        if self.heldout_psnr is not None:
            lines.append(f"held-out PSNR: {self.heldout_psnr:.2f} dB on frames {self.heldout_frames}")
        return "\n".join(lines + self.notices)


@dataclass
class Reconstruction:
    gaussians: Gaussians       # carries the fitted cameras (gaussians.cameras)
    report: ReconstructReport


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


# --- camera pose refinement ----------------------------------------------------------------------------------------

def _refined_c2w(c2w: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """c2w @ exp(delta): delta (N, 6) is a small rotation vector and translation in each camera's own frame."""
    skew = torch.zeros(len(delta), 3, 3, dtype=delta.dtype, device=delta.device)
    w = delta[:, :3]
    skew[:, 0, 1], skew[:, 0, 2], skew[:, 1, 2] = -w[:, 2], w[:, 1], -w[:, 0]
    skew = skew - skew.transpose(1, 2)
    correction = torch.eye(4, dtype=delta.dtype, device=delta.device).repeat(len(delta), 1, 1)
    correction[:, :3, :3] = torch.linalg.matrix_exp(skew)
    correction[:, :3, 3] = delta[:, 3:]
    return c2w @ correction


def _world_to_camera(c2w: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid (N, 4, 4) poses without a general matrix inverse."""
    rotation_t = c2w[:, :3, :3].transpose(1, 2)
    w2c = torch.zeros_like(c2w)
    w2c[:, :3, :3] = rotation_t
    w2c[:, :3, 3] = -(rotation_t @ c2w[:, :3, 3:])[..., 0]
    w2c[:, 3, 3] = 1.0
    return w2c


# --- the fit -------------------------------------------------------------------------------------------------------

def scaled_preset(preset: Preset, steps: int) -> Preset:
    """`preset` stretched to `steps`: the densification and SH schedules keep their share of the fit."""
    ratio = steps / preset.steps
    scale = lambda value: max(1, round(value * ratio))  # noqa: E731
    return Preset(steps, preset.initial_points, scale(preset.refine_start), scale(preset.refine_stop),
                  scale(preset.refine_every), scale(preset.sh_interval))


class SceneOptimizer:
    """The optimisation state of a Gaussian fit, laid out as gsplat's trainer does it: one Adam per parameter
    group (eps 1e-15), the means' rate scaled by the scene and decaying 100x over the fit, gsplat's
    DefaultStrategy for densification, and (optionally) a pose correction per camera with the first camera
    anchoring the frame. The 3D fit and the 4D fit (train4d.py) drive it the same way: render with `params`
    and `world_to_camera(view)`, then `before_backward`, `loss.backward()`, `after_backward`."""

    def __init__(self, scene: Gaussians, cameras: Trajectory, preset: Preset, *, device: torch.device,
                 refine_poses: bool):
        self.extent = scene_scale(cameras)
        self.params = {name: torch.nn.Parameter(value.to(device).contiguous()) for name, value in {
            "means": scene.means, "scales": scene.log_scales, "quats": scene.quats_wxyz,
            "opacities": scene.opacity_logits, "sh0": scene.sh[:, :1], "shN": scene.sh[:, 1:]}.items()}
        rates = dict(LEARNING_RATES, means=LEARNING_RATES["means"] * self.extent)
        # One fused kernel per group on CUDA: the fit is bound by kernel launches on the host
        # (bench/RESULTS-recon-profile.md), and the unfused Adam was its largest GPU item as well.
        fused = device.type == "cuda"
        self.optimizers = {name: torch.optim.Adam([param], lr=rates[name], eps=1e-15, fused=fused)
                           for name, param in self.params.items()}
        self.means_decay = torch.optim.lr_scheduler.ExponentialLR(self.optimizers["means"],
                                                                  gamma=0.01 ** (1.0 / preset.steps))
        from gsplat.strategy import DefaultStrategy

        self.strategy = DefaultStrategy(refine_start_iter=preset.refine_start, refine_stop_iter=preset.refine_stop,
                                        refine_every=preset.refine_every,
                                        grow_grad2d=GROW_GRAD2D * max(1.0, GROW_REFERENCE_HEIGHT / cameras.height))
        self.strategy.check_sanity(self.params, self.optimizers)
        self.strategy_state = self.strategy.initialize_state(scene_scale=self.extent)
        self.c2w = torch.as_tensor(cameras.c2w_opencv, dtype=torch.float32, device=device)
        self.intrinsics = torch.as_tensor(cameras.intrinsics, dtype=torch.float32, device=device)
        self.pose_delta = torch.nn.Parameter(torch.zeros(len(cameras), 6, device=device))
        self.pose_optimizer = torch.optim.Adam([self.pose_delta], lr=POSE_LEARNING_RATE * max(self.extent, 1e-3),
                                               fused=fused) if refine_poses else None
        self.anchored = torch.ones(len(cameras), 1, device=device)
        self.anchored[0] = 0.0  # the first camera anchors the frame (it is the input image's camera)

    def colours(self) -> torch.Tensor:
        return torch.cat([self.params["sh0"], self.params["shN"]], dim=1)

    def world_to_camera(self, view: int) -> torch.Tensor:
        """(1, 4, 4) world-to-camera of camera `view`, with its pose correction when poses are refined."""
        pose = self.c2w[view:view + 1]
        if self.pose_optimizer is not None:
            pose = _refined_c2w(pose, self.pose_delta[view:view + 1] * self.anchored[view])
        return _world_to_camera(pose)

    def before_backward(self, step: int, meta: dict) -> None:
        self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, meta)

    def after_backward(self, step: int, meta: dict) -> None:
        """Densify (may add and remove Gaussians), then step every optimizer."""
        self.strategy.step_post_backward(self.params, self.optimizers, self.strategy_state, step, meta, packed=False)
        for optimizer in self.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.means_decay.step()
        if self.pose_optimizer is not None:
            self.pose_optimizer.step()
            self.pose_optimizer.zero_grad(set_to_none=True)

    def scene(self) -> Gaussians:
        """The fitted Gaussians, detached, on the CPU."""
        with torch.no_grad():
            return Gaussians(means=self.params["means"].detach().cpu(), log_scales=self.params["scales"].detach().cpu(),
                             quats_wxyz=self.params["quats"].detach().cpu(),
                             opacity_logits=self.params["opacities"].detach().cpu(), sh=self.colours().detach().cpu())

    def cameras(self, requested: Trajectory) -> tuple[Trajectory, list[str]]:
        """`requested` with the refined poses (and a sentence on how far they moved) when poses were refined."""
        if self.pose_optimizer is None:
            return requested, []
        with torch.no_grad():
            refined = _refined_c2w(self.c2w, self.pose_delta * self.anchored).cpu().double().numpy()
        refined[:, :3, :3] = _orthonormal(refined[:, :3, :3])
        cameras = replace(requested, c2w_opencv=refined)
        return cameras, [describe_refinement(requested, cameras)]


def prepare_fit(choice: PoseChoice, frames: np.ndarray, preset: Preset, options: ReconstructOptions,
                notices: list[str], *, hooks: Hooks = NO_HOOKS) -> tuple[SceneOptimizer, Rasterizer,
                                                                         torch.nn.Module | None]:
    """Starting Gaussians (SfM points, else random points every camera sees) coloured from `frames` (one per
    chosen camera), the rasterizer, the optional LPIPS network and the optimiser; what the user should know about
    them is appended to `notices`."""
    device = torch.device(options.device)
    scene = initial_gaussians(choice.cameras, frames, count=options.initial_points or preset.initial_points,
                              sh_degree=MAX_SH_DEGREE, seed=options.seed, points=choice.points,
                              colours=choice.colors)
    rasterizer = select_rasterizer(device, prefer=options.rasterizer, build_dir=options.build_dir, hooks=hooks)
    notices += [rasterizer.notice] if rasterizer.notice else []
    lpips_network = None
    if options.lpips_weight > 0:
        lpips_network, lpips_note = load_lpips(device)
        notices.append(lpips_note)
    fit = SceneOptimizer(scene, choice.cameras, preset, device=device, refine_poses=choice.source == "trajectory")
    return fit, rasterizer, lpips_network


def frame_loss(image: torch.Tensor, target: torch.Tensor, confidence: torch.Tensor, mask: torch.Tensor | None,
               options: ReconstructOptions, lpips_network: torch.nn.Module | None, *, residual: bool) -> torch.Tensor:
    """The paper's confidence-weighted loss of one rendered frame: C (0.8 L1 + 0.2 (1 - SSIM) + lambda LPIPS),
    C the frame's confidence map, or derived from the residuals once `residual` (the confidence 'residual')."""
    per_pixel = photometric_map(image, target)
    if lpips_network is not None:
        per_pixel = per_pixel + options.lpips_weight * lpips_map(lpips_network, image, target)
    if options.confidence == "residual" and residual:
        confidence = conf.residual_confidence(per_pixel)
    return weighted_mean(per_pixel, confidence, mask)


@torch.inference_mode(False)  # hosts such as ComfyUI run nodes under inference_mode; a fit needs autograd
@torch.enable_grad()
def reconstruct(frames, trajectory: Trajectory, options: ReconstructOptions = ReconstructOptions(), *,
                mask=None, hooks: Hooks = NO_HOOKS) -> Reconstruction:
    """Fit 3D Gaussians to `frames` ((N, H, W, 3) in 0..1, tensor or array) taken along `trajectory`.

    `mask` ((H, W), (1, H, W) or (N, H, W), 1 = fit this pixel) restricts the loss. Progress goes through
    `hooks` (SfM, then one step per optimisation step with a preview image every `preview_every`). Works
    whatever the caller's grad mode: inputs are copied into fresh tensors."""
    require("gsplat", "densification (gsplat's DefaultStrategy)")
    started = time.monotonic()
    options.check()
    images = as_frames(frames)
    count, height, width = images.shape[:3]
    trajectory, notices = matched_trajectory(trajectory, count, width, height)
    notices = content_warnings(images) + notices
    masks = _as_mask(mask, count, height, width)
    preset = scaled_preset(PRESETS[options.preset], options.steps or PRESETS[options.preset].steps)
    torch.manual_seed(options.seed)  # densification splits sample from torch's global generator
    device = torch.device(options.device)

    # 1. camera poses, in the trajectory's frame and scale
    choice = choose_poses(images, trajectory, options.poses, hooks=hooks)
    kept = choice.kept
    heldout = [i for i in kept if options.holdout_every and i % options.holdout_every == 0]
    train = [position for position, i in enumerate(kept) if i not in heldout]

    # 2. confidence per pixel
    if options.confidence == "flow":
        weights = conf.flow_confidence(images)[kept]
    else:
        weights = np.ones((len(kept), height, width), np.float32)

    # 3. starting Gaussians and the optimisation state
    fit, rasterizer, lpips_network = prepare_fit(choice, images[kept], preset, options, notices, hooks=hooks)
    params = fit.params
    targets = torch.as_tensor(images[kept], device=device)
    confidences = torch.as_tensor(weights, device=device)
    mask_tensor = None if masks is None else torch.as_tensor(masks[kept], device=device)
    background = torch.as_tensor(options.background, dtype=torch.float32, device=device)

    order = torch.tensor(train)[torch.randperm(len(train), generator=torch.Generator().manual_seed(options.seed))]
    recent_losses: list[torch.Tensor] = []  # kept on the device: reading a loss every step would sync the GPU
    for step in range(preset.steps):
        view = int(order[step % len(order)])
        sh_degree = min(step // preset.sh_interval, MAX_SH_DEGREE)
        image, _, meta = rasterizer.render(params["means"], params["quats"], params["scales"], params["opacities"],
                                           fit.colours(), fit.world_to_camera(view), fit.intrinsics[view:view + 1],
                                           width, height, sh_degree=sh_degree, background=background)
        fit.before_backward(step, meta)
        loss = frame_loss(image[0], targets[view], confidences[view], None if mask_tensor is None else
                          mask_tensor[view], options, lpips_network, residual=step >= RESIDUAL_WARMUP * preset.steps)
        loss.backward()
        fit.after_backward(step, meta)
        recent_losses = (recent_losses + [loss.detach()])[-max(1, preset.steps // 10):]
        show = (step + 1) % max(1, options.preview_every) == 0 or step + 1 == preset.steps
        hooks.step(step + 1, preset.steps, image[0].detach().clamp(0, 1).cpu() if show else None)

    # 5. the result, in the trajectory's frame
    fitted = fit.scene()
    cameras, refinement = fit.cameras(choice.cameras)
    fitted.cameras = replace(cameras, meta={**cameras.meta, "pose_source": choice.source, "frames": kept})
    report = ReconstructReport(pose_source=choice.source, pose_notes=list(choice.notes) + refinement,
                               pose_check=choice.check, steps=preset.steps,
                               final_loss=float(torch.stack(recent_losses).mean()), gaussians=len(fitted),
                               backend=rasterizer.name, seconds=0.0, notices=notices, heldout_frames=heldout)
    if heldout:
        positions = [kept.index(i) for i in heldout]
        views = replace(fitted.cameras, c2w_opencv=fitted.cameras.c2w_opencv[positions],
                        intrinsics=fitted.cameras.intrinsics[positions])
        renders = render_views(fitted, views, rasterizer=rasterizer, background=options.background)
        report.heldout_psnr = psnr(renders, torch.as_tensor(images[heldout]))
    report.seconds = time.monotonic() - started
    return Reconstruction(fitted, report)


def _orthonormal(rotations: np.ndarray) -> np.ndarray:
    """Nearest rotations (float32 matrix_exp drifts by ~1e-7, the Trajectory check allows 1e-4)."""
    u, _, vt = np.linalg.svd(rotations)
    return u @ vt


def psnr(renders: torch.Tensor, targets: torch.Tensor) -> float:
    """PSNR in dB over a batch of (N, H, W, 3) images in 0..1 (mean squared error over all pixels)."""
    mse = float(((renders.float() - targets.float()) ** 2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))
