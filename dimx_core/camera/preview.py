"""The JSON a frontend draws a planned path from (GET /dimensionx/trajectory answers with it).

{"pattern": str, "director": str | null, "width": int, "height": int,
 "c2w_opencv": [[4x4], ...] per frame, "intrinsics": [[3x3], ...] per frame, "pivot": [x, y, z] | null}
Poses are camera-to-world in the pack's convention (OpenCV camera axes: x right, y down, z forward; the first
camera at the origin); intrinsics are in pixels for width x height images.
"""
from __future__ import annotations

from .trajectory import Trajectory


def preview_document(trajectory: Trajectory) -> dict:
    return {"pattern": trajectory.pattern, "director": trajectory.director,
            "width": int(trajectory.width), "height": int(trajectory.height),
            "c2w_opencv": trajectory.c2w_opencv.tolist(), "intrinsics": trajectory.intrinsics.tolist(),
            "pivot": None if trajectory.pivot is None else trajectory.pivot.tolist()}
