"""Videos with a known camera, for the static-camera test: a still camera watching an object move across a
textured background, and a camera panning or zooming over a static textured scene, at several speeds and
textures. Each clip is written as an .mp4 (H.264, as users' videos are) and carries its truth."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dimx_core.datasets.clips import write_clip

TEXTURES = ("fine", "blobs", "checker")
SPEEDS_PX = (1.0, 2.0, 4.0, 8.0)   # pixels per frame at the clip's size


@dataclass(frozen=True)
class TruthClip:
    name: str
    static: bool
    path: Path


def texture(kind: str, height: int, width: int, seed: int) -> np.ndarray:
    """(H, W, 3) uint8 with the named texture."""
    rng = np.random.default_rng(seed)
    if kind == "fine":
        base = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 1.0)
    elif kind == "blobs":
        base = cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 4.0)
    elif kind == "checker":
        y, x = np.mgrid[:height, :width]
        checks = (((x // 12) + (y // 12)) % 2).astype(np.float32)[..., None]
        base = 0.6 * checks + 0.4 * cv2.GaussianBlur(rng.random((height, width, 3)).astype(np.float32), (0, 0), 1.5)
    else:
        raise ValueError(kind)
    base = (base - base.min()) / (base.max() - base.min() + 1e-9)
    return (base * 255).astype(np.uint8)


def _noisy(frame: np.ndarray, rng) -> np.ndarray:
    return np.clip(frame.astype(np.float32) + rng.normal(0, 2.0, frame.shape), 0, 255).astype(np.uint8)


def still_camera(kind: str, speed: float, frames: int, width: int, height: int, seed: int) -> np.ndarray:
    """A fixed background; a textured disc a quarter of the width across moving `speed` px per frame."""
    rng = np.random.default_rng(seed)
    background = texture(kind, height, width, seed)
    sprite = texture(TEXTURES[(TEXTURES.index(kind) + 1) % 3], height, width, seed + 1)
    radius = width // 8
    angle = rng.uniform(0, 2 * math.pi)
    direction = np.array([math.cos(angle), math.sin(angle)])
    start = np.array([width / 2, height / 2]) - direction * speed * frames / 2
    y, x = np.mgrid[:height, :width]
    video = []
    for index in range(frames):
        cx, cy = start + direction * speed * index
        inside = ((x - cx) ** 2 + (y - cy) ** 2 <= radius ** 2)[..., None]
        shift = np.float32([[1, 0, cx - width / 2], [0, 1, cy - height / 2]])
        moved = cv2.warpAffine(sprite, shift, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        video.append(_noisy(np.where(inside, moved, background), rng))
    return np.stack(video)


def moving_camera(kind: str, speed: float, frames: int, width: int, height: int, seed: int, motion: str) -> np.ndarray:
    """A static scene (a large texture) seen by a camera panning, or zooming in, at `speed` px per frame (at the
    image edge, for the zoom)."""
    rng = np.random.default_rng(seed)
    scene = texture(kind, height * 3, width * 3, seed)
    angle = rng.uniform(0, 2 * math.pi)
    video = []
    for index in range(frames):
        if motion == "pan":
            dx, dy = speed * index * math.cos(angle), speed * index * math.sin(angle)
            transform = np.float32([[1, 0, width + dx], [0, 1, height + dy]])
        else:
            scale = 1.0 + speed * index / (width / 2)
            transform = np.float32([[1 / scale, 0, 1.5 * width - width / (2 * scale)],
                                    [0, 1 / scale, 1.5 * height - height / (2 * scale)]])
        view = cv2.warpAffine(scene, transform, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
        video.append(_noisy(view, rng))
    return np.stack(video)


def truth_clips(folder: Path, frames: int = 17, width: int = 144, height: int = 96) -> list[TruthClip]:
    """Every texture x speed: a still camera with a moving object, a panning camera, a zooming camera."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    clips, seed = [], 0
    for kind in TEXTURES:
        for speed in SPEEDS_PX:
            for name, static, make in (
                    ("still", True, lambda: still_camera(kind, speed, frames, width, height, seed)),
                    ("pan", False, lambda: moving_camera(kind, speed, frames, width, height, seed, "pan")),
                    ("zoom", False, lambda: moving_camera(kind, speed, frames, width, height, seed, "zoom"))):
                seed += 1
                path = folder / f"{name}_{kind}_{speed:g}px.mp4"
                write_clip(path, torch.from_numpy(make()).float() / 255.0, 8.0)
                clips.append(TruthClip(path.stem, static, path))
    return clips


def blur_dataset(folder: Path, clips: int = 3) -> Path:
    """A spatial dataset folder of `clips` smooth random colour clips at the tiny model's size (17 frames of
    144x96): the cheapest data a training test can read through the dataset layout."""
    import torch

    from dimx_core.datasets.layout import ClipGeometry, DatasetWriter

    writer = DatasetWriter(folder, "spatial", ClipGeometry(144, 96, 17, 8.0), {})
    generator = torch.Generator().manual_seed(0)
    for index in range(clips):
        coarse = torch.rand(1, 3, 3, 4, 6, generator=generator)
        frames = torch.nn.functional.interpolate(coarse, size=(17, 96, 144), mode="trilinear")[0]
        writer.add(frames.permute(1, 2, 3, 0), f"a coloured blur {index}", {})
    writer.finish([])
    return folder
