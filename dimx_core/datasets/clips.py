"""Video clips on disk: reading users' videos frame by frame, writing dataset clips that reopen exactly sized.

Clips are H.264 (yuv420p, CRF 10: visually lossless, playable everywhere) at the model's frame rate. Reading
streams frames, so a long source video never has to fit in memory.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..files import atomic_path
from ..optional import require

VIDEO_SUFFIXES = (".mp4", ".webm", ".mov", ".mkv", ".avi", ".gif", ".m4v")
CLIP_QUALITY = ["-crf", "10"]


def video_fps(path: Path) -> float:
    """Frames per second a video declares (0.0 when it declares none)."""
    imageio = require("imageio.v3", "reading videos")
    try:
        return float(imageio.immeta(path).get("fps") or 0.0)
    except Exception as err:  # noqa: BLE001 - any decoder failure means: not a readable video
        raise ValueError(f"video '{path}' cannot be read ({type(err).__name__}: {err})") from err


def iter_frames(path: Path) -> Iterator[np.ndarray]:
    """(H, W, 3) uint8 frames of a video file, in order; a damaged file raises a ValueError naming it."""
    imageio = require("imageio.v3", "reading videos")
    try:
        for frame in imageio.imiter(path):
            yield np.asarray(frame)[..., :3]
    except (OSError, RuntimeError, ValueError, StopIteration) as err:
        raise ValueError(f"video '{path}' cannot be read ({type(err).__name__}: {err})") from err


def read_clip(path: Path) -> torch.Tensor:
    """A whole clip as (N, H, W, 3) float in 0..1; an empty or unreadable file is an error naming it."""
    frames = list(iter_frames(path))
    if not frames:
        raise ValueError(f"video '{path}' holds no frames (empty or truncated file)")
    return torch.from_numpy(np.stack(frames)).float() / 255.0


def write_clip(path: Path, frames: torch.Tensor, fps: float) -> Path:
    """(N, H, W, 3) frames in 0..1 as an .mp4 of exactly that size and length; nothing half-written."""
    imageio = require("imageio", "writing videos")
    pixels = (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy()
    with atomic_path(path) as part:
        writer = imageio.v2.get_writer(part, fps=fps, codec="libx264", quality=None, pixelformat="yuv420p",
                                       output_params=CLIP_QUALITY, macro_block_size=1, ffmpeg_log_level="error")
        try:
            for frame in pixels:
                writer.append_data(frame)
        finally:
            writer.close()
    return path
