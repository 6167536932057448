"""Camera files other tools read: nerfstudio `transforms.json` and COLMAP text.

transforms.json (nerfstudio, gsplat's trainer, Postshot) stores camera-to-world matrices in the OpenGL camera
convention (x right, y up, z back); COLMAP stores world-to-camera rotations (as quaternions) and translations
in the OpenCV convention. The world frame is kept as it is in both directions.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..files import atomic_path
from .conventions import opencv_to_opengl, opengl_to_opencv
from .trajectory import Trajectory


def frame_name(index: int) -> str:
    return f"frame_{index:05d}.png"


def write_transforms_json(path: str | Path, trajectory: Trajectory, file_paths: list[str] | None = None) -> Path:
    names = file_paths or [f"images/{frame_name(i)}" for i in range(len(trajectory))]
    if len(names) != len(trajectory):
        raise ValueError(f"{len(names)} file paths given for {len(trajectory)} cameras")
    first = trajectory.intrinsics[0]
    frames = []
    for name, c2w, k in zip(names, trajectory.c2w_opencv, trajectory.intrinsics):
        frames.append({"file_path": name, "transform_matrix": opencv_to_opengl(c2w).tolist(),
                       "fl_x": k[0, 0], "fl_y": k[1, 1], "cx": k[0, 2], "cy": k[1, 2]})
    document = {
        "camera_model": "OPENCV", "w": trajectory.width, "h": trajectory.height,
        "fl_x": first[0, 0], "fl_y": first[1, 1], "cx": first[0, 2], "cy": first[1, 2],
        "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
        "frames": frames,
        "dimensionx": {"pattern": trajectory.pattern, "director": trajectory.director,
                       "pivot": None if trajectory.pivot is None else trajectory.pivot.tolist(),
                       "meta": trajectory.meta},
    }
    with atomic_path(path) as part:
        part.write_text(json.dumps(document, indent=1))
    return Path(path)


def read_transforms_json(path: str | Path) -> tuple[Trajectory, list[str]]:
    """The trajectory and each frame's file_path, in file order."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        frames = document["frames"]
        width, height = int(document.get("w") or frames[0]["w"]), int(document.get("h") or frames[0]["h"])
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError) as err:
        raise ValueError(f"'{path}' is not a readable transforms.json ({type(err).__name__}: {err})") from err
    if document.get("camera_model", "OPENCV") not in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE"):
        raise ValueError(f"'{path}' uses camera model {document['camera_model']}; only pinhole cameras are supported")
    poses, intrinsics, names = [], [], []
    for index, frame in enumerate(frames):
        try:
            poses.append(opengl_to_opencv(frame["transform_matrix"]))
            fx = frame.get("fl_x", document.get("fl_x"))
            fy = frame.get("fl_y", document.get("fl_y", fx))
            cx = frame.get("cx", document.get("cx", width / 2))
            cy = frame.get("cy", document.get("cy", height / 2))
            intrinsics.append([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
            names.append(frame.get("file_path", frame_name(index)))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"'{path}': frame {index} has no usable transform_matrix or focal length") from err
    extra = document.get("dimensionx", {})
    trajectory = Trajectory(np.stack(poses), np.asarray(intrinsics, dtype=np.float64), width, height,
                            pattern=extra.get("pattern", "imported"), pivot=extra.get("pivot"),
                            director=extra.get("director"), meta=extra.get("meta", {}))
    return trajectory, names


def _rotation_to_quaternion_wxyz(rotation: np.ndarray) -> np.ndarray:
    """Shepperd's method: stable for every rotation."""
    m = rotation
    trace = np.trace(m)
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    else:
        i = int(np.argmax(np.diag(m)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = 2.0 * np.sqrt(1.0 + m[i, i] - m[j, j] - m[k, k])
        q = np.empty(4)
        q[0] = (m[k, j] - m[j, k]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (m[j, i] + m[i, j]) / s
        q[1 + k] = (m[k, i] + m[i, k]) / s
    q = np.asarray(q, dtype=np.float64)
    return q if q[0] >= 0 else -q


def quaternion_wxyz_to_rotation(q: np.ndarray) -> np.ndarray:
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def write_colmap_text(folder: str | Path, trajectory: Trajectory, names: list[str] | None = None) -> Path:
    """cameras.txt (PINHOLE, one per distinct intrinsics), images.txt, and an empty points3D.txt."""
    folder = Path(folder)
    names = names or [frame_name(i) for i in range(len(trajectory))]
    camera_ids: dict[tuple, int] = {}
    image_lines = ["# IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME", "# POINTS2D[] as (X, Y, POINT3D_ID)"]
    for index, (c2w, k, name) in enumerate(zip(trajectory.c2w_opencv, trajectory.intrinsics, names), start=1):
        key = (k[0, 0], k[1, 1], k[0, 2], k[1, 2])
        camera_id = camera_ids.setdefault(key, len(camera_ids) + 1)
        w2c = np.linalg.inv(c2w)
        q = _rotation_to_quaternion_wxyz(w2c[:3, :3])
        t = w2c[:3, 3]
        image_lines += [f"{index} {' '.join(repr(float(v)) for v in (*q, *t))} {camera_id} {name}", ""]
    camera_lines = ["# CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]"]
    camera_lines += [f"{cid} PINHOLE {trajectory.width} {trajectory.height} {' '.join(repr(float(v)) for v in key)}"
                     for key, cid in camera_ids.items()]
    for filename, lines in (("cameras.txt", camera_lines), ("images.txt", image_lines),
                            ("points3D.txt", ["# 3D point list (empty: poses only)"])):
        with atomic_path(folder / filename) as part:
            part.write_text("\n".join(lines) + "\n")
    return folder


def read_colmap_text(folder: str | Path) -> tuple[Trajectory, list[str]]:
    """Cameras ordered by image name, as COLMAP itself does not keep the capture order."""
    folder = Path(folder)
    try:
        cameras = {}
        for line in (folder / "cameras.txt").read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                cid, model, width, height, *params = line.split()
                if model not in ("PINHOLE", "SIMPLE_PINHOLE"):
                    raise ValueError(f"camera {cid} uses model {model}; only PINHOLE/SIMPLE_PINHOLE are supported")
                fx, fy, cx, cy = (map(float, params) if model == "PINHOLE"
                                  else (float(params[0]), float(params[0]), float(params[1]), float(params[2])))
                cameras[cid] = (int(width), int(height), np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]))
        images = []
        lines = [line for line in (folder / "images.txt").read_text().splitlines() if not line.startswith("#")]
        for line in lines[::2]:
            if not line.strip():
                continue
            _, qw, qx, qy, qz, tx, ty, tz, cid, name = line.split(maxsplit=9)
            w2c = np.eye(4)
            w2c[:3, :3] = quaternion_wxyz_to_rotation(np.array([qw, qx, qy, qz], dtype=np.float64))
            w2c[:3, 3] = [float(tx), float(ty), float(tz)]
            images.append((name, np.linalg.inv(w2c), cameras[cid]))
    except (OSError, KeyError, ValueError) as err:
        raise ValueError(f"'{folder}' does not hold readable COLMAP text files ({err})") from err
    if not images:
        raise ValueError(f"'{folder}/images.txt' lists no images")
    images.sort(key=lambda item: item[0])
    sizes = {(w, h) for _, _, (w, h, _) in images}
    if len(sizes) != 1:
        raise ValueError(f"'{folder}' mixes image sizes {sorted(sizes)}; one trajectory has one image size")
    (width, height), = sizes
    trajectory = Trajectory(np.stack([c2w for _, c2w, _ in images]), np.stack([k for _, _, (_, _, k) in images]),
                            width, height, pattern="imported")
    return trajectory, [name for name, _, _ in images]


def read_camera_file(path: str | Path) -> tuple[Trajectory, list[str]]:
    """A transforms.json file or a COLMAP text folder, whichever `path` is."""
    path = Path(path)
    return read_colmap_text(path) if path.is_dir() else read_transforms_json(path)


def find_camera_files(root: str | Path, max_depth: int = 4) -> list[str]:
    """Camera files under `root`, relative and '/'-separated: *transforms*.json files and folders holding
    COLMAP cameras.txt + images.txt. Hidden folders are skipped; the walk stops `max_depth` folders down."""
    root = Path(root)
    found = []
    for folder, subfolders, files in os.walk(root):
        relative = Path(folder).relative_to(root)
        depth = len(relative.parts)
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(".")) if depth < max_depth else []
        if {"cameras.txt", "images.txt"} <= set(files) and depth > 0:
            found.append(relative.as_posix())
        found += [(relative / name).as_posix() for name in files
                  if name.endswith(".json") and "transforms" in name and not name.startswith(".")]
    return sorted(found)
