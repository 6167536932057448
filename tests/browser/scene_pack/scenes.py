"""Splat scenes with known content for the viewer tests, written as 3DGS PLY files (numpy only).

World axes follow the DimensionX pipeline (OpenCV: x right, y down, z forward), so the viewer's default camera
(looking along +z from the scene's front) sees the red cluster on the left and the blue one on the right.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SH_C0 = 0.28209479177387814
RED, BLUE = (1.0, 0.0, 0.0), (0.0, 0.2, 1.0)
LEFT, RIGHT = (-1.0, 0.0, 4.0), (1.0, 0.0, 4.0)
CLUSTER_SIGMA = 0.12
SPLAT_SCALE = 0.06
# A deliberately unusual property order with extra properties, so the reader must follow the header.
PROPERTIES = ["rot_0", "rot_1", "rot_2", "rot_3", "confidence", "x", "y", "z", "nx", "ny", "nz", "opacity",
              "scale_0", "scale_1", "scale_2", "f_dc_0", "f_dc_1", "f_dc_2", *[f"f_rest_{i}" for i in range(9)]]


def cluster(center, colour, count: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """`count` small, nearly opaque splats of one colour around `center`."""
    xyz = np.asarray(center) + rng.normal(0.0, CLUSTER_SIGMA, size=(count, 3))
    quat = rng.normal(size=(count, 4))  # unnormalised on purpose: readers must normalise
    columns = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2], "rot_0": quat[:, 0], "rot_1": quat[:, 1],
               "rot_2": quat[:, 2], "rot_3": quat[:, 3], "opacity": np.full(count, 3.0),
               "confidence": np.ones(count), "nx": np.zeros(count), "ny": np.zeros(count), "nz": np.zeros(count)}
    for axis in range(3):
        columns[f"scale_{axis}"] = np.full(count, np.log(SPLAT_SCALE))
        columns[f"f_dc_{axis}"] = np.full(count, (colour[axis] - 0.5) / SH_C0)
    for i in range(9):
        columns[f"f_rest_{i}"] = np.zeros(count)
    return columns


def write_ply(path: Path, parts: list[dict[str, np.ndarray]], properties: list[str] = PROPERTIES,
              doubles: frozenset[str] = frozenset({"confidence"})) -> Path:
    """Binary little-endian PLY of the concatenated `parts`, properties in the given order."""
    columns = {name: np.concatenate([part[name] for part in parts]) for name in properties}
    count = len(columns["x"])
    data = np.empty(count, dtype=[(name, "<f8" if name in doubles else "<f4") for name in properties])
    for name in properties:
        data[name] = columns[name]
    header = ["ply", "format binary_little_endian 1.0", "comment DimensionX viewer test scene",
              f"element vertex {count}"]
    header += [f"property {'double' if name in doubles else 'float'} {name}" for name in properties]
    header.append("end_header")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(("\n".join(header) + "\n").encode("ascii") + data.tobytes())
    return path


def two_clusters(path: Path, per_cluster: int, swapped: bool = False, seed: int = 0) -> Path:
    """Red on the left and blue on the right (or the other way round when `swapped`)."""
    rng = np.random.default_rng(seed)
    left, right = (BLUE, RED) if swapped else (RED, BLUE)
    return write_ply(path, [cluster(LEFT, left, per_cluster, rng), cluster(RIGHT, right, per_cluster, rng)])


def camera_arc(path: Path, count: int = 5, fl: float = 500.0, width: int = 720, height: int = 480) -> Path:
    """nerfstudio transforms.json: cameras on an arc about the scene centre, the first one at the origin looking
    along +z (OpenCV), i.e. OpenGL camera-to-world = diag(1, -1, -1)."""
    frames = []
    for i in range(count):
        angle = np.radians(12.0 * i)
        centre = np.array([4.0 * np.sin(angle), 0.0, 4.0 - 4.0 * np.cos(angle)])
        forward = np.array([-np.sin(angle), 0.0, np.cos(angle)])  # towards (0, 0, 4)
        down = np.array([0.0, 1.0, 0.0])
        right = np.cross(down, forward)
        c2w = np.eye(4)
        c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = right, -down, -forward, centre  # OpenGL axes
        frames.append({"file_path": f"frame_{i:04d}.png", "transform_matrix": c2w.tolist(), "fl_x": fl, "fl_y": fl,
                       "cx": width / 2, "cy": height / 2})
    path.write_text(json.dumps({"w": width, "h": height, "camera_model": "OPENCV", "frames": frames}))
    return path


def read_xyz(path: Path) -> np.ndarray:
    """Splat centres of a PLY written by `write_ply` (the tests compare them with what the viewer shows)."""
    raw = Path(path).read_bytes()
    end = raw.index(b"end_header\n") + len(b"end_header\n")
    fields = [line.split() for line in raw[:end].decode("ascii").splitlines() if line.startswith("property")]
    dtype = [(name, "<f8" if kind == "double" else "<f4") for _, kind, name in fields]
    data = np.frombuffer(raw[end:], dtype=dtype)
    return np.stack([data["x"], data["y"], data["z"]], axis=1).astype(np.float64)
