"""What one video run makes, as one value of plain data.

A VideoRequest holds everything that decides the frames: the first frame, the prompts (text or T5 states), the
sampler settings, the directors (by file reference) and their schedule, the 4D guides (an SDEdit start, a
reference blend) and the lossy speed options. It holds CPU tensors and plain values only, so it pickles: a
worker process that loaded the same model and attached the same director files runs it exactly as this process
would. How the run is carried out here (devices, progress, lossless speed-ups) is the Runtime's (runtime.py).

`key(model)` is its content key: equal keys, equal videos. The resumable multi-view cache files its videos
under it, and a task sent elsewhere is known by it.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

import torch

from ..directors.adapters import DirectorRef
from ..directors.schedule import DirectorSchedule
from ..speed.options import LossyOptions
from .guides import LatentBlend, LatentStart
from .release import ReleaseDefaults
from .solvers import AUTO, CFG_SCHEDULES, SOLVERS


@dataclass(frozen=True)
class SamplerSettings:
    """scheduler: a key of solvers.SOLVERS; cfg_schedule: a key of solvers.CFG_SCHEDULES (used when dynamic_cfg);
    either "auto": the loaded model's release defaults (`resolved`)."""
    steps: int = 50
    guidance: float = 6.0
    dynamic_cfg: bool = True
    scheduler: str = AUTO
    seed: int = 0
    eta: float = 0.0
    cfg_schedule: str = AUTO

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 1000:
            raise ValueError(f"steps must be between 1 and 1000, got {self.steps}")
        if not (self.guidance >= 0 and math.isfinite(self.guidance)):
            raise ValueError(f"guidance must be a finite number >= 0, got {self.guidance}")
        if self.scheduler != AUTO and self.scheduler not in SOLVERS:
            raise ValueError(f"scheduler must be '{AUTO}' or one of {', '.join(SOLVERS)}, got {self.scheduler!r}")
        if self.cfg_schedule != AUTO and self.cfg_schedule not in CFG_SCHEDULES:
            raise ValueError(f"cfg_schedule must be '{AUTO}' or one of {', '.join(CFG_SCHEDULES)}, got "
                             f"{self.cfg_schedule!r}")

    def resolved(self, release: ReleaseDefaults) -> "SamplerSettings":
        """These settings with every "auto" replaced by the model's release default."""
        return dataclasses.replace(
            self, scheduler=release.scheduler if self.scheduler == AUTO else self.scheduler,
            cfg_schedule=release.cfg_schedule if self.cfg_schedule == AUTO else self.cfg_schedule)


@dataclass(frozen=True)
class VideoRequest:
    """One video to make. image: the first frame (H, W, 3) in 0..1, any size; None in a request that several
    videos share until each gets its own first frame (multi-view, refinement). prompt/negative_prompt: text, or
    T5 states (1, tokens, width) already fitted to the model (conditioning.fit_prompt_states). directors: those
    the schedule may name, attached to the model before the run; no schedule (or one with no segments): the base
    model alone. start: begin part-way from given latents (SDEdit); blend: pull early steps toward a reference.
    end_image: the last frame (H, W, 3), the size of `image`, for a start/end-frame model; None: first frame only."""
    image: torch.Tensor | None
    prompt: str | torch.Tensor
    negative_prompt: str | torch.Tensor = ""
    settings: SamplerSettings = SamplerSettings()
    directors: tuple[DirectorRef, ...] = ()
    schedule: DirectorSchedule | None = None
    start: LatentStart | None = None
    blend: LatentBlend | None = None
    lossy: LossyOptions = LossyOptions()
    end_image: torch.Tensor | None = None

    def key(self, model: str) -> str:
        """The content key of this request run on `model` (VideoComponents.identity): every field enters it."""
        return content_key(model, self)


def content_key(*values) -> str:
    """A short digest of values: tensors by shape and value, dataclasses field by field, the rest as JSON."""
    digest = hashlib.sha1()
    for value in values:
        _feed(digest, value)
    return digest.hexdigest()[:20]


def _feed(digest, value) -> None:
    if isinstance(value, torch.Tensor):
        digest.update(json.dumps(["tensor", list(value.shape)]).encode())
        digest.update(value.detach().cpu().contiguous().float().numpy().tobytes())
    elif dataclasses.is_dataclass(value):
        digest.update(json.dumps(["dataclass", type(value).__name__]).encode())
        for field in dataclasses.fields(value):
            _feed(digest, getattr(value, field.name))
    elif isinstance(value, (list, tuple)):
        digest.update(json.dumps(["sequence", len(value)]).encode())
        for item in value:
            _feed(digest, item)
    else:
        digest.update(json.dumps(value, sort_keys=True).encode())
