"""Reading screenshots: where a colour appears, and how far two views differ."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def load(path: str | Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(np.int16)


def mask(image: np.ndarray, rgb, tolerance: int = 60) -> np.ndarray:
    """Pixels within `tolerance` (max channel difference) of `rgb`."""
    return np.abs(image - np.asarray(rgb, dtype=np.int16)).max(axis=-1) <= tolerance


def dominant(image: np.ndarray, channel: int, margin: int = 80) -> np.ndarray:
    """Pixels where `channel` exceeds both other channels by `margin`: saturated red, green or blue."""
    others = [c for c in range(3) if c != channel]
    return (image[..., channel] - np.maximum(image[..., others[0]], image[..., others[1]])) > margin


def centroid(selected: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(selected)
    assert len(xs) > 0, "no pixel selected"
    return float(xs.mean()), float(ys.mean())


def mean_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).mean())
