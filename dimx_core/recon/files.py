"""Scene files viewers read, from one registry (SCENE_FORMATS): the standard 3DGS PLY, the antimatter15 `.splat`
and Niantic's `.spz` (spz.py), each with a writer, a reader, a sniffer and whether it keeps view-dependent colour.

PLY (what the INRIA 3DGS code, gsplat, SuperSplat and Spark use): binary little endian, one `vertex` element
of float32 properties x, y, z, nx, ny, nz, f_dc_0..2, f_rest_0..(3*(K-1)-1), opacity, scale_0..2, rot_0..3.
Opacity is a logit, scales are logs, rot is a wxyz quaternion, and f_rest is channel-major: all red
coefficients of bands 1..degree first, then green, then blue. (`plyfile` is GPL, hence a reader of our own.)

.splat: 32 bytes per Gaussian, no header: position (3 float32), linear scale (3 float32), RGBA (4 uint8: the
DC colour and the opacity), rotation (4 uint8: wxyz of the unit quaternion as q * 128 + 128). No SH beyond
the DC colour. Gaussians are ordered by size times opacity, largest first, as viewers that stream expect.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..camera.formats import read_transforms_json, write_transforms_json
from ..files import atomic_path
from .gaussians import Gaussians, check_renderable, rgb_to_sh_dc, sh_degree_of
from .spz import looks_like_spz, read_spz, write_spz

PLY_TYPES = {"char": "i1", "uchar": "u1", "short": "i2", "ushort": "u2", "int": "i4", "uint": "u4",
             "float": "f4", "double": "f8", "int8": "i1", "uint8": "u1", "int16": "i2", "uint16": "u2",
             "int32": "i4", "uint32": "u4", "float32": "f4", "float64": "f8"}
SPLAT_RECORD = np.dtype([("position", "<f4", 3), ("scale", "<f4", 3), ("rgba", "u1", 4), ("rotation", "u1", 4)])


def ply_property_names(sh_degree: int) -> list[str]:
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return (["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
            + [f"f_rest_{i}" for i in range(rest)]
            + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"])


def _numpy(tensor: torch.Tensor) -> np.ndarray:
    return tensor.detach().to("cpu", torch.float32).numpy()


def write_ply(path: str | Path, gaussians: Gaussians) -> Path:
    check_renderable(gaussians, "the scene to save")
    n = len(gaussians)
    sh = _numpy(gaussians.sh)
    columns = [_numpy(gaussians.means), np.zeros((n, 3), np.float32), sh[:, 0],
               sh[:, 1:].transpose(0, 2, 1).reshape(n, -1),  # channel-major f_rest
               _numpy(gaussians.opacity_logits)[:, None], _numpy(gaussians.log_scales),
               _numpy(gaussians.quats_wxyz)]
    names = ply_property_names(gaussians.sh_degree)
    body = np.ascontiguousarray(np.concatenate(columns, axis=1), dtype="<f4")
    header = ["ply", "format binary_little_endian 1.0", "comment written by DimensionX (3DGS layout)",
              f"element vertex {n}", *[f"property float {name}" for name in names], "end_header"]
    with atomic_path(path) as part:
        with open(part, "wb") as handle:
            handle.write(("\n".join(header) + "\n").encode("ascii"))
            handle.write(body.tobytes())
    return Path(path)


def _parse_ply_header(data: bytes, path: Path) -> tuple[np.dtype, int, int]:
    """(vertex record dtype, vertex count, offset of the vertex data)."""
    if not data.startswith(b"ply"):
        raise ValueError(f"'{path}' is not a PLY file (it does not start with 'ply')")
    end = data.find(b"end_header")
    if end < 0:
        raise ValueError(f"'{path}' is a damaged PLY file: its header never ends (no 'end_header')")
    offset = end + len(b"end_header")
    offset += 2 if data[offset:offset + 2] == b"\r\n" else 1
    endian, elements = None, []
    for line in data[:end].decode("ascii", "replace").splitlines():
        words = line.split()
        if not words or words[0] in ("ply", "comment", "obj_info"):
            continue
        if words[0] == "format":
            formats = {"binary_little_endian": "<", "binary_big_endian": ">"}
            if words[1] not in formats:
                raise ValueError(f"'{path}' is a {words[1]} PLY; Gaussian-splat PLY files are binary")
            endian = formats[words[1]]
        elif words[0] == "element":
            if len(words) != 3 or not words[2].isdigit():
                raise ValueError(f"'{path}' is a damaged PLY file: its header line '{line.strip()}' does not give "
                                 "an element name and a count of zero or more")
            elements.append((words[1], int(words[2]), []))
        elif words[0] == "property" and elements:
            if words[1] == "list":
                raise ValueError(f"'{path}': element '{elements[-1][0]}' has list properties; "
                                 "a Gaussian-splat PLY has plain vertex properties only")
            if words[1] not in PLY_TYPES:
                raise ValueError(f"'{path}': unknown PLY property type '{words[1]}'")
            elements[-1][2].append((words[2], endian + PLY_TYPES[words[1]]))
    if endian is None or not elements:
        raise ValueError(f"'{path}' is a damaged PLY file: no format line or no elements in its header")
    if elements[0][0] != "vertex":
        names = ", ".join(name for name, _, _ in elements)
        raise ValueError(f"'{path}' has elements [{names}]; expected the vertex element first (a compressed or "
                         "non-3DGS PLY). Export a standard 3DGS PLY from your viewer/trainer.")
    _, count, properties = elements[0]
    if count == 0:
        raise ValueError(f"'{path}' holds no Gaussians (its header says 'element vertex 0'); there is nothing to load")
    return np.dtype(properties), count, offset


def read_ply(path: str | Path) -> Gaussians:
    path = Path(path)
    data = path.read_bytes()
    record, count, offset = _parse_ply_header(data, path)
    if len(data) - offset < record.itemsize * count:
        raise ValueError(f"'{path}' is truncated: its header promises {count} Gaussians of {record.itemsize} bytes "
                         f"({record.itemsize * count} bytes) but only {len(data) - offset} bytes follow")
    vertices = np.frombuffer(data, record, count=count, offset=offset)
    names = set(record.names)
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [name for name in required if name not in names]
    if missing:
        raise ValueError(f"'{path}' is a PLY but not a 3D Gaussian-splat scene: missing {', '.join(missing)}")

    def stack(keys: list[str]) -> torch.Tensor:
        return torch.from_numpy(np.stack([vertices[k].astype(np.float32) for k in keys], axis=-1))

    rest_keys = sorted((k for k in names if k.startswith("f_rest_")), key=lambda k: int(k.rsplit("_", 1)[1]))
    if len(rest_keys) % 3:
        raise ValueError(f"'{path}' has {len(rest_keys)} f_rest properties; expected a multiple of 3")
    sh_degree_of(len(rest_keys) // 3 + 1)
    dc = stack(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None]
    rest = stack(rest_keys).reshape(count, 3, -1).transpose(1, 2) if rest_keys else dc[:, :0]
    gaussians = Gaussians(means=stack(["x", "y", "z"]), log_scales=stack(["scale_0", "scale_1", "scale_2"]),
                          quats_wxyz=stack(["rot_0", "rot_1", "rot_2", "rot_3"]),
                          opacity_logits=stack(["opacity"])[:, 0], sh=torch.cat([dc, rest], dim=1).contiguous())
    check_renderable(gaussians, f"'{path}'")
    return gaussians


def write_splat(path: str | Path, gaussians: Gaussians) -> Path:
    check_renderable(gaussians, "the scene to save")
    log_scales, logits = _numpy(gaussians.log_scales), _numpy(gaussians.opacity_logits)
    opacity = 1.0 / (1.0 + np.exp(-logits))
    order = np.argsort(-(np.exp(log_scales.sum(axis=1)) * opacity), kind="stable")
    quats = _numpy(gaussians.quats_wxyz)
    quats = quats / np.linalg.norm(quats, axis=1, keepdims=True).clip(1e-12)
    records = np.zeros(len(gaussians), SPLAT_RECORD)
    records["position"] = _numpy(gaussians.means)
    records["scale"] = np.exp(log_scales)
    rgba = np.concatenate([_numpy(gaussians.base_colors()), opacity[:, None]], axis=1)
    records["rgba"] = np.clip(np.round(rgba * 255.0), 0, 255)
    records["rotation"] = np.clip(np.round(quats * 128.0 + 128.0), 0, 255)
    with atomic_path(path) as part:
        part.write_bytes(records[order].tobytes())
    return Path(path)


def read_splat(path: str | Path) -> Gaussians:
    path = Path(path)
    data = path.read_bytes()
    if not data or len(data) % SPLAT_RECORD.itemsize:
        raise ValueError(f"'{path}' is not a .splat scene: its size ({len(data)} bytes) is not a positive "
                         f"multiple of {SPLAT_RECORD.itemsize} bytes")
    records = np.frombuffer(data, SPLAT_RECORD)
    rgba = records["rgba"].astype(np.float32) / 255.0
    alpha = np.clip(rgba[:, 3], 0.5 / 255.0, 1.0 - 0.5 / 255.0)
    quats = (records["rotation"].astype(np.float32) - 128.0) / 128.0
    quats /= np.linalg.norm(quats, axis=1, keepdims=True).clip(1e-12)
    scales = records["scale"].astype(np.float32)
    if (scales <= 0).any():
        raise ValueError(f"'{path}' holds non-positive scales; the file is damaged or not a .splat scene")
    gaussians = Gaussians(means=torch.from_numpy(records["position"].astype(np.float32)),
                          log_scales=torch.from_numpy(np.log(scales)),
                          quats_wxyz=torch.from_numpy(quats),
                          opacity_logits=torch.from_numpy(np.log(alpha / (1.0 - alpha))),
                          sh=rgb_to_sh_dc(torch.from_numpy(rgba[:, None, :3])))
    check_renderable(gaussians, f"'{path}'")
    return gaussians


@dataclass(frozen=True)
class SceneFormat:
    name: str
    extension: str
    write: Callable[[str | Path, Gaussians], Path]
    read: Callable[[str | Path], Gaussians]
    sniff: Callable[[bytes], bool]  # from a file's first bytes; False for a format without a signature
    keeps_sh: bool                  # view-dependent colour (SH bands 1-3) survives the file
    description: str


SCENE_FORMATS = {kind.name: kind for kind in (
    SceneFormat("ply", ".ply", write_ply, read_ply, lambda head: head.startswith(b"ply"), True,
                "standard 3DGS PLY: exact float32, SH up to degree 3 (SuperSplat, Spark, gsplat, INRIA 3DGS)"),
    SceneFormat("splat", ".splat", write_splat, read_splat, lambda head: False, False,
                "antimatter15 .splat: 32 bytes per Gaussian, 8-bit colour, no view-dependent colour"),
    SceneFormat("spz", ".spz", write_spz, read_spz, looks_like_spz, True,
                "Niantic .spz: about 10x smaller than PLY, 8-bit quantised, SH kept (SuperSplat, Spark, ComfyUI)"),
)}
SCENE_EXTENSIONS = tuple(kind.extension for kind in SCENE_FORMATS.values())
SNIFF_BYTES = 64


def format_for(path: str | Path) -> SceneFormat:
    """The format a file name asks for, by its extension."""
    suffix = Path(path).suffix.lower()
    for kind in SCENE_FORMATS.values():
        if kind.extension == suffix:
            return kind
    raise ValueError(f"'{path}': a scene file must end in {', '.join(SCENE_EXTENSIONS)} (the extension picks the "
                     f"format), got '{suffix or 'no extension'}'")


def read_scene(path: str | Path) -> Gaussians:
    """A scene in any registered format: detected from the content where the format has a signature (a renamed
    file still reads), else from the extension."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"scene file '{path}' does not exist")
    with open(path, "rb") as handle:
        head = handle.read(SNIFF_BYTES)
    for kind in SCENE_FORMATS.values():
        if kind.sniff(head):
            return kind.read(path)
    try:
        kind = format_for(path)
    except ValueError:
        raise ValueError(f"'{path}' is none of the scene formats ({', '.join(SCENE_EXTENSIONS)}): its content has "
                         "no PLY or spz signature and its extension names no format") from None
    return kind.read(path)


def cameras_path(scene_path: str | Path) -> Path:
    """Where the fitted cameras of a scene file live: beside it, `<stem>.transforms.json`."""
    scene_path = Path(scene_path)
    return scene_path.with_name(scene_path.stem + ".transforms.json")


def save_scene(path: str | Path, gaussians: Gaussians) -> list[Path]:
    """The scene at `path` in the format its extension names, and its cameras as transforms.json beside it
    (nerfstudio/OpenGL convention, as dimx_core.camera.formats writes). Each file appears whole or not at all."""
    path = Path(path)
    written = [format_for(path).write(path, gaussians)]
    if gaussians.cameras is not None:
        written.append(write_transforms_json(cameras_path(path), gaussians.cameras))
    return written


def load_scene(path: str | Path) -> Gaussians:
    """A scene file and, when its transforms.json sits beside it, the cameras it was fitted from."""
    gaussians = read_scene(path)
    cameras = cameras_path(path)
    if cameras.is_file():
        gaussians.cameras, _ = read_transforms_json(cameras)
    return gaussians
