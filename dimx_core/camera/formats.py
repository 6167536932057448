"""Camera files other tools read: nerfstudio `transforms.json` and COLMAP models (text, and binary to write).

transforms.json (nerfstudio, gsplat's trainer, Postshot) stores camera-to-world matrices in the OpenGL camera
convention (x right, y up, z back); COLMAP stores world-to-camera rotations (as quaternions) and translations
in the OpenCV convention. The world frame is kept as it is in both directions.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from ..files import atomic_path, atomic_paths, is_inside
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


def _number(value, what: str, *, whole: bool = False, positive: bool = False) -> float:
    """A number read from a camera file, or an error that names the field and says what was expected."""
    expected = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{what} must be {expected}, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"{what} must be {expected}, got {value!r}") from None
    if not np.isfinite(number) or (whole and not number.is_integer()) or (positive and number <= 0):
        raise ValueError(f"{what} must be {'a positive ' if positive else 'a finite '}{expected[2:]}, got {value!r}")
    return number


def _transform_matrix(frame: dict, where: str) -> np.ndarray:
    matrix = frame.get("transform_matrix")
    try:
        matrix = np.array(matrix, dtype=np.float64)
    except (TypeError, ValueError):
        matrix = None
    if matrix is None or matrix.shape != (4, 4):
        raise ValueError(f"{where} transform_matrix must be a 4x4 matrix of numbers (camera-to-world, OpenGL axes), "
                         f"got {frame.get('transform_matrix')!r:.80}")
    return opengl_to_opencv(matrix)


def read_transforms_json(path: str | Path) -> tuple[Trajectory, list[str]]:
    """The trajectory and each frame's file_path, in file order. Every missing or malformed field is named."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"'{path}' is not a readable transforms.json ({type(err).__name__}: {err})") from err
    frames = document.get("frames") if isinstance(document, dict) else None
    if not isinstance(frames, list) or not frames or not all(isinstance(f, dict) for f in frames):
        raise ValueError(f"'{path}' is not a transforms.json with cameras: it needs a non-empty list 'frames' of "
                         f"objects, got {type(frames).__name__ if frames is not None else 'none'}"
                         f"{' (empty)' if frames == [] else ''}")
    if document.get("camera_model", "OPENCV") not in ("OPENCV", "PINHOLE", "SIMPLE_PINHOLE"):
        raise ValueError(f"'{path}' uses camera model {document['camera_model']}; only pinhole cameras are supported")
    size = {}
    for key, words in (("w", "width"), ("h", "height")):
        value = document.get(key, frames[0].get(key))
        if value is None:
            raise ValueError(f"'{path}' gives no image {words}: add '{key}' (pixels) at the top level")
        size[key] = int(_number(value, f"'{path}': '{key}' (image {words} in pixels)", whole=True, positive=True))
    poses, intrinsics, names = [], [], []
    for index, frame in enumerate(frames):
        where = f"'{path}': frame {index}"
        poses.append(_transform_matrix(frame, where))
        fx = frame.get("fl_x", document.get("fl_x"))
        if fx is None:
            raise ValueError(f"{where} has no focal length: give 'fl_x' (pixels), in the frame or at the top level")
        fx = _number(fx, f"{where} 'fl_x' (focal length in pixels)", positive=True)
        fy = _number(frame.get("fl_y", document.get("fl_y", fx)), f"{where} 'fl_y'", positive=True)
        cx = _number(frame.get("cx", document.get("cx", size["w"] / 2)), f"{where} 'cx'")
        cy = _number(frame.get("cy", document.get("cy", size["h"] / 2)), f"{where} 'cy'")
        intrinsics.append([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        names.append(str(frame.get("file_path", frame_name(index))))
    extra = document.get("dimensionx") or {}
    try:
        trajectory = Trajectory(np.stack(poses), np.asarray(intrinsics, dtype=np.float64), size["w"], size["h"],
                                pattern=str(extra.get("pattern", "imported")), pivot=extra.get("pivot"),
                                director=extra.get("director"), meta=dict(extra.get("meta") or {}))
    except ValueError as err:
        raise ValueError(f"'{path}': {err}") from err
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


def _colmap_records(trajectory: Trajectory, names: list[str] | None):
    """COLMAP's cameras {(fx, fy, cx, cy): camera id} (PINHOLE, one per distinct intrinsics) and images
    [(image id, world-to-camera quaternion wxyz, translation, camera id, name)]."""
    names = names or [frame_name(i) for i in range(len(trajectory))]
    camera_ids: dict[tuple, int] = {}
    images = []
    for index, (c2w, k, name) in enumerate(zip(trajectory.c2w_opencv, trajectory.intrinsics, names), start=1):
        key = tuple(float(v) for v in (k[0, 0], k[1, 1], k[0, 2], k[1, 2]))
        w2c = np.linalg.inv(c2w)
        images.append((index, _rotation_to_quaternion_wxyz(w2c[:3, :3]), w2c[:3, 3],
                       camera_ids.setdefault(key, len(camera_ids) + 1), name))
    return camera_ids, images


def _write_colmap_set(folder: Path, files: dict[str, bytes]) -> Path:
    """The three files as one set: if any cannot be written (a full disk), none replaces what was there."""
    with atomic_paths([folder / name for name in files]) as parts:
        for part, content in zip(parts, files.values()):
            part.write_bytes(content)
    return folder


def write_colmap_text(folder: str | Path, trajectory: Trajectory, names: list[str] | None = None) -> Path:
    """cameras.txt, images.txt and an empty points3D.txt, as one set."""
    camera_ids, images = _colmap_records(trajectory, names)
    image_lines = ["# IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME", "# POINTS2D[] as (X, Y, POINT3D_ID)"]
    for index, q, t, camera_id, name in images:
        image_lines += [f"{index} {' '.join(repr(float(v)) for v in (*q, *t))} {camera_id} {name}", ""]
    camera_lines = ["# CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]"]
    camera_lines += [f"{cid} PINHOLE {trajectory.width} {trajectory.height} {' '.join(repr(v) for v in key)}"
                     for key, cid in camera_ids.items()]
    files = {"cameras.txt": camera_lines, "images.txt": image_lines,
             "points3D.txt": ["# 3D point list (empty: poses only)"]}
    return _write_colmap_set(Path(folder), {name: ("\n".join(lines) + "\n").encode() for name, lines in files.items()})


COLMAP_PINHOLE = 1  # COLMAP's model id of PINHOLE (fx, fy, cx, cy)


def write_colmap_binary(folder: str | Path, trajectory: Trajectory, names: list[str] | None = None) -> Path:
    """cameras.bin, images.bin and an empty points3D.bin (COLMAP's little-endian binary model), as one set: the
    form tools that read only binary models take (gsplat's examples read text models through a Python 2 parser)."""
    camera_ids, images = _colmap_records(trajectory, names)
    cameras = struct.pack("<Q", len(camera_ids)) + b"".join(
        struct.pack("<iiQQ4d", cid, COLMAP_PINHOLE, trajectory.width, trajectory.height, *key)
        for key, cid in camera_ids.items())
    records = b"".join(struct.pack("<i7di", index, *q, *t, camera_id) + name.encode() + b"\0" + struct.pack("<Q", 0)
                       for index, q, t, camera_id, name in images)  # each image without 2D points
    files = {"cameras.bin": cameras, "images.bin": struct.pack("<Q", len(images)) + records,
             "points3D.bin": struct.pack("<Q", 0)}
    return _write_colmap_set(Path(folder), files)


def _is_points_line(fields: list[str]) -> bool:
    """COLMAP's second line per image: (X, Y, POINT3D_ID) triples, or nothing. An image line never is one: it has
    ten fields or more and ends with a name."""
    if len(fields) % 3:
        return False
    try:
        [float(field) for field in fields]
    except ValueError:
        return False
    return True


def _colmap_cameras(path: Path) -> dict[str, tuple[int, int, np.ndarray]]:
    cameras = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split()
        if len(fields) < 5:
            raise ValueError(f"{path.name} line {number} is not 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS...'")
        cid, model, width, height, *params = fields
        if model not in ("PINHOLE", "SIMPLE_PINHOLE"):
            raise ValueError(f"camera {cid} uses model {model}; only PINHOLE/SIMPLE_PINHOLE are supported")
        if len(params) != (4 if model == "PINHOLE" else 3):
            raise ValueError(f"{path.name} line {number}: a {model} camera has {4 if model == 'PINHOLE' else 3} "
                             f"parameters, got {len(params)}")
        fx, fy, cx, cy = (map(float, params) if model == "PINHOLE"
                          else (float(params[0]), float(params[0]), float(params[1]), float(params[2])))
        cameras[cid] = (int(width), int(height), np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1.0]]))
    return cameras


def _colmap_images(path: Path, cameras: dict) -> list[tuple[str, np.ndarray, tuple]]:
    """Every image line, told from POINTS2D lines by its content (files written without the POINTS2D lines
    exist, and reading every other line would drop half their cameras)."""
    images, seen = [], set()
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.startswith("#") or _is_points_line(line.split()):
            continue
        fields = line.split(maxsplit=9)
        if len(fields) != 10:
            raise ValueError(f"{path.name} line {number} is neither an image line 'IMAGE_ID QW QX QY QZ TX TY TZ "
                             "CAMERA_ID NAME' nor a POINTS2D line")
        image_id, qw, qx, qy, qz, tx, ty, tz, cid, name = fields
        try:
            rotation = quaternion_wxyz_to_rotation(np.array([qw, qx, qy, qz], dtype=np.float64))
            translation = np.array([tx, ty, tz], dtype=np.float64)
        except ValueError as err:
            raise ValueError(f"{path.name} line {number}: the pose of image {image_id} is not numbers "
                             f"({err})") from None
        if image_id in seen:
            raise ValueError(f"{path.name} line {number}: image id {image_id} appears twice")
        if cid not in cameras:
            raise ValueError(f"{path.name} line {number}: image {image_id} uses camera {cid}, which cameras.txt "
                             f"does not define (it has {', '.join(cameras) or 'none'})")
        seen.add(image_id)
        w2c = np.eye(4)
        w2c[:3, :3], w2c[:3, 3] = rotation, translation
        images.append((name, np.linalg.inv(w2c), cameras[cid]))
    return images


def read_colmap_text(folder: str | Path) -> tuple[Trajectory, list[str]]:
    """Cameras ordered by image name, as COLMAP itself does not keep the capture order."""
    folder = Path(folder)
    try:
        images = _colmap_images(folder / "images.txt", _colmap_cameras(folder / "cameras.txt"))
    except (OSError, ValueError) as err:
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
    COLMAP cameras.txt + images.txt. Hidden folders are skipped; the walk stops `max_depth` folders down; links
    that lead outside `root` are left out."""
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
    return sorted(name for name in found if is_inside(root, name))
