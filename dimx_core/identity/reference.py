"""Choosing the reference frame: the one whose motion best covers the dynamic region (DimensionX, 4D)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..hooks import NO_HOOKS, Hooks
from ..optional import require


@dataclass
class ReferenceChoice:
    index: int
    scores: np.ndarray      # (N,) flow magnitude summed over each frame's dynamic region
    masks: np.ndarray       # (N, H, W) bool, the dynamic region of each frame
    magnitudes: np.ndarray  # (N, H, W) optical-flow magnitude in pixels

    def describe(self) -> str:
        best = self.scores[self.index]
        coverage = self.masks[self.index].mean() * 100
        return (f"reference frame {self.index} of {len(self.scores)}: flow x mask score {best:.1f} "
                f"({coverage:.1f}% of the frame moves); scores: " + ", ".join(f"{s:.0f}" for s in self.scores))


def flow_magnitudes(frames: torch.Tensor, hooks: Hooks = NO_HOOKS) -> np.ndarray:
    """Per-pixel motion of every frame, in pixels: DIS optical flow to the next frame (the last to the previous).

    DIS (OpenCV) is classical and needs no learned weights; it is accurate for the small motions between frames.
    `hooks` sees every frame pair and may cancel (a long batch takes a while).
    """
    cv2 = require("cv2", "optical flow")
    if frames.ndim != 4 or frames.shape[0] < 2:
        raise ValueError(f"expected a video of at least 2 frames (N, H, W, 3), got {tuple(frames.shape)}")
    gray = [cv2.cvtColor((f.clamp(0, 1) * 255).round().byte().cpu().numpy()[..., :3], cv2.COLOR_RGB2GRAY)
            for f in frames]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    forward = []
    for a, b in zip(gray[:-1], gray[1:]):
        forward.append(np.linalg.norm(dis.calc(a, b, None), axis=-1))
        hooks.step(len(forward), len(gray) - 1)
    return np.stack(forward + [forward[-1]])


def select_reference_frame(frames: torch.Tensor, mask: torch.Tensor | None = None,
                           flow_threshold: float = 1.0, hooks: Hooks = NO_HOOKS) -> ReferenceChoice:
    """The frame maximising sum(flow magnitude x dynamic mask). The mask is the given one (any segmentation,
    (N, H, W) or one (H, W) for all frames), else the pixels that move more than `flow_threshold` pixels."""
    if not flow_threshold >= 0:
        raise ValueError(f"flow_threshold must be >= 0 pixels, got {flow_threshold}")
    magnitudes = flow_magnitudes(frames, hooks)
    if mask is None:
        masks = magnitudes > flow_threshold
    else:
        given = mask.detach().cpu().numpy() > 0.5
        given = given[None] if given.ndim == 2 else given
        if given.shape[-2:] != magnitudes.shape[-2:] or given.shape[0] not in (1, len(magnitudes)):
            raise ValueError(f"mask of shape {tuple(mask.shape)} does not match {len(magnitudes)} frames of "
                             f"{magnitudes.shape[2]}x{magnitudes.shape[1]}")
        masks = np.broadcast_to(given, magnitudes.shape)
    scores = (magnitudes * masks).sum(axis=(1, 2))
    return ReferenceChoice(int(np.argmax(scores)), scores, np.asarray(masks), magnitudes)
