"""Camera conventions other tools use, converted to and from the pack's OpenCV camera-to-world poses.

- OpenGL / nerfstudio / Blender cameras: x right, y up, z back (the camera looks down -z). Same world frame.
- ComfyUI's LOAD3D_CAMERA (the Load 3D / Preview 3D nodes, three.js): a dict with `position` and `target`
  ({x, y, z}), `zoom`, `cameraType`, and in newer ComfyUI `quaternion` ({x, y, z, w}: the camera's world
  rotation), `fov` (vertical, degrees) and `aspect`. Its world is three.js's: y up, and the camera looks down
  -z. The pack's world (y down, z forward from the first camera) maps to it by flipping y and z, so the first
  camera of a plan sits at the three.js origin looking down -z with y up, as a three.js camera does by default.
"""
from __future__ import annotations

import math

import numpy as np
from scipy.spatial.transform import Rotation

from .planner import pinhole
from .trajectory import Trajectory

OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0, 1.0])  # flips the camera's y and z axes; its own inverse
_FLIP_YZ = np.diag([1.0, -1.0, -1.0])


def opencv_to_opengl(c2w_opencv: np.ndarray) -> np.ndarray:
    """Camera-to-world pose(s) (..., 4, 4) with the camera's axes changed from OpenCV to OpenGL."""
    return np.asarray(c2w_opencv, dtype=np.float64) @ OPENCV_TO_OPENGL


def opengl_to_opencv(c2w_opengl: np.ndarray) -> np.ndarray:
    return np.asarray(c2w_opengl, dtype=np.float64) @ OPENCV_TO_OPENGL


def _xyz(name: str, value) -> np.ndarray:
    try:
        vector = np.array([float(value["x"]), float(value["y"]), float(value["z"])])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"LOAD3D_CAMERA {name} must be a dict with numbers x, y, z, got {value!r}") from None
    if not np.isfinite(vector).all():
        raise ValueError(f"LOAD3D_CAMERA {name} contains NaN or infinity: {value!r}")
    return vector


def to_load3d_camera(trajectory: Trajectory, index: int = 0) -> dict:
    """One frame as ComfyUI's LOAD3D_CAMERA, looking at the pivot (or 1 unit ahead when there is none)."""
    if not -len(trajectory) <= index < len(trajectory):
        raise ValueError(f"frame index {index} is outside the trajectory's {len(trajectory)} frames")
    c2w = trajectory.c2w_opencv[index]
    position = _FLIP_YZ @ c2w[:3, 3]
    rotation = _FLIP_YZ @ c2w[:3, :3] @ _FLIP_YZ  # three.js world, OpenGL camera axes
    forward = -rotation[:, 2]
    distance = 1.0 if trajectory.pivot is None else float(np.linalg.norm(trajectory.pivot - c2w[:3, 3])) or 1.0
    target = position + distance * forward
    x, y, z, w = Rotation.from_matrix(rotation).as_quat()
    fy = trajectory.intrinsics[index, 1, 1]
    return {"position": dict(zip("xyz", map(float, position))), "target": dict(zip("xyz", map(float, target))),
            "zoom": 1, "cameraType": "perspective",
            "quaternion": {"x": float(x), "y": float(y), "z": float(z), "w": float(w)},
            "fov": math.degrees(2.0 * math.atan(trajectory.height / (2.0 * fy))),
            "aspect": trajectory.width / trajectory.height}


def _look_at_rotation(position: np.ndarray, target: np.ndarray) -> np.ndarray:
    """three.js Object3D.lookAt for a camera with up = +y: OpenGL axes, world y up."""
    back = position - target
    if np.linalg.norm(back) < 1e-12:
        raise ValueError("LOAD3D_CAMERA position and target coincide; the view direction is undefined")
    back /= np.linalg.norm(back)
    right = np.cross([0.0, 1.0, 0.0], back)
    if np.linalg.norm(right) < 1e-9:
        raise ValueError("LOAD3D_CAMERA looks straight up or down and has no quaternion; its roll is undefined")
    right /= np.linalg.norm(right)
    return np.stack([right, np.cross(back, right), back], axis=1)


def load3d_target(camera: dict) -> np.ndarray:
    """The point a LOAD3D_CAMERA's orbit controls turn around, in the pack's world."""
    return _FLIP_YZ @ _xyz("target", camera.get("target"))


def two_views_from_load3d(camera_a: dict, camera_b: dict, width: int, height: int,
                          default_fov_deg: float = 60.0) -> Trajectory:
    """Two LOAD3D_CAMERAs as a two-view trajectory: A's camera becomes the origin, as in every plan, and the
    orbit target of A becomes the pivot."""
    (pose_a, k_a), (pose_b, k_b) = (from_load3d_camera(c, width, height, default_fov_deg) for c in (camera_a, camera_b))
    to_a = np.linalg.inv(pose_a)
    pivot = (to_a @ np.append(load3d_target(camera_a), 1.0))[:3]
    return Trajectory(np.stack([np.eye(4), to_a @ pose_b]), np.stack([k_a, k_b]), width, height,
                      pattern="two_views", pivot=pivot)


def from_load3d_camera(camera: dict, width: int, height: int, default_fov_deg: float = 60.0) -> tuple[np.ndarray,
                                                                                                        np.ndarray]:
    """(c2w_opencv 4x4 in the pack's world, 3x3 intrinsics for width x height) of a LOAD3D_CAMERA.

    Older ComfyUI sends no quaternion: the orientation then comes from position -> target with y up (what its
    orbit controls do) and no fov: `default_fov_deg` (vertical) is used."""
    if not isinstance(camera, dict):
        raise ValueError(f"expected a LOAD3D_CAMERA dict, got {type(camera).__name__}")
    if camera.get("cameraType", "perspective") != "perspective":
        raise ValueError(f"LOAD3D_CAMERA is {camera.get('cameraType')!r}; only perspective cameras have a pinhole "
                         f"model (switch the Load 3D camera to perspective)")
    position = _xyz("position", camera.get("position"))
    if camera.get("quaternion") is not None:
        q = camera["quaternion"]
        try:
            rotation = Rotation.from_quat([float(q["x"]), float(q["y"]), float(q["z"]), float(q["w"])]).as_matrix()
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"LOAD3D_CAMERA quaternion must be a unit quaternion {{x, y, z, w}}, got {q!r}") from err
    else:
        rotation = _look_at_rotation(position, _xyz("target", camera.get("target")))
    zoom = float(camera.get("zoom") or 1.0)
    fov = float(camera.get("fov") or default_fov_deg)
    if not (0.0 < fov < 180.0 and zoom > 0.0):
        raise ValueError(f"LOAD3D_CAMERA fov must be in (0, 180) degrees and zoom positive, got {fov}, {zoom}")
    focal = height / (2.0 * math.tan(math.radians(fov) / 2.0)) * zoom  # three.js zoom narrows the view
    c2w = np.eye(4)
    c2w[:3, :3] = _FLIP_YZ @ rotation @ _FLIP_YZ
    c2w[:3, 3] = _FLIP_YZ @ position
    return c2w, pinhole(focal, width, height)
