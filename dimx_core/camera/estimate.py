"""Relative pose of two photos with classical correspondences (no learned weights): OpenCV SIFT features, or, on
views too plain for features (a smooth object on a flat background), dense optical flow (Farneback), checked
forward and backward; then the essential matrix.

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
FLOW_GRID_PX = 2          # dense correspondences are read on a grid of this step
FLOW_CONSISTENCY_PX = 0.5  # a flow vector kept must come back to its pixel through the backward flow
FLOW_MIN_TEXTURE = 4.0    # gray-level gradient below which a pixel's flow is a guess (flat background)


@dataclass(frozen=True)
class TwoViewEstimate:
    motion: RelativeMotion
    matches: int
    inliers: int
    rotation_residual_px: float   # median misfit of the pure-rotation model: the parallax left unexplained
    method: str = "features"      # which correspondences were used: "features" (SIFT) or "dense flow"

    def describe(self) -> str:
        kind = "feature matches" if self.method == "features" else "dense-flow correspondences (too few features)"
        return (f"{self.inliers} of {self.matches} {kind} agree; parallax after the best pure rotation: "
                f"{self.rotation_residual_px:.2f} px")


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

    try:
        points_a, points_b, method = *_feature_matches(cv2, gray_a, gray_b, max_features), "features"
    except TooFewFeatures as err:
        if gray_a.shape != gray_b.shape:
            raise ValueError(f"{err}; dense optical flow, tried next, needs two views of one size "
                             f"({size_a[0]}x{size_a[1]} and {size_b[0]}x{size_b[1]} given)") from None
        points_a, points_b, method = *_flow_matches(cv2, gray_a, gray_b), "dense flow"
        if len(points_a) < MIN_MATCHES:
            raise ValueError(f"{err}, and dense optical flow found only {len(points_a)} consistent correspondences "
                             f"(need {MIN_MATCHES}): textureless or blank images?") from None
    rays_a, rays_b = _rays(points_a, focal_a, size_a), _rays(points_b, focal_b, size_b)

    # Essential matrix on normalised image coordinates (identity camera matrix), threshold of ~1 pixel.
    normal_a, normal_b = rays_a[:, :2] / rays_a[:, 2:], rays_b[:, :2] / rays_b[:, 2:]
    essential, mask = cv2.findEssentialMat(normal_a, normal_b, np.eye(3), method=cv2.RANSAC, prob=0.999,
                                           threshold=1.0 / min(focal_a, focal_b))
    if essential is None or essential.shape != (3, 3):
        raise ValueError("no consistent two-view geometry found between the images")
    keep = mask.ravel() > 0
    if keep.sum() < MIN_MATCHES:
        raise ValueError(f"only {int(keep.sum())} {method} correspondences agree on one camera motion "
                         f"(need {MIN_MATCHES})")

    # Best pure rotation taking A's rays onto B's (Kabsch), and how far it leaves the matches, in pixels.
    pure, _ = Rotation.align_vectors(rays_b[keep], rays_a[keep])
    misfit = np.arccos(np.clip(np.sum(pure.apply(rays_a[keep]) * rays_b[keep], axis=1), -1.0, 1.0))
    residual_px = float(np.median(misfit) * focal_b)
    if residual_px <= parallax_px:
        return TwoViewEstimate(RelativeMotion(pure.as_matrix().T, None), len(points_a), int(keep.sum()), residual_px,
                               method)

    # recoverPose gives x_b = R x_a + t; B's camera-to-world pose in A's frame is (R^T, -R^T t).
    _, rotation_ab, translation_ab, _ = cv2.recoverPose(essential, normal_a, normal_b, np.eye(3), mask=mask)
    position = -rotation_ab.T @ translation_ab.ravel()
    motion = RelativeMotion(rotation_ab.T, position / np.linalg.norm(position))
    return TwoViewEstimate(motion, len(points_a), int(keep.sum()), residual_px, method)


class TooFewFeatures(ValueError):
    """Too few SIFT features in a view: dense correspondences are tried next."""


def _feature_matches(cv2, gray_a: np.ndarray, gray_b: np.ndarray, max_features: int
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions (N, 2) in A and B of SIFT matches that pass Lowe's ratio test."""
    sift = cv2.SIFT_create(nfeatures=max_features)
    keys_a, desc_a = sift.detectAndCompute(gray_a, None)
    keys_b, desc_b = sift.detectAndCompute(gray_b, None)
    if desc_a is None or desc_b is None or len(keys_a) < MIN_MATCHES or len(keys_b) < MIN_MATCHES:
        raise TooFewFeatures(f"too few image features to compare the two views ({len(keys_a)} and {len(keys_b)}, "
                             f"need {MIN_MATCHES})")
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(desc_a, desc_b, k=2)
    good = [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.75 * p[1].distance]  # Lowe's ratio test
    if len(good) < MIN_MATCHES:
        raise ValueError(f"only {len(good)} reliable feature matches between the two views (need {MIN_MATCHES}); "
                         f"do they show the same scene with enough overlap?")
    return (np.float64([keys_a[m.queryIdx].pt for m in good]), np.float64([keys_b[m.trainIdx].pt for m in good]))


def _flow_matches(cv2, gray_a: np.ndarray, gray_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pixel positions (N, 2) in A and B from Farneback's dense optical flow, on a grid, kept where A has texture
    and the backward flow returns each point to where it started."""
    def flow(source, target):
        return cv2.calcOpticalFlowFarneback(source, target, None, pyr_scale=0.5, levels=4, winsize=9, iterations=5,
                                            poly_n=5, poly_sigma=1.1, flags=0)

    forward, backward = flow(gray_a, gray_b), flow(gray_b, gray_a)
    height, width = gray_a.shape
    grid = np.stack(np.mgrid[0:height:FLOW_GRID_PX, 0:width:FLOW_GRID_PX][::-1], axis=-1).astype(np.float32)
    ends = grid + forward[::FLOW_GRID_PX, ::FLOW_GRID_PX]   # (rows, cols, 2) x, y in B
    back = cv2.remap(backward, ends[..., 0], ends[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    inside = (ends[..., 0] >= 0) & (ends[..., 0] <= width - 1) & (ends[..., 1] >= 0) & (ends[..., 1] <= height - 1)
    returns = np.linalg.norm(ends + back - grid, axis=-1) < FLOW_CONSISTENCY_PX
    gradient = np.hypot(cv2.Sobel(gray_a, cv2.CV_64F, 1, 0), cv2.Sobel(gray_a, cv2.CV_64F, 0, 1))
    keep = inside & returns & (gradient[::FLOW_GRID_PX, ::FLOW_GRID_PX] > FLOW_MIN_TEXTURE)
    return grid[keep].astype(np.float64), ends[keep].astype(np.float64)
