"""Other processes that work for this one (dimx_core.distributed's Ray workers), as the stages that can hand out
their independent videos (multi-view grid, refinement) or a training run see them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

from .components import VideoComponents
from .runtime import Runtime


@dataclass(frozen=True)
class Task:
    """One independent piece of work. key: its content key (equal keys, equal results: done once); kind: what to
    do with the payload (distributed/tasks.KINDS); steps: its share of the progress bar; label: how the progress
    text names it ("video 3 of 13")."""
    key: str
    kind: str
    payload: object
    steps: int
    label: str


class Workers(Protocol):
    def run(self, parts: VideoComponents, tasks: list[Task], runtime: Runtime,
            on_done: Callable[[Task, object, str], None]) -> None:
        """Do every task with the model `parts` was loaded from and `runtime`'s speed options, reporting the
        progress of all of them through runtime.hooks; on_done(task, result, where) is called here, in this
        process, as each one finishes (a video's result is its frames). A Cancel (runtime.hooks.should_stop)
        stops every worker and raises Interrupted once they stopped."""
