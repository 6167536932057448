"""Multi-view videos: one S-Director video per temporal frame, assembled into one video per camera.

Frame i of the temporal video (the T-Director's) starts video i; all videos share the camera path (the same
S-Director schedule), the same seed and, with a guide, the same noisy reference latents. Video i's frame j is
what camera j sees at time i; regrouping by j gives K per-camera videos of N frames.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from ..files import atomic_path
from ..video.components import VideoComponents
from ..video.request import VideoRequest
from ..video.runtime import Runtime
from ..video.sampling import generate


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


class VideoCache:
    """Finished per-frame videos on disk under their requests' content keys (VideoRequest.key), so a cancelled or
    failed run resumes where it stopped."""

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


def per_frame_requests(frames: torch.Tensor, shared: VideoRequest) -> list[VideoRequest]:
    """The request of every per-frame video: `shared` (prompts, settings, S-Director schedule, identity guide)
    starting from each frame in turn."""
    return [dataclasses.replace(shared, image=frame) for frame in frames]


def generate_multiview(parts: VideoComponents, requests: list[VideoRequest], runtime: Runtime, *,
                       cache: VideoCache | None = None, views: list[int] | None = None,
                       on_video=lambda index, total, cached: None) -> torch.Tensor:
    """(N, K, H, W, 3): the video of each of the N requests (per_frame_requests); `views` keeps only those frame
    indices of every video (K = len(views)). Videos already in `cache` are not made again."""
    steps = [request.settings.steps for request in requests]
    total, videos = sum(steps), []
    for index, request in enumerate(requests):
        key = request.key(parts.identity)
        cached = cache.load(key) if cache else None
        on_video(index, len(requests), cached is not None)
        done = sum(steps[:index])
        if cached is None:
            cached = generate(parts, request, runtime.with_hooks(runtime.hooks.offset(done, total))).frames
            if cache:
                cache.save(key, cached)
        else:
            runtime.hooks.step(done + steps[index], total)
        videos.append(cached if views is None else cached[views])
    return torch.stack(videos)
