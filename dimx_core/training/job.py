"""A training run as one value that can be sent to Ray workers, and where it runs: here, or on every worker at once.

On workers the run is one task that every worker of the pool takes together (distributed/tasks.py, "train"): each
trains its own slots of every global batch over the pool's process group, so N workers of batch B train what one
process of batch N x B trains, and the first writes the checkpoints and the file. Workers open the job's folders
themselves: on a cluster the dataset, the output and the checkpoint folder need the same paths on every machine.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..datasets.layout import open_dataset
from ..video.components import VideoComponents
from ..video.runtime import Runtime
from ..video.workers import Task, Workers
from .options import TrainOptions
from .trainer import TrainResult, train_director


@dataclass(frozen=True)
class TrainingJob:
    """What train_director takes besides the model and the runtime, as plain data (folders as paths)."""
    dataset: Path
    options: TrainOptions
    out: Path
    checkpoints: Path | None = None
    resume: bool = True
    validation_prompt: str | None = None
    validation_image: torch.Tensor | None = None  # (H, W, 3) in 0..1

    def run(self, parts: VideoComponents, runtime: Runtime, process_group=None,
            say: Callable[[str], None] = lambda text: None) -> TrainResult:
        return train_director(parts, open_dataset(self.dataset), self.options, self.out, runtime,
                              checkpoints=self.checkpoints, resume=self.resume,
                              validation_prompt=self.validation_prompt, validation_image=self.validation_image,
                              process_group=process_group, say=say)


def run_training(parts: VideoComponents, job: TrainingJob, runtime: Runtime, workers: Workers | None = None,
                 say: Callable[[str], None] = lambda text: None) -> TrainResult:
    """The job in this process (workers None), or on every worker of `workers` together (its folders made absolute:
    a worker's working folder is its own). Progress and Cancel go
    through runtime.hooks either way; a Cancel leaves the checkpoint of the last finished step and raises
    Interrupted. The workers' own messages stay in their processes (the result's report says how the run went)."""
    if workers is None:
        return job.run(parts, runtime, say=say)
    job = dataclasses.replace(job, dataset=Path(job.dataset).resolve(), out=Path(job.out).resolve(),
                              checkpoints=None if job.checkpoints is None else Path(job.checkpoints).resolve())
    task = Task(f"train:{job.out}", "train", job, job.options.steps, f"training the {job.options.role}-Director")
    results: list[TrainResult] = []
    workers.run(parts, [task], runtime, lambda done, result, where: results.append(result))
    return results[0]
