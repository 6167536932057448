"""What a worker can be asked to do: one row per kind of task, each a function of the worker's model, the task's
payload and the worker's Runtime, returning the task's result.

- "video": a VideoRequest (one per-frame video of the 4D grid, or any single video) -> frames (F, H, W, 3);
- "refine": (video, shared request, pass strengths): one camera's appearance refinement (identity/refine.py) ->
  frames;
- "train": a TrainingJob (training/job.py) -> its TrainResult. Every worker of the pool takes the same task
  together (whole_pool): the pool joins all its workers in one torch.distributed group (the worker's default group),
  over which each trains its own slots of every global batch; the first writes the checkpoints and the file.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as dist

from ..directors.adapters import Director, DirectorRef, attach
from ..directors.formats import read_lora
from ..identity.refine import refine_video
from ..training.job import TrainingJob
from ..video.components import VideoComponents
from ..video.request import VideoRequest
from ..video.runtime import Runtime
from ..video.sampling import generate


def attach_referenced(parts: VideoComponents, refs: tuple[DirectorRef, ...]) -> None:
    """Make the request's directors resident, read from their files once per worker. The adapter keeps the name the
    sending process gave it (its file fingerprint), so the request's schedule finds it."""
    present = {name for module in parts.transformer.modules() for name in getattr(module, "lora_A", {})}
    for ref in refs:
        if ref.adapter_name not in present:
            lora = dataclasses.replace(read_lora(ref.path), fingerprint=ref.fingerprint)
            attach(parts.transformer, [Director(ref.name, ref.role, ref.strength, lora)], parts.spec.describe())


def _video(parts: VideoComponents, request: VideoRequest, runtime: Runtime) -> torch.Tensor:
    attach_referenced(parts, request.directors)
    return generate(parts, request, runtime).frames


def _refinement(parts: VideoComponents, payload, runtime: Runtime) -> torch.Tensor:
    video, shared, passes = payload
    attach_referenced(parts, shared.directors)
    return refine_video(parts, video, shared, list(passes), runtime)


def _training(parts: VideoComponents, job: TrainingJob, runtime: Runtime):
    return job.run(parts, runtime, process_group=dist.group.WORLD if dist.is_initialized() else None)


@dataclass(frozen=True)
class Kind:
    """run(parts, payload, runtime) -> result. whole_pool: every worker of the pool takes the task at once, in one
    process group (otherwise one gang of the pool's ParallelPlan takes it)."""
    run: Callable[[VideoComponents, object, Runtime], object]
    whole_pool: bool = False


KINDS: dict[str, Kind] = {
    "video": Kind(_video),
    "refine": Kind(_refinement),
    "train": Kind(_training, whole_pool=True),
}
