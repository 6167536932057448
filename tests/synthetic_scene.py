"""A textured synthetic room rendered exactly from any camera: ground truth for two-view pose estimation.

Each wall is a textured rectangle; its image under a pinhole camera is a homography of its texture
(cv2.warpPerspective), and its depth at every pixel follows from the same homography, so the walls are
composited with a z-buffer. No learned weights, no randomness beyond the seeded texture.
"""
from __future__ import annotations

import cv2
import numpy as np


def _texture(rng: np.random.Generator, size: int = 512) -> np.ndarray:
    """Blobs, boxes and lines of random colours over smooth noise: plenty of SIFT corners and blobs."""
    noise = rng.random((size // 16, size // 16, 3)).astype(np.float32)
    image = cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC) * 0.5 + 0.25
    for _ in range(220):
        colour = tuple(float(c) for c in rng.random(3))
        x, y = (int(v) for v in rng.integers(0, size, 2))
        r = int(rng.integers(3, 18))
        kind = rng.integers(0, 3)
        if kind == 0:
            cv2.circle(image, (x, y), r, colour, -1)
        elif kind == 1:
            cv2.rectangle(image, (x, y), (x + r, y + int(rng.integers(3, 18))), colour, -1)
        else:
            cv2.line(image, (x, y), (x + int(rng.integers(-30, 30)), y + int(rng.integers(-30, 30))), colour, 2)
    return np.clip(image, 0.0, 1.0)


class Room:
    """Walls around the camera at the origin (OpenCV axes): back wall, floor, ceiling, sides, and a box; `closed`:
    also a wall behind the camera, so that an orbit all the way round sees walls everywhere."""

    def __init__(self, seed: int = 0, closed: bool = False):
        rng = np.random.default_rng(seed)
        # (origin, u edge, v edge) of each rectangle in world coordinates
        self.walls = [
            (np.array([-6.0, -4.0, 6.0]), np.array([12.0, 0, 0]), np.array([0, 8.0, 0])),      # back wall z=6
            (np.array([-6.0, 1.5, -3.0]), np.array([12.0, 0, 0]), np.array([0, 0, 9.0])),      # floor y=1.5
            (np.array([-6.0, -2.5, -3.0]), np.array([12.0, 0, 0]), np.array([0, 0, 9.0])),     # ceiling y=-2.5
            (np.array([-3.5, -4.0, -3.0]), np.array([0, 0, 9.0]), np.array([0, 8.0, 0])),      # left wall x=-3.5
            (np.array([3.5, -4.0, -3.0]), np.array([0, 0, 9.0]), np.array([0, 8.0, 0])),       # right wall x=3.5
            (np.array([-0.6, -0.6, 2.6]), np.array([1.2, 0, 0]), np.array([0, 1.2, 0])),       # box front z=2.6
        ]
        if closed:
            self.walls.append((np.array([-6.0, -4.0, -3.0]), np.array([12.0, 0, 0]), np.array([0, 8.0, 0])))
        self.textures = [_texture(rng) for _ in self.walls]

    def render(self, c2w: np.ndarray, intrinsics: np.ndarray, width: int, height: int) -> np.ndarray:
        """(H, W, 3) float image seen by the camera `c2w` (OpenCV convention)."""
        w2c = np.linalg.inv(c2w)
        image = np.zeros((height, width, 3), np.float32)
        depth = np.full((height, width), np.inf)
        pixels = np.stack([*np.meshgrid(np.arange(width), np.arange(height)), np.ones((height, width))], -1)
        for (origin, u, v), texture in zip(self.walls, self.textures):
            size = texture.shape[0]
            # texture pixel (a, b, 1) -> camera coordinates: [R u / size, R v / size, R o + t]
            to_camera = np.column_stack([w2c[:3, :3] @ u / size, w2c[:3, :3] @ v / size,
                                         w2c[:3, :3] @ origin + w2c[:3, 3]])
            homography = intrinsics @ to_camera
            colour = cv2.warpPerspective(texture, homography, (width, height), flags=cv2.INTER_LINEAR,
                                         borderMode=cv2.BORDER_CONSTANT, borderValue=(-1, -1, -1))
            texel = pixels @ np.linalg.inv(homography).T
            with np.errstate(divide="ignore", invalid="ignore"):  # rays parallel to the wall meet it nowhere
                texel = texel / texel[..., 2:]
                z = texel @ to_camera[2]
            inside = ((texel[..., 0] >= 0) & (texel[..., 0] < size) & (texel[..., 1] >= 0) & (texel[..., 1] < size)
                      & (z > 1e-3) & (colour[..., 0] >= 0))
            nearer = inside & (z < depth)
            image[nearer] = colour[nearer]
            depth[nearer] = z[nearer]
        return image
