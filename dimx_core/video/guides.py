"""How a denoising run is steered beyond the prompt, as DimensionX needs.

- A step guide (StepGuide) is asked at the start of every step of the loop: the director schedule (switched
  adapters, directors/adapters.DirectorControl, or merged weights, directors/merged.MergedDirectors) changes what
  the model is; LatentBlend (reference-latent sharing) pulls the latents toward a reference noised to the same
  timestep: z_t <- lambda * z_t + (1 - lambda) * z_ref,t.
- LatentStart (SDEdit) is where the loop starts: part-way through the schedule, from clean latents noised to that
  point.
Both latent guides noise with the scheduler's own forward process (`add_noise`), so they are exact for
v-prediction and zero-terminal-SNR schedules: at the first trailing timestep (999) alpha-bar is 0 and the latents
are pure noise.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Protocol

import torch


class StepGuide(Protocol):
    def before_step(self, step: int, latents: torch.Tensor, timestep: torch.Tensor, scheduler) -> torch.Tensor:
        """Called before the model at `step` of the full schedule (timestep on the latents' device); returns the
        latents the step denoises (the same tensor where the guide changes only the model)."""


@dataclass(frozen=True)
class StepGuides:
    """A run's step guides, asked in order at the start of every step."""
    guides: tuple[StepGuide, ...]

    def before_step(self, step: int, latents: torch.Tensor, timestep: torch.Tensor, scheduler) -> torch.Tensor:
        for guide in self.guides:
            latents = guide.before_step(step, latents, timestep, scheduler)
        return latents


def check_latents(latents: torch.Tensor, shape: tuple, what: str) -> None:
    if tuple(latents.shape) != tuple(shape):
        raise ValueError(f"{what} latents have shape {tuple(latents.shape)} but this model's video latents are "
                         f"{tuple(shape)}: the video must have the model's frame count and size")


def check_strength(strength: float, what: str = "start strength") -> None:
    if not (0.0 <= strength <= 1.0 and math.isfinite(strength)):
        raise ValueError(f"{what} must be between 0 and 1, got {strength}")


def skipped_steps(strength: float, steps: int) -> int:
    """Steps of the full schedule a start at `strength` skips (as diffusers' img2img pipelines count them)."""
    return steps - min(int(steps * strength), steps)


@dataclass(frozen=True)
class LatentStart:
    clean: torch.Tensor               # (1, F, C, h, w) in the transformer's latent space (VAE latents x scale)
    strength: float                   # 1.0: the whole schedule (pure noise at t=999); 0.0: no denoising at all
    noise: torch.Tensor | None = None  # a shared epsilon; None: drawn from the run's seed

    def __post_init__(self) -> None:
        check_strength(self.strength)

    def skipped_steps(self, steps: int) -> int:
        return skipped_steps(self.strength, steps)


@dataclass(frozen=True)
class LatentBlend:
    reference: torch.Tensor   # clean reference latents, same shape as the video's
    noise: torch.Tensor       # the same epsilon for every guided video: that is what shares the identity
    weight: float             # lambda: 1 keeps the run's own latents, 0 replaces them by the reference
    first: int                # first step (of the full schedule) that blends
    last: int                 # blending stops before this step

    def __post_init__(self) -> None:
        if not (0.0 <= self.weight <= 1.0 and math.isfinite(self.weight)):
            raise ValueError(f"blend weight (lambda) must be between 0 and 1, got {self.weight}")
        if not 0 <= self.first <= self.last:
            raise ValueError(f"blend steps {self.first}-{self.last} are not an increasing range of steps")

    def applies(self, step: int) -> bool:
        return self.first <= step < self.last

    def to(self, device: torch.device, dtype: torch.dtype) -> "LatentBlend":
        """The same blend with its tensors on the run's device, uploaded once rather than at every blended step."""
        return dataclasses.replace(self, reference=self.reference.to(device, dtype), noise=self.noise.to(device))

    def before_step(self, step: int, latents: torch.Tensor, timestep: torch.Tensor, scheduler) -> torch.Tensor:
        if not self.applies(step):
            return latents
        reference = scheduler.add_noise(self.reference.to(latents), self.noise.to(latents), timestep.reshape(1))
        return (self.weight * latents + (1.0 - self.weight) * reference).to(latents.dtype)
