"""The camera path value that flows between nodes (DIMX_TRAJECTORY).

Convention, stated once for the whole pack: poses are camera-to-world 4x4 matrices in the OpenCV camera
convention (x right, y down, z forward); intrinsics are 3x3 pixel matrices for images of `width` x `height`.
Unless a trajectory was imported from elsewhere, the first camera sits at the world origin looking down +z.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Trajectory:
    c2w_opencv: np.ndarray          # (N, 4, 4) float64
    intrinsics: np.ndarray          # (N, 3, 3) float64, pixels
    width: int
    height: int
    pattern: str = "custom"
    pivot: np.ndarray | None = None  # (3,) the point orbits turn around, if any
    director: str | None = None      # name of the released director LoRA that produces this motion
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.c2w_opencv = np.asarray(self.c2w_opencv, dtype=np.float64)
        self.intrinsics = np.asarray(self.intrinsics, dtype=np.float64)
        n = len(self.c2w_opencv)
        if n == 0 or self.c2w_opencv.shape != (n, 4, 4):
            raise ValueError(f"a trajectory needs poses of shape (N, 4, 4) with N >= 1, got {self.c2w_opencv.shape}")
        if self.intrinsics.shape != (n, 3, 3):
            raise ValueError(f"intrinsics must be ({n}, 3, 3) to match {n} poses, got {self.intrinsics.shape}")
        if not (np.isfinite(self.c2w_opencv).all() and np.isfinite(self.intrinsics).all()):
            bad = sorted({int(i) for i in np.nonzero(~np.isfinite(self.c2w_opencv).all(axis=(1, 2))
                                                    | ~np.isfinite(self.intrinsics).all(axis=(1, 2)))[0]})
            raise ValueError(f"trajectory poses or intrinsics contain NaN or infinity (frames {bad[:5]})")
        if not all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) and v > 0
                   and float(v).is_integer() for v in (self.width, self.height)):
            raise ValueError(f"image size must be positive whole numbers of pixels, got {self.width!r}x{self.height!r}")
        self.width, self.height = int(self.width), int(self.height)
        bottom = np.abs(self.c2w_opencv[:, 3] - [0.0, 0.0, 0.0, 1.0]).max(axis=1)
        if (bottom > 1e-9).any():
            index = int(np.argmax(bottom > 1e-9))
            raise ValueError(f"pose {index} has the bottom row {self.c2w_opencv[index, 3].tolist()}, not 0 0 0 1: it "
                             "is not a rigid camera-to-world matrix (a projection or a scaled matrix?)")
        rotations = self.c2w_opencv[:, :3, :3]
        error = np.abs(rotations @ rotations.transpose(0, 2, 1) - np.eye(3)).max()
        if error > 1e-4 or (np.linalg.det(rotations) < 0).any():
            raise ValueError(f"trajectory rotations are not proper rotations (orthogonality error {error:.2g})")
        if self.pivot is not None:
            try:
                pivot = np.asarray(self.pivot, dtype=np.float64)
            except (TypeError, ValueError):
                pivot = np.empty(0)
            if pivot.shape != (3,) or not np.isfinite(pivot).all():
                raise ValueError(f"pivot must be 3 finite numbers (x, y, z), got {self.pivot!r}")
            self.pivot = pivot

    def __len__(self) -> int:
        return len(self.c2w_opencv)

    @property
    def positions(self) -> np.ndarray:
        return self.c2w_opencv[:, :3, 3]

    @property
    def closes_loop(self) -> bool:
        """Whether the path comes back to its start, so its last camera sees what its first one sees: the step from
        the last camera back to the first is no longer (in position and in rotation) than 1.5 of the path's longest
        step, on a path of at least 8 cameras that goes away from its start (turns 90 degrees or more, or moves
        5 steps or more away from it). Read from the poses, whatever made them (orbit_360, a loaded file)."""
        if len(self) < 8:
            return False
        poses = self.c2w_opencv
        step_angles = _angles_deg(poses[:-1, :3, :3], poses[1:, :3, :3])
        step_lengths = np.linalg.norm(np.diff(poses[:, :3, 3], axis=0), axis=1)
        closing_angle = _angles_deg(poses[-1:, :3, :3], poses[:1, :3, :3])[0]
        closing_length = np.linalg.norm(poses[-1, :3, 3] - poses[0, :3, 3])
        longest_angle, longest_step = step_angles.max(), step_lengths.max()
        leaves = (_angles_deg(poses[:1, :3, :3], poses[:, :3, :3]).max() >= 90.0
                  or np.linalg.norm(poses[:, :3, 3] - poses[0, :3, 3], axis=1).max() >= 5 * max(longest_step, 1e-12))
        return bool(leaves and closing_angle <= 1.5 * longest_angle + 1e-6
                    and closing_length <= 1.5 * longest_step + 1e-9)


def _angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angles of the rotations taking each of `a` (N, 3, 3) to the matching one of `b`, in degrees."""
    cosine = (np.trace(np.einsum("nji,njk->nik", a, b), axis1=1, axis2=2) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cosine, -1.0, 1.0)))
