"""The one Gaussian fit loop, shared by the 3D fit (train.py) and the 4D fit (train4d.py), in gsplat's trainer order.

Each step asks a sampler for a `Sample` (which camera, its target frame, confidence, mask and, in 4D, the time),
asks a `Motion` where the Gaussians are at that time (3D: where they are), renders, and then, as gsplat's
examples/simple_trainer.py does it: strategy.step_pre_backward, loss.backward, every optimiser's step, and only
then strategy.step_post_backward (densify, prune, relocate), so no refine step loses its update. The
densification strategy (gsplat's DefaultStrategy or MCMCStrategy) is a field of the preset, as in gsplat's Config.
What the fits report (steps, loss, Gaussians, pose refinement, held-out PSNR) is made here too.
"""
from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch

from ..camera import Trajectory
from ..hooks import NO_HOOKS, Hooks
from .gaussians import Gaussians
from .init import scene_scale
from .pose_refinement import CameraPoses, adam
from .poses import PoseCheck, PoseChoice, describe_refinement
from .raster import Rasterizer
from .render import render_views

MAX_SH_DEGREE = 3
# gsplat's trainer: learning rates per parameter group (means scale with the scene)
LEARNING_RATES = {"means": 1.6e-4, "scales": 5e-3, "quats": 1e-3, "opacities": 5e-2, "sh0": 2.5e-3,
                  "shN": 2.5e-3 / 20}
# gsplat's densification threshold (0.0002) was tuned on frames several hundred pixels high; its screen-space
# gradient grows as 1 / height for Gaussians of a given pixel size, so the threshold follows the frame height
# relative to CogVideoX's 480 rows (unchanged there; 10x higher for the 48-row frames of the CPU tests).
GROW_GRAD2D, GROW_REFERENCE_HEIGHT = 0.0002, 480
MCMC_REGULARISATION = {"opacity": 0.01, "scale": 0.01}  # gsplat trainer's opacity_reg and scale_reg with MCMC


@dataclass(frozen=True)
class Preset:
    """Step counts, densification schedule and strategy; counts scale with `steps` when the user overrides it."""
    steps: int
    initial_points: int
    refine_start: int
    refine_stop: int
    refine_every: int
    sh_interval: int       # one more SH band every this many steps, up to degree 3
    strategy: str = "default"  # a key of STRATEGIES
    view_order: str = "reshuffle"  # a key of VIEW_ORDERS
    start: str = "cube"    # a key of init.STARTS: where the random starting points lie when SfM gives none


def scaled_preset(preset: Preset, steps: int) -> Preset:
    """`preset` stretched to `steps`: the densification and SH schedules keep their share of the fit."""
    ratio = steps / preset.steps
    scale = lambda value: max(1, round(value * ratio))  # noqa: E731
    return replace(preset, steps=steps, refine_start=scale(preset.refine_start), refine_stop=scale(preset.refine_stop),
                   refine_every=scale(preset.refine_every), sh_interval=scale(preset.sh_interval))


# --- densification strategies: one row per kind ---------------------------------------------------------------------

@dataclass(frozen=True)
class StrategyKind:
    """How the fit builds and drives one of gsplat's strategies, and the loss terms gsplat's trainer adds with it."""
    build: Callable[[Preset, int], Any]                           # (preset, frame height) -> strategy
    initial_state: Callable[[Any, float], dict]                    # (strategy, scene scale) -> state
    post_backward: Callable[..., None]                             # (strategy, params, optimizers, state, step, meta, lr)
    regularisation: Callable[[dict], torch.Tensor] | None = None  # (params) -> extra loss
    needs_cuda: str | None = None  # why it cannot run without CUDA, if so


def _default_strategy(preset: Preset, height: int):
    from .densify import SyncFreeDefaultStrategy

    return SyncFreeDefaultStrategy(refine_start_iter=preset.refine_start, refine_stop_iter=preset.refine_stop,
                           refine_every=preset.refine_every,
                           grow_grad2d=GROW_GRAD2D * max(1.0, GROW_REFERENCE_HEIGHT / height))


def _mcmc_strategy(preset: Preset, height: int):
    from gsplat.strategy import MCMCStrategy

    return MCMCStrategy(refine_start_iter=preset.refine_start, refine_stop_iter=preset.refine_stop,
                        refine_every=preset.refine_every)


def _mcmc_regularisation(params: dict) -> torch.Tensor:
    return (MCMC_REGULARISATION["opacity"] * torch.sigmoid(params["opacities"]).mean()
            + MCMC_REGULARISATION["scale"] * torch.exp(params["scales"]).mean())


STRATEGIES = {
    "default": StrategyKind(
        _default_strategy, lambda strategy, extent: strategy.initialize_state(scene_scale=extent),
        lambda strategy, params, optimizers, state, step, meta, lr: strategy.step_post_backward(
            params, optimizers, state, step, meta, packed=False)),
    "mcmc": StrategyKind(
        _mcmc_strategy, lambda strategy, extent: strategy.initialize_state(),
        lambda strategy, params, optimizers, state, step, meta, lr: strategy.step_post_backward(
            params, optimizers, state, step, meta, lr=lr), _mcmc_regularisation,
        needs_cuda="gsplat's MCMCStrategy relocates Gaussians with a CUDA kernel"),
}


# --- the optimisation state ------------------------------------------------------------------------------------------

class SceneOptimizer:
    """The optimisation state of a Gaussian fit, laid out as gsplat's trainer does it: one Adam per parameter
    group (eps 1e-15), the means' rate scaled by the scene and decaying 100x over the fit, the preset's
    densification strategy, and the cameras (pose_refinement.CameraPoses: planned, or refined with `anchors`
    fixing the frame)."""

    def __init__(self, scene: Gaussians, cameras: Trajectory, preset: Preset, *, device: torch.device,
                 refine_poses: bool, anchors: Sequence[int] = (0,)):
        if preset.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got {preset.strategy!r}")
        if preset.view_order not in VIEW_ORDERS:
            raise ValueError(f"view_order must be one of {', '.join(VIEW_ORDERS)}, got {preset.view_order!r}")
        self.kind = STRATEGIES[preset.strategy]
        if self.kind.needs_cuda and device.type != "cuda":
            raise ValueError(f"strategy '{preset.strategy}' needs a CUDA device ({self.kind.needs_cuda}); on "
                             f"{device.type} use strategy 'default'")
        self.extent = scene_scale(cameras)
        self.params = {name: torch.nn.Parameter(value.to(device).contiguous()) for name, value in {
            "means": scene.means, "scales": scene.log_scales, "quats": scene.quats_wxyz,
            "opacities": scene.opacity_logits, "sh0": scene.sh[:, :1], "shN": scene.sh[:, 1:]}.items()}
        rates = dict(LEARNING_RATES, means=LEARNING_RATES["means"] * self.extent)
        self.optimizers = {name: adam([param], lr=rates[name], eps=1e-15, device=device)
                           for name, param in self.params.items()}
        self.means_decay = torch.optim.lr_scheduler.ExponentialLR(self.optimizers["means"],
                                                                  gamma=0.01 ** (1.0 / preset.steps))
        self.strategy = self.kind.build(preset, cameras.height)
        self.strategy.check_sanity(self.params, self.optimizers)
        self.strategy_state = self.kind.initial_state(self.strategy, self.extent)
        # the anchors keep their planned poses and fix the frame the scene is fitted in; a closed loop's last camera
        # sees what the first sees, one step before it: it keeps its planned pose beside the first (loop closure),
        # so the refined ring cannot drift open or turn about the first camera
        self.closes_loop = refine_poses and cameras.closes_loop
        self.poses = CameraPoses(cameras.c2w_opencv, device=device, refine=refine_poses,
                                 anchors=list(anchors) + ([-1] if self.closes_loop else []), scale=self.extent,
                                 steps=preset.steps)
        self.intrinsics = torch.as_tensor(cameras.intrinsics, dtype=torch.float32, device=device)

    def colours(self) -> torch.Tensor:
        return torch.cat([self.params["sh0"], self.params["shN"]], dim=1)

    def regularisation(self) -> torch.Tensor | None:
        return None if self.kind.regularisation is None else self.kind.regularisation(self.params)

    def before_backward(self, step: int, meta: dict) -> None:
        self.strategy.step_pre_backward(self.params, self.optimizers, self.strategy_state, step, meta)

    def step(self, step: int, meta: dict) -> None:
        """Step every optimiser, then let the strategy densify (it may add, remove and move Gaussians)."""
        for optimizer in self.optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        self.poses.step()
        self.means_decay.step()
        self.kind.post_backward(self.strategy, self.params, self.optimizers, self.strategy_state, step, meta,
                                self.means_decay.get_last_lr()[0])

    def scene(self) -> Gaussians:
        """The fitted Gaussians, detached, on the CPU."""
        with torch.no_grad():
            return Gaussians(means=self.params["means"].detach().cpu(), log_scales=self.params["scales"].detach().cpu(),
                             quats_wxyz=self.params["quats"].detach().cpu(),
                             opacity_logits=self.params["opacities"].detach().cpu(), sh=self.colours().detach().cpu())

    def cameras(self, requested: Trajectory) -> tuple[Trajectory, list[str]]:
        """`requested` with the refined poses (and a sentence on how far they moved) when poses were refined."""
        if not self.poses.refined:
            return requested, []
        cameras = replace(requested, c2w_opencv=self.poses.c2w_opencv())
        loop = ["closed loop: the last camera kept its planned pose beside the first (loop closure), the others "
                "were refined"] if self.closes_loop else []
        return cameras, [describe_refinement(requested, cameras)] + loop


# --- what each step fits ---------------------------------------------------------------------------------------------

@dataclass
class Sample:
    """One training frame: which of the fit's cameras sees it, what it shows, how much each pixel is trusted."""
    view: int                          # position of the camera in the fit's cameras
    target: torch.Tensor               # (H, W, 3) in 0..1
    confidence: torch.Tensor           # (H, W)
    mask: torch.Tensor | None = None   # (H, W), 1 = fit this pixel
    time: float | None = None          # 4D: the time the Gaussians are moved to; None: as they are


class Sampler(Protocol):
    def sample(self, step: int) -> Sample: ...


class EpochOrder:
    """`items` once per epoch in a random order from a seeded generator: a fresh order every epoch (`reshuffle`,
    gsplat's trainer), or the first epoch's order repeated (`reshuffle=False`)."""

    def __init__(self, items: Sequence, generator: torch.Generator, *, reshuffle: bool = True):
        if not items:
            raise ValueError("no frames are left to fit (every frame is held out)")
        self.items, self.generator, self.reshuffle = list(items), generator, reshuffle
        self.order: list[int] = []
        self.position = 0

    def next(self):
        if self.position == len(self.order):
            if self.reshuffle or not self.order:
                self.order = torch.randperm(len(self.items), generator=self.generator).tolist()
            self.position = 0
        self.position += 1
        return self.items[self.order[self.position - 1]]


# the view orders a preset can name: each builds the order of a list of views from a seeded generator
VIEW_ORDERS: dict[str, Callable[[Sequence, torch.Generator], EpochOrder]] = {
    "reshuffle": lambda items, generator: EpochOrder(items, generator),
    "cycle": lambda items, generator: EpochOrder(items, generator, reshuffle=False),
}


class Motion(Protocol):
    """Where the Gaussians are for a sample (3D: where they are; 4D: moved by the deformation field)."""
    def place(self, params: dict, sample: Sample) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]: ...
    def regularisation(self) -> torch.Tensor | None: ...
    def step(self) -> None: ...


class Still:
    """A static scene: the Gaussians are where they are."""

    def place(self, params: dict, sample: Sample):
        return params["means"], params["quats"], params["scales"]

    def regularisation(self) -> None:
        return None

    def step(self) -> None:
        return None


LossOf = Callable[[torch.Tensor, Sample, int], torch.Tensor]  # (render (H, W, 3), sample, step) -> loss


def run_fit(fit: SceneOptimizer, rasterizer: Rasterizer, sampler: Sampler, preset: Preset, loss_of: LossOf, *,
            motion: Motion = Still(), background: torch.Tensor, preview_every: int = 50,
            hooks: Hooks = NO_HOOKS) -> float:
    """Run `preset.steps` optimisation steps; returns the mean loss over the last tenth of them."""
    params = fit.params
    # kept on the device: reading a loss every step would sync the GPU
    recent_losses: deque[torch.Tensor] = deque(maxlen=max(1, preset.steps // 10))
    for step in range(preset.steps):
        sample = sampler.sample(step)
        height, width = sample.target.shape[:2]
        sh_degree = min(step // preset.sh_interval, MAX_SH_DEGREE)
        means, quats, log_scales = motion.place(params, sample)
        image, _, meta = rasterizer.render(means, quats, log_scales, params["opacities"], fit.colours(),
                                           fit.poses.world_to_camera(sample.view),
                                           fit.intrinsics[sample.view:sample.view + 1], width, height,
                                           sh_degree=sh_degree, background=background)
        fit.before_backward(step, meta)
        loss = loss_of(image[0], sample, step)
        for extra in (fit.regularisation(), motion.regularisation()):
            if extra is not None:
                loss = loss + extra
        loss.backward()
        fit.step(step, meta)
        motion.step()
        recent_losses.append(loss.detach())
        show = (step + 1) % max(1, preview_every) == 0 or step + 1 == preset.steps
        hooks.step(step + 1, preset.steps, image[0].detach().clamp(0, 1).cpu() if show else None)
    return float(torch.stack(list(recent_losses)).mean())


# --- the result and its report -------------------------------------------------------------------------------------

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
    strategy: str = "default"

    def as_text(self) -> str:
        lines = [f"pose source: {self.pose_source}", *self.pose_notes,
                 f"steps: {self.steps}, final loss: {self.final_loss:.4f}, Gaussians: {self.gaussians} "
                 f"(densification: gsplat {self.strategy})",
                 f"rasterizer: {self.backend}, time: {self.seconds:.1f} s"]
        if self.heldout_psnr is not None:
            lines.append(f"held-out PSNR: {self.heldout_psnr:.2f} dB on frames {self.heldout_frames}")
        return "\n".join(lines + self.notices)


@dataclass
class Reconstruction:
    gaussians: Gaussians       # carries the fitted cameras (gaussians.cameras)
    report: ReconstructReport


@dataclass
class Heldout:
    """Frames kept out of the fit and scored on the fitted scene."""
    frames: list[int]                  # their indices among the input frames (for the report)
    views: list[int]                   # their cameras' positions in the fitted cameras
    targets: torch.Tensor              # (M, H, W, 3)
    times: list[float] | None = None   # 4D: each frame's time


def psnr(renders: torch.Tensor, targets: torch.Tensor) -> float:
    """PSNR in dB over a batch of (N, H, W, 3) images in 0..1 (mean squared error over all pixels)."""
    mse = float(((renders.float() - targets.float()) ** 2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def conclude(fit: SceneOptimizer, choice: PoseChoice, rasterizer: Rasterizer, preset: Preset, final_loss: float, *,
             started: float, notices: list[str], heldout: Heldout | None, camera_meta: dict,
             background=(0.0, 0.0, 0.0), deformation=None) -> Reconstruction:
    """The fitted scene (in the trajectory's frame, with its cameras and, in 4D, its deformation) and its report,
    with the PSNR of the held-out frames rendered from it."""
    fitted = fit.scene()
    cameras, refinement = fit.cameras(choice.cameras)
    fitted.cameras = replace(cameras, meta={**cameras.meta, "pose_source": choice.source, **camera_meta})
    fitted.deformation = deformation
    report = ReconstructReport(pose_source=choice.source, pose_notes=list(choice.notes) + refinement,
                               pose_check=choice.check, steps=preset.steps, final_loss=final_loss,
                               gaussians=len(fitted), backend=rasterizer.name, seconds=0.0, notices=notices,
                               heldout_frames=heldout.frames if heldout else [], strategy=preset.strategy)
    if heldout is not None and heldout.frames:
        scored = replace(fitted.cameras, c2w_opencv=fitted.cameras.c2w_opencv[heldout.views],
                         intrinsics=fitted.cameras.intrinsics[heldout.views])
        renders = render_views(fitted, scored, times=heldout.times, rasterizer=rasterizer, background=background)
        report.heldout_psnr = psnr(renders, heldout.targets)
    report.seconds = time.monotonic() - started
    return Reconstruction(fitted, report)
