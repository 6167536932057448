"""Niantic's `.spz` (what SuperSplat, Spark and core ComfyUI open), written and read with numpy and gzip.

Written from the public format description (the nianticlabs/spz README and its reference loader), because the
only `spz` package on PyPI is a Rust source distribution without wheels, which cannot be built without
crates.io. The layout (version 3, the "legacy gzip" container every viewer reads): a gzip stream of a 16-byte
little-endian header (magic 0x5053474e "NGSP", version, point count, SH degree, fractional bits, flags, a
reserved byte), then attribute by attribute for all points:
- positions: 3 x 24-bit signed fixed point with `fractional bits` (12: 1/4096 unit steps, +-2048 units);
- alphas: sigmoid(opacity) x 255; colours: the DC coefficient x (0.15 x 255) + 127.5 (room above 1 and below 0);
- scales: (log scale + 10) x 16;
- rotations: the unit quaternion's three smallest components (10 bits each: a sign and 9 bits of |q| / sqrt(1/2))
  and the index of the largest in the top 2 bits (version 2: x, y, z as q x 127.5 + 127.5, w >= 0 implied);
- SH bands 1..3, coefficient-major with the colour channel fastest, as round(c x 128) + 128 rounded to buckets
  of 8 (band 1, 5 bits) or 16 (bands 2-3, 4 bits), the reference packer's defaults.
Everything is 8 bits except positions and rotations. spz stores Right-Up-Back axes (three.js); a Gaussian-splat
PLY, and this pack's scene frame, is Right-Down-Front, so y and z flip on the way in and out (positions, the
quaternion's y and z, and each SH coefficient by its basis function's parity in y and z).
"""
from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np
import torch

from ..files import atomic_path
from .gaussians import Gaussians, check_renderable, sh_bases

MAGIC, VERSION, FRACTIONAL_BITS = 0x5053474E, 3, 12
HEADER = struct.Struct("<IIIBBBB")
COLOR_SCALE = 0.15
FLAG_ANTIALIASED, FLAG_EXTENSIONS = 0x1, 0x2
SH1_BUCKET, SH_REST_BUCKET = 8, 16  # 5 and 4 bits of the 8 kept: what the reference packer writes by default
MAX_POINTS = 10_000_000             # the reference loader's own limit
SQRT_HALF = 0.7071067811865476
# Sign of each SH coefficient (bands 1..3, gsplat's basis order) when y and z flip: the parity of its basis
# function in y and z (e.g. band 1 is -y, z, -x: flips, flips, stays).
SH_FLIPS = np.array([-1, -1, 1, -1, 1, 1, -1, 1, -1, 1, -1, -1, 1, -1, 1], np.float32)
AXIS_FLIPS = np.array([1, -1, -1], np.float32)  # Right-Down-Front <-> Right-Up-Back


def looks_like_spz(head: bytes) -> bool:
    """A gzip stream whose first bytes decompress to the spz magic."""
    if head[:2] != b"\x1f\x8b":
        return False
    try:
        start = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(head, 4)
    except zlib.error:
        return False
    return len(start) == 4 and struct.unpack("<I", start)[0] == MAGIC


def _quantise_sh(values: np.ndarray) -> np.ndarray:
    """(N, K-1, 3) SH rest coefficients -> uint8 with the band-1 and higher-band buckets."""
    q = np.round(values * 128.0) + 128.0
    buckets = np.where(np.arange(values.shape[1]) < 3, SH1_BUCKET, SH_REST_BUCKET)[None, :, None]
    return np.clip((q + buckets // 2) // buckets * buckets, 0, 255).astype(np.uint8)


def _pack_rotations(quats_xyzw: np.ndarray) -> np.ndarray:
    """(N, 4) unit quaternions (x, y, z, w) -> (N, 4) bytes of the smallest-three encoding."""
    n = len(quats_xyzw)
    largest = np.abs(quats_xyzw).argmax(axis=1)
    negate = quats_xyzw[np.arange(n), largest] < 0
    packed = largest.astype(np.uint32)
    for component in range(4):
        value = quats_xyzw[:, component]
        sign = ((value < 0) ^ negate).astype(np.uint32)
        magnitude = np.floor(511.0 * np.abs(value) / SQRT_HALF + 0.5).astype(np.uint32).clip(0, 511)
        kept = largest != component
        packed = np.where(kept, (packed << 10) | (sign << 9) | magnitude, packed)
    return packed.astype("<u4").view(np.uint8).reshape(n, 4)


def _unpack_rotations(data: np.ndarray) -> np.ndarray:
    """(N, 4) bytes of the smallest-three encoding -> (N, 4) quaternions (x, y, z, w)."""
    packed = data.reshape(-1, 4).copy().view("<u4")[:, 0].astype(np.int64)
    largest = packed >> 30
    quats = np.zeros((len(packed), 4), np.float32)
    for component in (3, 2, 1, 0):
        kept = largest != component
        magnitude = (packed & 511).astype(np.float32)
        value = SQRT_HALF * magnitude / 511.0 * np.where((packed >> 9) & 1, -1.0, 1.0)
        quats[:, component] = np.where(kept, value, 0.0)
        packed = np.where(kept, packed >> 10, packed)
    rest = np.clip(1.0 - (quats ** 2).sum(axis=1), 0.0, None)
    quats[np.arange(len(quats)), largest] = np.sqrt(rest)
    return quats


def write_spz(path: str | Path, gaussians: Gaussians) -> Path:
    check_renderable(gaussians, "the scene to save")
    scene = gaussians.to("cpu")
    n, degree = len(scene), scene.sh_degree
    means = scene.means.numpy() * AXIS_FLIPS
    fixed = np.round(means * (1 << FRACTIONAL_BITS)).astype(np.int64)
    limit = 1 << 23
    if (np.abs(fixed) >= limit).any():
        raise ValueError(f"the scene reaches {np.abs(means).max():.1f} units from the origin; .spz stores positions "
                         f"as 24-bit fixed point (within +-{limit >> FRACTIONAL_BITS} units). Save it as .ply")
    positions = (fixed & 0xFFFFFF).astype("<u4").view(np.uint8).reshape(n, 3, 4)[:, :, :3]
    opacity = 1.0 / (1.0 + np.exp(-scene.opacity_logits.numpy().astype(np.float64)))
    alphas = np.clip(np.round(opacity * 255.0), 0, 255).astype(np.uint8)
    dc = scene.sh[:, 0].numpy()
    colours = np.clip(np.round(dc * (COLOR_SCALE * 255.0) + 127.5), 0, 255).astype(np.uint8)
    scales = np.clip(np.round((scene.log_scales.numpy() + 10.0) * 16.0), 0, 255).astype(np.uint8)
    wxyz = torch.nn.functional.normalize(scene.quats_wxyz, dim=1).numpy()
    xyzw = np.concatenate([wxyz[:, 1:] * AXIS_FLIPS[[1, 2, 0]] * AXIS_FLIPS[[2, 0, 1]], wxyz[:, :1]], axis=1)
    rest = scene.sh[:, 1:].numpy() * SH_FLIPS[: sh_bases(degree) - 1, None]
    header = HEADER.pack(MAGIC, VERSION, n, degree, FRACTIONAL_BITS, 0, 0)
    body = b"".join([header, positions.tobytes(), alphas.tobytes(), colours.tobytes(), scales.tobytes(),
                     _pack_rotations(xyzw).tobytes(), _quantise_sh(rest).tobytes()])
    with atomic_path(path) as part:
        part.write_bytes(gzip.compress(body, compresslevel=6, mtime=0))
    return Path(path)


def read_spz(path: str | Path) -> Gaussians:
    path = Path(path)
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        if path.read_bytes()[:4] == b"NGSP":
            raise ValueError(f"'{path}' is an spz of the newer uncompressed container (version 4), which this pack "
                             "does not read yet; re-save it as spz version 3 (or .ply)") from err
        raise ValueError(f"'{path}' is not a readable .spz (its gzip stream is damaged: {err})") from err
    if len(data) < HEADER.size:
        raise ValueError(f"'{path}' is a damaged .spz: {len(data)} bytes, shorter than its 16-byte header")
    magic, version, count, degree, fractional_bits, flags, _ = HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ValueError(f"'{path}' is not an .spz scene (magic {magic:#010x}, expected {MAGIC:#010x})")
    if version not in (2, 3):
        raise ValueError(f"'{path}' is an spz of version {version}; versions 2 and 3 are supported")
    if not 0 < count <= MAX_POINTS:
        raise ValueError(f"'{path}' claims {count} Gaussians; an .spz holds 1 to {MAX_POINTS}")
    if degree > 3:
        raise ValueError(f"'{path}' has SH degree {degree}; this pack keeps degrees 0 to 3")
    rest_bases = sh_bases(degree) - 1
    rotation_bytes = 4 if version >= 3 else 3
    sizes = [("positions", 9), ("alphas", 1), ("colours", 3), ("scales", 3), ("rotations", rotation_bytes),
             ("sh", 3 * rest_bases)]
    needed = count * sum(size for _, size in sizes)
    extensions = len(data) - HEADER.size - needed  # records between the header and the attributes
    if extensions < 0 or (extensions and not flags & FLAG_EXTENSIONS):
        raise ValueError(f"'{path}' is a damaged .spz: {count} Gaussians of SH degree {degree} need "
                         f"{HEADER.size + needed} bytes, the stream holds {len(data)}")
    offset, arrays = HEADER.size + extensions, {}
    for name, size in sizes:
        arrays[name] = np.frombuffer(data, np.uint8, count * size, offset).reshape(count, size)
        offset += count * size
    raw = np.zeros((count, 3, 4), np.uint8)
    raw[:, :, :3] = arrays["positions"].reshape(count, 3, 3)
    fixed = raw.view("<i4")[..., 0]
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    means = fixed.astype(np.float32) / (1 << fractional_bits) * AXIS_FLIPS
    alpha = np.clip(arrays["alphas"][:, 0].astype(np.float32) / 255.0, 0.5 / 255.0, 1.0 - 0.5 / 255.0)
    dc = (arrays["colours"].astype(np.float32) / 255.0 - 0.5) / COLOR_SCALE
    if version >= 3:
        xyzw = _unpack_rotations(arrays["rotations"])
    else:
        xyz = arrays["rotations"].astype(np.float32) / 127.5 - 1.0
        xyzw = np.concatenate([xyz, np.sqrt(np.clip(1.0 - (xyz ** 2).sum(axis=1, keepdims=True), 0.0, None))], 1)
    wxyz = np.concatenate([xyzw[:, 3:], xyzw[:, :3] * AXIS_FLIPS[[1, 2, 0]] * AXIS_FLIPS[[2, 0, 1]]], axis=1)
    rest = (arrays["sh"].reshape(count, rest_bases, 3).astype(np.float32) - 128.0) / 128.0
    rest = rest * SH_FLIPS[:rest_bases, None]
    gaussians = Gaussians(means=torch.from_numpy(means), log_scales=torch.from_numpy(
        arrays["scales"].astype(np.float32) / 16.0 - 10.0), quats_wxyz=torch.from_numpy(wxyz),
        opacity_logits=torch.from_numpy(np.log(alpha / (1.0 - alpha))),
        sh=torch.from_numpy(np.concatenate([dc[:, None], rest], axis=1)).contiguous())
    check_renderable(gaussians, f"'{path}'")
    return gaussians
