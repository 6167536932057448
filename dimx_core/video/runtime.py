"""How this process carries out a run, as one value: where modules go, progress and cancel, the speed-ups, previews.

A Runtime never changes what a run makes (that is the VideoRequest's, request.py); it is built by whoever runs
the request: the nodes from ComfyUI's memory manager and progress bar, the CLI and benchmarks from a device.
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass
from typing import Callable, ContextManager, Protocol

import torch

from ..hooks import NO_HOOKS, Hooks
from ..speed.options import LossyOptions, SpeedOptions

Place = Callable[[torch.nn.Module], torch.device]
Offload = Callable[[torch.nn.Module], None]


class StepSplit(Protocol):
    """How the model calls of a video's steps are shared with other processes (dimx_core.distributed.parallel:
    the guided batch's halves on two ranks, the tokens of every attention split among ranks)."""

    def applied(self, transformer: torch.nn.Module, speed: SpeedOptions) -> ContextManager[None]:
        """Around the whole loop: prepare the transformer (and refuse speed options the split cannot share)."""

    def velocity(self, forward: Callable[[slice], torch.Tensor], batch: int) -> torch.Tensor:
        """The model's output for the whole guided batch of `batch` rows; `forward(rows)` runs those rows here."""


class WholeSteps:
    """Every model call made by this process alone: the default."""

    def applied(self, transformer: torch.nn.Module, speed: SpeedOptions) -> ContextManager[None]:
        return contextlib.nullcontext()

    def velocity(self, forward: Callable[[slice], torch.Tensor], batch: int) -> torch.Tensor:
        return forward(slice(None))


WHOLE_STEPS = WholeSteps()


@dataclass(frozen=True)
class Runtime:
    """place(module): put a module where it can run and return that device. offload(module): send it back to host
    memory (the 24 GB mode keeps T5 and the transformer apart with it; None: never). speed: the speed-ups; the
    lossy ones come from the request (`speed_for`). preview_every: decode a preview every that many steps
    (0: never). split: how each step's model calls are shared with other processes (WHOLE_STEPS: not at all)."""
    place: Place
    offload: Offload | None = None
    hooks: Hooks = NO_HOOKS
    speed: SpeedOptions = SpeedOptions()
    preview_every: int = 1
    split: StepSplit = WHOLE_STEPS

    @classmethod
    def on_device(cls, device: torch.device, **fields) -> "Runtime":
        """Modules moved to `device` by hand and back to the CPU to offload (where no memory manager places them)."""
        def place(module: torch.nn.Module) -> torch.device:
            module.to(device)
            return device

        def offload(module: torch.nn.Module) -> None:
            module.to("cpu")
            if device.type == "cuda":
                torch.cuda.empty_cache()

        return cls(place=place, offload=offload, **fields)

    def with_hooks(self, hooks: Hooks) -> "Runtime":
        return dataclasses.replace(self, hooks=hooks)

    def speed_for(self, lossy: LossyOptions) -> SpeedOptions:
        """The speed-ups for a request whose lossy options are `lossy`. They change what is made, so they are the
        request's: a runtime asking for other lossy options than the request is refused, not quietly overruled."""
        own = self.speed.lossy()
        if own not in (LossyOptions(), lossy):
            raise ValueError(f"the runtime's speed options ask for {own} but the request for {lossy}: options that "
                             "change the result belong to the request (VideoRequest(lossy=speed.lossy()))")
        return self.speed.with_lossy(lossy)
