"""Appearance refinement (DimensionX, eq. 6): SDEdit each per-camera video with the T-Director.

Noise the video's latents to timestep t0, denoise with the video prior, optionally once more from the middle
of that range: this smooths the temporal jitter and view misalignment left between per-frame videos.
"""
from __future__ import annotations

import torch

from ..directors.adapters import Director, DirectorControl, attach
from ..directors.schedule import DirectorSchedule
from ..hooks import NO_HOOKS, Hooks
from ..speed.options import SpeedOptions
from ..video.components import VideoComponents
from ..video.guides import LatentStart, check_strength, skipped_steps
from ..video.sampling import Offload, Place, SamplerSettings, generate
from .latents import encode_video


def fit_length(video: torch.Tensor, frames: int) -> tuple[torch.Tensor, int]:
    """Pad a shorter video with its last frame to the model's length (cut back afterwards); longer is refused."""
    if len(video) > frames:
        raise ValueError(f"a video of {len(video)} frames is longer than the model's {frames}; refine it in parts")
    return torch.cat([video, video[-1:].expand(frames - len(video), *video.shape[1:])]), len(video)


def refine_videos(parts: VideoComponents, videos: torch.Tensor, prompt, negative_prompt, settings: SamplerSettings,
                  directors: list[Director], plan: DirectorSchedule, strength: float, repeat: bool, *,
                  place: Place, hooks: Hooks = NO_HOOKS, speed: SpeedOptions = SpeedOptions(),
                  offload: Offload | None = None) -> torch.Tensor:
    """videos: (V, F, H, W, 3) at the model's size. strength (t0) 0 returns them unchanged; 1 ignores them.
    `repeat` refines once more from half the strength (the paper's second pass at a middle timestep)."""
    check_strength(strength, "refine strength (t0)")
    if strength == 0:
        return videos
    attach(parts.transformer, directors, parts.spec.describe())
    passes = [strength, strength / 2] if repeat else [strength]
    runs = [settings.steps - skipped_steps(s, settings.steps) for s in passes]
    total, done, refined = len(videos) * sum(runs), 0, []
    for video in videos:
        current, length = fit_length(video, parts.spec.frames)
        for pass_strength, run in zip(passes, runs):
            offset = done
            pass_hooks = Hooks(progress=lambda s, n, p, offset=offset: hooks.progress(offset + s, total, p),
                               should_stop=hooks.should_stop)
            start = LatentStart(encode_video(parts, current, place), pass_strength)
            current = generate(parts, current[0], prompt, negative_prompt, settings,
                               directors=DirectorControl(parts.transformer, directors, plan), start=start,
                               place=place, hooks=pass_hooks, speed=speed, offload=offload).frames
            done += run
        refined.append(current[:length])
    return torch.stack(refined)
