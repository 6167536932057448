"""What a worker can be asked to do: one row per kind of task, each a function of the worker's model, the task's
payload and the worker's Runtime, returning frames (F, H, W, 3).

- "video": a VideoRequest (one per-frame video of the 4D grid, or any single video);
- "refine": (video, shared request, pass strengths): one camera's appearance refinement (identity/refine.py).

Training shards are the next row (not wired yet; the trainer reached main while this was written): the trainer's
`training.trainer.train_director(parts, dataset, options, out, runtime, process_group=group, ...)` takes a
torch.distributed group, with which every process trains its own slots of each global batch and the first writes
the file. Its row would load the dataset from its folder (payload: folder, TrainOptions, out, checkpoint folder) and
pass the worker's default process group; the pool would form one gang of all its workers (as it does for a
ParallelPlan of that many ranks, WorkerPool._join_groups) and send each member the same task.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from ..directors.adapters import Director, DirectorRef, attach
from ..directors.formats import read_lora
from ..identity.refine import refine_video
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


KINDS: dict[str, Callable[[VideoComponents, object, Runtime], torch.Tensor]] = {
    "video": _video,
    "refine": _refinement,
}
