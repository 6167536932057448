"""Appearance refinement (DimensionX, eq. 6): SDEdit each per-camera video with the T-Director.

Noise the video's latents to timestep t0, denoise with the video prior, optionally once more from the middle
of that range: this smooths the temporal jitter and view misalignment left between per-frame videos.
"""
from __future__ import annotations

import dataclasses

import torch

from ..video.components import VideoComponents
from ..video.guides import LatentStart, check_strength, skipped_steps
from ..video.request import VideoRequest, content_key
from ..video.runtime import Runtime
from ..video.sampling import generate
from ..video.workers import Task, Workers
from .latents import encode_video


def fit_length(video: torch.Tensor, frames: int) -> tuple[torch.Tensor, int]:
    """Pad a shorter video with its last frame to the model's length (cut back afterwards); longer is refused."""
    if len(video) > frames:
        raise ValueError(f"a video of {len(video)} frames is longer than the model's {frames}; refine it in parts")
    return torch.cat([video, video[-1:].expand(frames - len(video), *video.shape[1:])]), len(video)


def refinement_passes(strength: float, repeat: bool) -> list[float]:
    """The start strength of every pass: t0, and with `repeat` once more from half of it (the paper's second pass
    at a middle timestep)."""
    check_strength(strength, "refine strength (t0)")
    return [strength, strength / 2] if repeat else [strength]


def pass_steps(passes: list[float], steps: int) -> list[int]:
    """Steps each pass runs (the rest of the schedule from its start)."""
    return [steps - skipped_steps(strength, steps) for strength in passes]


def refine_video(parts: VideoComponents, video: torch.Tensor, shared: VideoRequest, passes: list[float],
                 runtime: Runtime) -> torch.Tensor:
    """One video (F, H, W, 3) at the model's size, SDEdited once per pass strength; each pass starts from the
    previous pass's frames (whose first frame conditions it), with `shared`'s prompts, settings and directors."""
    current, length = fit_length(video, parts.spec.frames)
    runs = pass_steps(passes, shared.settings.steps)
    for index, strength in enumerate(passes):
        request = dataclasses.replace(shared, image=current[0],
                                      start=LatentStart(encode_video(parts, current, runtime.place), strength))
        hooks = runtime.hooks.offset(sum(runs[:index]), sum(runs))
        current = generate(parts, request, runtime.with_hooks(hooks)).frames
    return current[:length]


def refine_videos(parts: VideoComponents, videos: torch.Tensor, shared: VideoRequest, strength: float, repeat: bool,
                  runtime: Runtime, workers: Workers | None = None) -> torch.Tensor:
    """videos: (V, F, H, W, 3) at the model's size. strength (t0) 0 returns them unchanged; 1 ignores them.
    `shared`: what every pass of every video uses (each pass has its own first frame and start). With `workers`,
    each video is refined by one of them."""
    passes = refinement_passes(strength, repeat)
    if strength == 0:
        return videos
    per_video = sum(pass_steps(passes, shared.settings.steps))
    total = len(videos) * per_video
    if workers is None:
        return torch.stack([refine_video(parts, video, shared, passes,
                                         runtime.with_hooks(runtime.hooks.offset(index * per_video, total)))
                            for index, video in enumerate(videos)])
    tasks = [Task(content_key(parts.identity, "refine", video, shared, passes), "refine",
                  (video.clone(), shared, tuple(passes)), per_video, f"refinement {index + 1} of {len(videos)}")
             for index, video in enumerate(videos)]
    refined: dict[str, torch.Tensor] = {}
    workers.run(parts, tasks, runtime, lambda task, frames, where: refined.__setitem__(task.key, frames))
    return torch.stack([refined[task.key] for task in tasks])
