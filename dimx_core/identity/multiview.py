"""Multi-view videos: one S-Director video per temporal frame, assembled into one video per camera.

Frame i of the temporal video (the T-Director's) starts video i; all videos share the camera path (the same
S-Director schedule), the same seed and, with a guide, the same noisy reference latents. Video i's frame j is
what camera j sees at time i; regrouping by j gives K per-camera videos of N frames.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from ..files import atomic_path
from ..video.components import VideoComponents
from ..video.request import VideoRequest
from ..video.runtime import Runtime
from ..video.sampling import generate
from ..video.workers import Task, Workers

JOURNAL = "made.jsonl"


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

    def save(self, key: str, frames: torch.Tensor, made_by: str = "this process") -> None:
        """File a finished video, and note in the journal who made it (a video made twice would show twice)."""
        with atomic_path(self.path(key)) as part:
            torch.save((frames.clamp(0, 1) * 255).round().to(torch.uint8), part)
        with open(self.folder / JOURNAL, "a", encoding="utf-8") as journal:
            journal.write(json.dumps({"key": key, "made_by": made_by}) + "\n")

    def journal(self) -> list[dict]:
        """Every video filed here, in order: {"key", "made_by"}."""
        path = self.folder / JOURNAL
        lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
        return [json.loads(line) for line in lines if line.strip()]


def per_frame_requests(frames: torch.Tensor, shared: VideoRequest) -> list[VideoRequest]:
    """The request of every per-frame video: `shared` (prompts, settings, S-Director schedule, identity guide)
    starting from each frame in turn (a copy of it: a view would carry the whole batch wherever it is sent)."""
    return [dataclasses.replace(shared, image=frame.clone()) for frame in frames]


def generate_multiview(parts: VideoComponents, requests: list[VideoRequest], runtime: Runtime, *,
                       cache: VideoCache | None = None, views: list[int] | None = None,
                       on_video=lambda index, total, cached: None, workers: Workers | None = None) -> torch.Tensor:
    """(N, K, H, W, 3): the video of each of the N requests (per_frame_requests); `views` keeps only those frame
    indices of every video (K = len(views)). Videos already in `cache` are not made again; the others are made
    here one after another, or by `workers`, filed in the cache as each one arrives."""
    steps, count = [request.settings.steps for request in requests], len(requests)
    total, keys = sum(steps), [request.key(parts.identity) for request in requests]
    filed = {key: cache.load(key) for key in dict.fromkeys(keys)} if cache else {}
    made = {key: frames for key, frames in filed.items() if frames is not None}
    if workers is not None:
        for index in [index for index, key in enumerate(keys) if key in made]:
            on_video(index, count, True)
        tasks = [Task(key, "video", request, steps[index], f"video {index + 1} of {count}")
                 for index, (key, request) in enumerate(zip(keys, requests)) if key not in made]

        def arrived(task: Task, frames: torch.Tensor, where: str) -> None:
            made[task.key] = frames
            if cache:
                cache.save(task.key, frames, made_by=where)

        hooks = runtime.hooks.offset(total - sum(task.steps for task in tasks), total)
        workers.run(parts, tasks, runtime.with_hooks(hooks), arrived)
    for index, (key, request) in enumerate(zip(keys, requests)):
        done = sum(steps[:index])
        if key in made:  # from the cache, or made by the workers
            if workers is None:
                on_video(index, count, True)
                runtime.hooks.step(done + steps[index], total)
            continue
        on_video(index, count, False)
        made[key] = generate(parts, request, runtime.with_hooks(runtime.hooks.offset(done, total))).frames
        if cache:
            cache.save(key, made[key])
    return torch.stack([made[key] if views is None else made[key][views] for key in keys])
