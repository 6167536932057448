"""Adaptive trajectory planning for sparse views: which S-Director moves the camera from view A to view B?

The relative pose of B in A's camera frame (OpenCV axes) is compared with every candidate motion. Two views
give the translation only up to scale, so the score uses nothing but angles:

- each pattern is a one-parameter motion (patterns.py). Its amount is fitted to the observation: the
  observed rotation vector projected on the pattern's rotation axis (rotations, orbits);
- rotation error e_R: the angle of R_observed * R_pattern^T;
- translation error e_t: the angle between the observed and the pattern's translation directions. An orbit's
  direction follows from its angle alone (the pivot lies on the optical axis, so the radius cancels). When
  only one side translates (a pure rotation against an orbit or a slide), e_t is 90 degrees;
- score = cos(sqrt(e_R^2 + e_t^2)), and 0 from 90 degrees on: 1 for a motion the pattern reproduces exactly,
  0 for one that is 90 degrees or more away.
Scores within `TIE_DEG` of the best are ties, settled toward the simpler motion (a slide or an in-place turn
over an orbit): for small angles an orbit and a slide look the same from two views.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from . import patterns, planner
from .trajectory import Trajectory

NO_TRANSLATION = 1e-9     # relative translations shorter than this (scene units) count as none
TIE_DEG = 0.5
_SIMPLICITY = {"translate": 0, "rotate": 0, "orbit": 1}


@dataclass(frozen=True)
class RelativeMotion:
    """B's pose in A's camera frame: rotation (3x3) and the unit translation direction, or None for none."""
    rotation: np.ndarray
    direction: np.ndarray | None

    @classmethod
    def from_pose(cls, relative_c2w: np.ndarray, no_translation: float = NO_TRANSLATION) -> "RelativeMotion":
        pose = np.asarray(relative_c2w, dtype=np.float64)
        if pose.shape != (4, 4) or not np.isfinite(pose).all():
            raise ValueError(f"a relative pose must be a finite 4x4 matrix, got shape {pose.shape}")
        rotation = pose[:3, :3]
        if np.abs(rotation @ rotation.T - np.eye(3)).max() > 1e-4 or np.linalg.det(rotation) < 0:
            raise ValueError("the relative pose's upper-left 3x3 block is not a rotation")
        length = np.linalg.norm(pose[:3, 3])
        return cls(rotation, pose[:3, 3] / length if length > no_translation else None)

    @classmethod
    def between(cls, c2w_a: np.ndarray, c2w_b: np.ndarray) -> "RelativeMotion":
        return cls.from_pose(np.linalg.inv(c2w_a) @ c2w_b)

    def two_views(self, fov_deg: float, width: int, height: int, director: str | None = None) -> Trajectory:
        """A at the origin and B at unit distance along the motion's direction (two views give no scale)."""
        pose_b = np.eye(4)
        pose_b[:3, :3] = self.rotation
        pose_b[:3, 3] = 0.0 if self.direction is None else self.direction
        k = planner.pinhole(planner.focal_from_fov(fov_deg, width), width, height)
        return Trajectory(np.stack([np.eye(4), pose_b]), np.stack([k, k]), width, height, pattern="two_views",
                          director=director)


@dataclass(frozen=True)
class DirectorScore:
    pattern: str
    director: str
    score: float
    rotation_error_deg: float
    translation_error_deg: float
    magnitude_deg: float | None   # fitted angle for rotations and orbits; None for slides (scale unknown)

    def path(self, frames: int, fov_deg: float, width: int, height: int) -> Trajectory:
        """The director's camera path over a video's `frames` by the fitted amount: the poses of a video joining
        the two views, for the Gaussian fit."""
        return planner.plan(self.pattern, frames, self.magnitude_deg, fov_deg=fov_deg, width=width, height=height)


def _angle_deg(a: np.ndarray, b: np.ndarray) -> float:
    return math.degrees(math.acos(float(np.clip(np.dot(a, b), -1.0, 1.0))))


def _rotation_error_deg(observed: np.ndarray, predicted: np.ndarray) -> float:
    return math.degrees(Rotation.from_matrix(observed @ predicted.T).magnitude())


def score_pattern(motion: RelativeMotion, pattern: str) -> DirectorScore:
    spec = patterns.get(pattern)
    magnitude = None
    if spec.kind == "translate":
        predicted = np.eye(4)
        predicted_direction = np.asarray(spec.axis, dtype=np.float64)
    else:
        axis = patterns.motion_axis(spec)
        observed_rotvec = Rotation.from_matrix(motion.rotation).as_rotvec(degrees=True)
        # an orbit of 0 degrees has no direction; a thousandth of a degree keeps its limit direction
        magnitude = max(float(observed_rotvec @ axis), 1e-3)
        predicted = patterns.pattern_pose(spec, magnitude, radius=1.0)
        predicted_direction = None
        if spec.kind == "orbit":
            predicted_direction = predicted[:3, 3] / np.linalg.norm(predicted[:3, 3])
    rotation_error = _rotation_error_deg(motion.rotation, predicted[:3, :3])
    if motion.direction is None and predicted_direction is None:
        translation_error = 0.0
    elif motion.direction is None or predicted_direction is None:
        translation_error = 90.0
    else:
        translation_error = _angle_deg(motion.direction, predicted_direction)
    total = math.hypot(rotation_error, translation_error)
    score = math.cos(math.radians(total)) if total < 90.0 else 0.0
    return DirectorScore(pattern, spec.director, score, rotation_error, translation_error, magnitude)


def _candidates(candidates) -> tuple[str, ...]:
    names = patterns.TWO_VIEW_PATTERNS if candidates is None else tuple(candidates)
    if not names:
        raise ValueError("no candidate directors given; name at least one of: "
                         + ", ".join(patterns.TWO_VIEW_PATTERNS))
    for name in names:
        if patterns.get(name).loop:
            raise ValueError(f"{name} is a closed loop, not a motion between two views; leave it out of candidates")
    return names


def choose_director(motion: RelativeMotion, candidates=None) -> tuple[DirectorScore, list[DirectorScore]]:
    """The best-matching director and every candidate's score, best first."""
    if motion.direction is None and Rotation.from_matrix(motion.rotation).magnitude() < 1e-9:
        raise ValueError("the two views have the same pose: there is no camera motion to match a director to")
    scores = [score_pattern(motion, name) for name in _candidates(candidates)]
    scores.sort(key=lambda s: -s.score)
    best_error = math.degrees(math.acos(min(1.0, scores[0].score)))
    tied = [s for s in scores if math.degrees(math.acos(min(1.0, s.score))) <= best_error + TIE_DEG]
    best = min(tied, key=lambda s: (_SIMPLICITY[patterns.get(s.pattern).kind], -s.score))
    scores.sort(key=lambda s: (s is not best, -s.score))
    return best, scores


def parse_candidates(text: str) -> tuple[str, ...] | None:
    """'all' (or empty) for every two-view pattern, 'released' for the published LoRAs, else a comma list."""
    cleaned = text.strip().lower()
    if cleaned in ("", "all"):
        return None
    if cleaned == "released":
        return patterns.RELEASED_DIRECTORS
    names = tuple(part.strip() for part in cleaned.replace(";", ",").split(",") if part.strip())
    for name in names:
        patterns.get(name)
    return names


def score_table(best: DirectorScore, scores: list[DirectorScore]) -> str:
    lines = [f"best director: {best.director} (score {best.score:.3f})",
             f"{'director':<14} {'score':>6} {'rot err':>8} {'dir err':>8} {'angle':>7}"]
    for s in scores:
        angle = "-" if s.magnitude_deg is None else f"{s.magnitude_deg:.1f}"
        lines.append(f"{s.director:<14} {s.score:6.3f} {s.rotation_error_deg:8.2f} {s.translation_error_deg:8.2f} "
                     f"{angle:>7}")
    return "\n".join(lines)


def parse_pose_text(text: str) -> np.ndarray:
    """A 4x4 pose written as 16 numbers (JSON nested lists, or separated by spaces, commas or new lines);
    12 numbers are read as the top 3x4 rows."""
    numbers = text.replace("[", " ").replace("]", " ").replace(",", " ").replace(";", " ").split()
    try:
        values = np.array([float(v) for v in numbers])
    except ValueError:
        raise ValueError(f"a relative pose must be 12 or 16 numbers (a 4x4 or 3x4 matrix), got {text[:80]!r}") from None
    if values.size not in (12, 16):
        raise ValueError(f"a relative pose must be 12 or 16 numbers (a 4x4 or 3x4 matrix), got {values.size}")
    pose = np.eye(4)
    pose[:3] = values[:12].reshape(3, 4)
    if values.size == 16 and not np.allclose(values[12:], [0, 0, 0, 1]):
        raise ValueError(f"the last row of a 4x4 pose must be 0 0 0 1, got {values[12:].tolist()}")
    return pose
