"""Relative pose of two photos with classical features (OpenCV SIFT + essential matrix; no learned weights).

The translation of two views is known only in direction. A pure rotation (a pan, tilt or roll on a tripod)
leaves the essential matrix undefined, so the two models are compared: the best pure rotation (Kabsch on the
matched viewing rays) and the essential-matrix pose. When the pure rotation explains the matches to within
`parallax_px` pixels there is no measurable parallax and the motion is reported as a rotation only.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation

from ..optional import require
from .director_choice import RelativeMotion
from .planner import focal_from_fov

MIN_MATCHES = 20


@dataclass(frozen=True)
class TwoViewEstimate:
    motion: RelativeMotion
    matches: int
    inliers: int
    rotation_residual_px: float   # median misfit of the pure-rotation model: the parallax left unexplained


def _gray_uint8(image: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(image)
    array = array / 255.0 if array.dtype == np.uint8 else array.astype(np.float64)
    if array.ndim == 3 and array.shape[2] in (3, 4):
        array = array[..., :3].mean(axis=2)
    if array.ndim != 2 or min(array.shape) < 16:
        raise ValueError(f"{name} must be an (H, W) or (H, W, 3) image of at least 16x16 pixels, got {array.shape}")
    return (np.clip(array, 0.0, 1.0) * 255.0).round().astype(np.uint8)


def _rays(points: np.ndarray, focal: float, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    rays = np.column_stack([(points[:, 0] - width / 2.0) / focal, (points[:, 1] - height / 2.0) / focal,
                            np.ones(len(points))])
    return rays / np.linalg.norm(rays, axis=1, keepdims=True)


def estimate_relative_motion(image_a: np.ndarray, image_b: np.ndarray, fov_deg: float = 60.0,
                             parallax_px: float = 2.0, max_features: int = 4000) -> TwoViewEstimate:
    """B's motion relative to A. Images are (H, W[, 3]) arrays, float 0..1 or uint8; fov is horizontal."""
    cv2 = require("cv2", "estimating the relative pose of two images")
    gray_a, gray_b = _gray_uint8(image_a, "image_a"), _gray_uint8(image_b, "image_b")
    size_a, size_b = gray_a.shape[::-1], gray_b.shape[::-1]
    focal_a, focal_b = focal_from_fov(fov_deg, size_a[0]), focal_from_fov(fov_deg, size_b[0])

    sift = cv2.SIFT_create(nfeatures=max_features)
    keys_a, desc_a = sift.detectAndCompute(gray_a, None)
    keys_b, desc_b = sift.detectAndCompute(gray_b, None)
    if desc_a is None or desc_b is None or len(keys_a) < MIN_MATCHES or len(keys_b) < MIN_MATCHES:
        raise ValueError("too few image features to compare the two views (textureless or blank images?)")
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc_a, desc_b, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]  # Lowe's ratio test
    if len(good) < MIN_MATCHES:
        raise ValueError(f"only {len(good)} reliable feature matches between the two views (need {MIN_MATCHES}); "
                         f"do they show the same scene with enough overlap?")
    points_a = np.float64([keys_a[m.queryIdx].pt for m in good])
    points_b = np.float64([keys_b[m.trainIdx].pt for m in good])
    rays_a, rays_b = _rays(points_a, focal_a, size_a), _rays(points_b, focal_b, size_b)

    # Essential matrix on normalised image coordinates (identity camera matrix), threshold of ~1 pixel.
    normal_a, normal_b = rays_a[:, :2] / rays_a[:, 2:], rays_b[:, :2] / rays_b[:, 2:]
    essential, mask = cv2.findEssentialMat(normal_a, normal_b, np.eye(3), method=cv2.RANSAC, prob=0.999,
                                           threshold=1.0 / min(focal_a, focal_b))
    if essential is None or essential.shape != (3, 3):
        raise ValueError("no consistent two-view geometry found between the images")
    keep = mask.ravel() > 0
    if keep.sum() < MIN_MATCHES:
        raise ValueError(f"only {int(keep.sum())} matches agree on one camera motion (need {MIN_MATCHES})")

    # Best pure rotation taking A's rays onto B's (Kabsch), and how far it leaves the matches, in pixels.
    pure, _ = Rotation.align_vectors(rays_b[keep], rays_a[keep])
    misfit = np.arccos(np.clip(np.sum(pure.apply(rays_a[keep]) * rays_b[keep], axis=1), -1.0, 1.0))
    residual_px = float(np.median(misfit) * focal_b)
    if residual_px <= parallax_px:
        return TwoViewEstimate(RelativeMotion(pure.as_matrix().T, None), len(good), int(keep.sum()), residual_px)

    # recoverPose gives x_b = R x_a + t; B's camera-to-world pose in A's frame is (R^T, -R^T t).
    _, rotation_ab, translation_ab, _ = cv2.recoverPose(essential, normal_a, normal_b, np.eye(3), mask=mask)
    position = -rotation_ab.T @ translation_ab.ravel()
    motion = RelativeMotion(rotation_ab.T, position / np.linalg.norm(position))
    return TwoViewEstimate(motion, len(good), int(keep.sum()), residual_px)
