"""Multi-view videos: one S-Director video per temporal frame, assembled into one video per camera.

Frame i of the temporal video (the T-Director's) starts video i; all videos share the camera path (the same
S-Director schedule), the same seed and, with a guide, the same noisy reference latents. Video i's frame j is
what camera j sees at time i; regrouping by j gives K per-camera videos of N frames.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch

from ..directors.adapters import Director, DirectorControl, attach
from ..directors.schedule import DirectorSchedule
from ..files import atomic_path
from ..hooks import NO_HOOKS, Hooks
from ..speed.options import SpeedOptions
from ..video.components import VideoComponents
from ..video.sampling import Offload, Place, SamplerSettings, generate
from .latents import IdentityGuide


def evenly_spaced_views(count: int, total: int) -> list[int] | None:
    """The frame indices of `count` cameras kept evenly spaced from a video (or trajectory) of `total` frames,
    first and last included; None when all are kept (count 0 or `total`). Multi-view generation keeps these
    frames of every video and the 4D reconstruction picks the same poses from the camera path."""
    if count in (0, total):
        return None
    if not 1 <= count <= total:
        raise ValueError(f"views must be between 1 and the video length {total} (0: all), got {count}")
    return [round(i * (total - 1) / max(count - 1, 1)) for i in range(count)]


def per_camera(grid: torch.Tensor) -> torch.Tensor:
    """(N times, K cameras, H, W, 3) -> (K, N, H, W, 3): video j holds camera j's view at every time."""
    return grid.transpose(0, 1).contiguous()


def _key(*parts) -> str:
    digest = hashlib.sha1()
    for part in parts:
        if isinstance(part, torch.Tensor):
            digest.update(part.detach().cpu().contiguous().float().numpy().tobytes())
        else:
            digest.update(json.dumps(part, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:20]


class VideoCache:
    """Finished per-frame videos on disk, so a cancelled or failed run resumes where it stopped."""

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pt"

    def load(self, key: str) -> torch.Tensor | None:
        path = self.path(key)
        return torch.load(path, weights_only=True).float() / 255 if path.is_file() else None

    def save(self, key: str, frames: torch.Tensor) -> None:
        with atomic_path(self.path(key)) as part:
            torch.save((frames.clamp(0, 1) * 255).round().to(torch.uint8), part)


def generate_multiview(parts: VideoComponents, frames: torch.Tensor, prompt, negative_prompt,
                       settings: SamplerSettings, directors: list[Director], plan: DirectorSchedule, *,
                       guide: IdentityGuide | None = None, place: Place, hooks: Hooks = NO_HOOKS,
                       cache: VideoCache | None = None, views: list[int] | None = None,
                       on_video=lambda index, total, cached: None, speed: SpeedOptions = SpeedOptions(),
                       offload: Offload | None = None) -> torch.Tensor:
    """(N, K, H, W, 3): for each of the N input frames, the video that starts from it; `views` keeps only
    those frame indices of every video (K = len(views))."""
    attach(parts.transformer, directors, parts.spec.describe())
    identity = _key(parts.source, parts.spec.describe(), prompt,
                    negative_prompt, dataclasses.asdict(settings),
                    [(d.name, d.role, d.strength, d.lora.fingerprint) for d in directors], plan.describe(),
                    guide.describe() if guide else None, guide.start.clean if guide else None,
                    guide.start.noise if guide else None, speed.fp8, speed.step_cache)  # the lossy options
    total = len(frames) * settings.steps
    videos = []
    for index, frame in enumerate(frames):
        key = _key(identity, frame)
        cached = cache.load(key) if cache else None
        on_video(index, len(frames), cached is not None)
        if cached is None:
            offset = index * settings.steps
            step_hooks = Hooks(progress=lambda s, n, p, offset=offset: hooks.progress(offset + s, total, p),
                               should_stop=hooks.should_stop)
            result = generate(parts, frame, prompt, negative_prompt, settings,
                              directors=DirectorControl(parts.transformer, directors, plan),
                              start=guide.start if guide else None, blend=guide.blend if guide else None,
                              place=place, hooks=step_hooks, speed=speed, offload=offload)
            cached = result.frames
            if cache:
                cache.save(key, cached)
        else:
            hooks.step((index + 1) * settings.steps, total)
        videos.append(cached if views is None else cached[views])
    return torch.stack(videos)
