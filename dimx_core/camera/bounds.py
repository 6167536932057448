"""The region the cameras cover: a box along the principal axes of their positions (the paper's PCA bound,
used to plan feasible paths through a reconstructed scene)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraBounds:
    center: np.ndarray        # (3,) mean camera position
    axes: np.ndarray          # (3, 3) rows: principal directions, largest spread first, right-handed
    extent_min: np.ndarray    # (3,) smallest coordinate along each axis, relative to center
    extent_max: np.ndarray    # (3,) largest coordinate along each axis, relative to center
    spread: np.ndarray        # (3,) standard deviation of the positions along each axis

    @property
    def size(self) -> np.ndarray:
        return self.extent_max - self.extent_min

    def corners(self) -> np.ndarray:
        """(8, 3) box corners in world coordinates."""
        picks = np.array([[i >> 2 & 1, i >> 1 & 1, i & 1] for i in range(8)], dtype=bool)
        local = np.where(picks, self.extent_max, self.extent_min)
        return self.center + local @ self.axes

    def as_text(self) -> str:
        names = ("major", "middle", "minor")
        lines = [f"center: {np.array2string(self.center + 0.0, precision=4)}"]  # + 0.0 turns -0 into 0
        for name, axis, size, spread in zip(names, self.axes, self.size, self.spread):
            lines.append(f"{name} axis {np.array2string(axis + 0.0, precision=4)}: size {size:.4g}, std {spread:.4g}")
        return "\n".join(lines)


def camera_bounds(positions: np.ndarray) -> CameraBounds:
    """PCA box of (N, 3) camera positions. Axis signs are fixed (largest component positive) so equal inputs
    give equal boxes; the third axis completes a right-handed frame."""
    points = np.asarray(positions, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3 or len(points) == 0:
        raise ValueError(f"camera positions must be an (N, 3) array with N >= 1, got shape {points.shape}")
    if not np.isfinite(points).all():
        raise ValueError("camera positions contain NaN or infinity")
    center = points.mean(axis=0)
    offsets = points - center
    variances, vectors = np.linalg.eigh(offsets.T @ offsets / len(points))
    order = np.argsort(variances)[::-1]
    axes = vectors[:, order].T
    for axis in axes[:2]:
        axis *= np.sign(axis[np.argmax(np.abs(axis))])
    axes[2] = np.cross(axes[0], axes[1])
    local = offsets @ axes.T
    return CameraBounds(center, axes, local.min(axis=0), local.max(axis=0),
                        np.sqrt(np.clip(variances[order], 0.0, None)))
