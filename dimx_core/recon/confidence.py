"""Per-pixel confidence C of the paper's loss L = C (0.8 L1 + 0.2 (1 - SSIM)), without learned models.

Generated videos are not perfectly consistent: textures flicker and shapes morph between frames. A pixel whose
content moves consistently to a neighbouring frame and back (forward-backward optical-flow check, OpenCV DIS)
and keeps its colour there is trusted; the confidence falls linearly with the round-trip error and with the
colour change along the flow (a smooth flow field can be consistent over content that flickers). Without OpenCV, or on request, the
confidence is derived from the fit itself instead: pixels the scene cannot explain (residuals far above the
frame's typical residual) are down-weighted linearly.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from ..optional import require

CONFIDENCE_MODES = ("flow", "residual", "none")
FLOOR = 0.1  # no pixel is ignored entirely: an occlusion in both neighbours is still seen in this frame
# A real photo among generated frames (the two views of a sparse-view video) is right everywhere: it counts as this
# many fully trusted generated frames, so the in-between frames fill the gaps without outvoting the views.
KNOWN_FRAME_WEIGHT = 3.0


def flow_confidence(frames: np.ndarray, *, tolerance_px: float | None = None,
                    colour_tolerance: float = 0.2) -> np.ndarray:
    """(N, H, W) confidence in [FLOOR, 1] for (N, H, W, 3) frames in 0..1.

    For each neighbour (previous and next frame): 1 - round-trip error |F(p) + B(p + F(p))| / tolerance_px,
    and 1 - mean colour change |I(p) - I'(p + F(p))| / colour_tolerance, the smaller of the two (clamped). A
    pixel keeps the better of its two neighbours, since a region hidden on one side (disocclusion) is usually
    visible on the other. tolerance_px defaults to 0.5% of the image diagonal (at least one pixel)."""
    cv2 = require("cv2", "optical-flow confidence")
    count, height, width = frames.shape[:3]
    if count < 2:
        return np.ones((count, height, width), np.float32)
    tolerance = tolerance_px or max(1.0, 0.005 * float(np.hypot(width, height)))
    gray = [cv2.cvtColor((np.clip(f, 0, 1) * 255).round().astype(np.uint8), cv2.COLOR_RGB2GRAY) for f in frames]
    grid_x, grid_y = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    best = np.full((count, height, width), FLOOR, np.float32)

    colours = np.clip(frames, 0, 1).astype(np.float32)

    def consistency(source: int, target: int, forward: np.ndarray, backward: np.ndarray) -> np.ndarray:
        target_x, target_y = grid_x + forward[..., 0], grid_y + forward[..., 1]
        back = cv2.remap(backward, target_x, target_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        seen = cv2.remap(colours[target], target_x, target_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        geometric = 1.0 - np.linalg.norm(forward + back, axis=-1) / tolerance
        photometric = 1.0 - np.abs(seen - colours[source]).mean(axis=-1) / colour_tolerance
        confidence = np.clip(np.minimum(geometric, photometric), FLOOR, 1.0)
        leaves = (target_x < 0) | (target_x > width - 1) | (target_y < 0) | (target_y > height - 1)
        return np.where(leaves, FLOOR, confidence).astype(np.float32)

    def pair(index: int) -> tuple[np.ndarray, np.ndarray]:
        dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # one per thread: it keeps state
        forward = dis.calc(gray[index], gray[index + 1], None)
        backward = dis.calc(gray[index + 1], gray[index], None)
        return consistency(index, index + 1, forward, backward), consistency(index + 1, index, backward, forward)

    # The pairs are independent and OpenCV releases the GIL: one thread per core. For 49 frames at 720x480 on the
    # H200's 16-core host this took 1.2 s against 4.5-5.0 s serial, before the fit could start
    # (bench/RESULTS-recon-defaults-device.md).
    with ThreadPoolExecutor(max_workers=min(count - 1, os.cpu_count() or 1)) as pool:
        for index, (ahead, behind) in enumerate(pool.map(pair, range(count - 1))):
            best[index] = np.maximum(best[index], ahead)
            best[index + 1] = np.maximum(best[index + 1], behind)
    return best


def residual_confidence(residual: torch.Tensor, *, quantile: float = 0.9) -> torch.Tensor:
    """(H, W) confidence from a (H, W) residual: 1 up to the frame's `quantile` residual, falling linearly to
    FLOOR at twice that. No gradient flows through it."""
    residual = residual.detach()
    typical = torch.quantile(residual.flatten(), quantile).clamp_min(1e-6)
    return (2.0 - residual / typical).clamp(FLOOR, 1.0)
