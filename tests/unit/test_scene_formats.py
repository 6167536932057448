"""Scene formats from one registry (ply, splat, spz): every entry round-trips within its quantisation, the reader
detects the format from the content, and an .spz assembled byte by byte from Niantic's format description (as
another tool would write it: versions 2 and 3, an extension record) reads back to the values it encodes."""
import gzip
import math
import struct

import numpy as np
import pytest
import torch

from dimx_core.recon.files import SCENE_FORMATS, format_for, read_scene
from dimx_core.recon.gaussians import Gaussians
from dimx_core.recon.spz import read_spz, write_spz
from tests.unit.test_recon_files import random_gaussians

# what each format keeps: means, log scales, colours (DC), opacities, rotation alignment, SH rest
TOLERANCES = {"ply": (0.0, 0.0, 0.0, 0.0, 1.0 - 1e-6, 0.0),
              "splat": (0.0, 1e-6, 0.5 / 255 + 1e-6, 0.5 / 255 + 1e-6, 0.999, None),
              "spz": (0.5 / 4096 + 1e-6, 1 / 32 + 1e-6, 0.5 / 255 / (0.15 / 0.2821) + 1e-5, 0.5 / 255 + 1e-6, 0.999,
                      8.5 / 128 + 1e-6)}  # SH: half a 16-wide bucket plus the rounding to 1/128


def test_the_registry_names_each_format_with_its_parts():
    assert list(SCENE_FORMATS) == ["ply", "splat", "spz"]
    assert {name: kind.keeps_sh for name, kind in SCENE_FORMATS.items()} == {"ply": True, "splat": False, "spz": True}
    assert format_for("a/b.SPZ").name == "spz"
    with pytest.raises(ValueError, match="must end in .ply, .splat, .spz"):
        format_for("scene.obj")


def matched(back: Gaussians, scene: Gaussians) -> Gaussians:
    """`scene` reordered like `back` (.splat sorts its records), matched by position."""
    order = torch.cdist(back.means, scene.means).argmin(dim=1)
    assert sorted(order.tolist()) == list(range(len(scene)))
    return Gaussians(*(getattr(scene, name)[order] for name in ("means", "log_scales", "quats_wxyz",
                                                                  "opacity_logits", "sh")))


@pytest.mark.parametrize("name", list(SCENE_FORMATS))
def test_every_format_round_trips_within_its_quantisation(tmp_path, name):
    kind = SCENE_FORMATS[name]
    scene = random_gaussians(n=300, degree=3, seed=4)
    scene.sh[:, 1:] = scene.sh[:, 1:].clamp(-0.9, 0.9) * 0.5  # SH rest within spz's [-1, 1]
    scene.sh[:, 0] = scene.sh[:, 0].clamp(-1.5, 1.5)           # colours inside 0..1 (splat) and spz's DC range
    scene.log_scales = scene.log_scales.clamp(-9.0, 5.0)       # within spz's 8-bit log-scale range
    back = kind.read(kind.write(tmp_path / f"scene{kind.extension}", scene))
    assert len(back) == len(scene) and back.sh_degree == (3 if kind.keeps_sh else 0)
    original = matched(back, scene) if name == "splat" else scene
    means, scales, colours, opacities, alignment, rest = TOLERANCES[name]
    assert (back.means - original.means).abs().max() <= means
    assert (back.log_scales - original.log_scales).abs().max() <= scales
    assert (back.base_colors() - original.base_colors()).abs().max() <= colours
    assert (back.opacities() - original.opacities()).abs().max() <= opacities
    unit = torch.nn.functional.normalize
    assert (unit(back.quats_wxyz, dim=1) * unit(original.quats_wxyz, dim=1)).sum(1).abs().min() >= alignment
    if rest is not None:
        assert (back.sh[:, 1:] - original.sh[:, 1:]).abs().max() <= rest
    assert read_scene(tmp_path / f"scene{kind.extension}").sh_degree == back.sh_degree


def test_an_spz_is_detected_from_its_content_whatever_its_name(tmp_path):
    path = write_spz(tmp_path / "scene.spz", random_gaussians(n=5, degree=1))
    (tmp_path / "renamed.bin").write_bytes(path.read_bytes())
    assert read_scene(tmp_path / "renamed.bin").sh_degree == 1
    (tmp_path / "junk.spz").write_bytes(b"\x1f\x8b" + bytes(30))
    with pytest.raises(ValueError, match="not a readable .spz"):
        read_scene(tmp_path / "junk.spz")


def spec_file(version: int, *, extension: bytes = b"") -> bytes:
    """Two Gaussians encoded by hand from the format description, in spz's Right-Up-Back axes:
    A at (1, -2, 3) RUB, scale e^-2, opacity 0.5, DC colour (0.4, -0.2, 0), rotation 90 deg about x, SH band 1;
    B at (-0.5, 0.25, -4), scale e^0, opacity ~1, rotation identity."""
    header = struct.pack("<IIIBBBB", 0x5053474E, version, 2, 1, 12, 0x2 if extension else 0, 0)
    positions = b""
    for value in (1.0, -2.0, 3.0, -0.5, 0.25, -4.0):
        fixed = round(value * 4096) & 0xFFFFFF
        positions += bytes([fixed & 0xFF, (fixed >> 8) & 0xFF, fixed >> 16])
    alphas = bytes([128, 255])
    colours = bytes([round(v * 0.15 * 255 + 127.5) for v in (0.4, -0.2, 0.0, 0.0, 0.0, 0.0)])
    scales = bytes([round((v + 10) * 16) for v in (-2.0, -2.0, -2.0, 0.0, 0.0, 0.0)])
    half = math.sqrt(0.5)  # (x, y, z, w) = (sin 45, 0, 0, cos 45) for A, (0, 0, 0, 1) for B
    if version == 3:
        def smallest_three(q):
            largest = max(range(4), key=lambda i: abs(q[i]))
            packed = largest
            for i in range(4):
                if i != largest:
                    packed = (packed << 10) | ((q[i] < 0) << 9) | int(511 * abs(q[i]) / half + 0.5)
            return struct.pack("<I", packed)
        rotations = smallest_three((half, 0.0, 0.0, half)) + smallest_three((0.0, 0.0, 0.0, 1.0))
    else:
        rotations = bytes([round(v * 127.5 + 127.5) for v in (half, 0.0, 0.0, 0.0, 0.0, 0.0)])
    sh = bytes([round(v * 128 + 128) for v in (0.5, 0, 0, 0, -0.25, 0, 0, 0, 0.125)] + [128] * 9)
    body = header + extension + positions + alphas + colours + scales + rotations + sh
    return gzip.compress(body)


@pytest.mark.parametrize("version", [2, 3])
def test_an_spz_written_to_the_format_description_reads_back_in_the_scene_frame(tmp_path, version):
    record = struct.pack("<II", 0xADBE0002, 12) + struct.pack("<fff", 0.0, 0.5, 1.0)  # skipped: unknown here
    path = tmp_path / "other_tool.spz"
    path.write_bytes(spec_file(version, extension=record))
    scene = read_spz(path)
    assert len(scene) == 2 and scene.sh_degree == 1
    # Right-Up-Back (spz) -> Right-Down-Front (PLY, this pack): y and z flip
    assert torch.allclose(scene.means, torch.tensor([[1.0, 2.0, -3.0], [-0.5, -0.25, 4.0]]), atol=1e-6)
    assert torch.allclose(scene.log_scales, torch.tensor([[-2.0] * 3, [0.0] * 3]))
    assert torch.allclose(scene.opacities(), torch.tensor([128 / 255, 254.5 / 255]), atol=1e-6)
    assert torch.allclose(scene.sh[0, 0], torch.tensor([0.4, -0.2, 0.0]), atol=0.5 / 255 / 0.15 + 1e-6)
    # 90 deg about x stays 90 deg about x (x does not flip); identity stays identity
    unit = torch.nn.functional.normalize(scene.quats_wxyz, dim=1)
    assert torch.allclose(unit.abs(), torch.tensor([[0.7071, 0.7071, 0, 0], [1.0, 0, 0, 0]]), atol=6e-3)  # v2: 1/255
    # band 1 is (-y, z, -x) times C1: under y, z -> -y, -z the first two coefficients flip, the third stays
    assert torch.allclose(scene.sh[0, 1:], torch.tensor([[-0.5, 0, 0], [0, 0.25, 0], [0, 0, 0.125]]), atol=1e-6)
    assert torch.equal(scene.sh[1, 1:], torch.zeros(3, 3))


def test_damaged_or_unsupported_spz_files_are_refused_with_the_reason(tmp_path):
    path = tmp_path / "s.spz"
    body = gzip.decompress(spec_file(3))
    for data, message in ((body[:40], "need 74 bytes, the stream holds 40"),
                          (struct.pack("<I", 0x12345678) + body[4:], "not an .spz scene"),
                          (body[:4] + struct.pack("<I", 7) + body[8:], "version 7; versions 2 and 3"),
                          (body[:8] + struct.pack("<I", 0) + body[12:], "claims 0 Gaussians"),
                          (body[:12] + bytes([4]) + body[13:], "SH degree 4")):
        path.write_bytes(gzip.compress(data))
        with pytest.raises(ValueError, match=message):
            read_spz(path)
    path.write_bytes(b"NGSP" + bytes(28))
    with pytest.raises(ValueError, match="newer uncompressed container"):
        read_spz(path)
    far = random_gaussians(n=2, degree=0)
    far.means[0, 0] = 5000.0
    with pytest.raises(ValueError, match=r"24-bit fixed point \(within \+-2048 units\). Save it as .ply"):
        write_spz(tmp_path / "far.spz", far)


def test_what_spz_stores_is_in_right_up_back_axes(tmp_path):
    scene = random_gaussians(n=1, degree=0)
    scene.means[0] = torch.tensor([1.0, 2.0, 3.0])
    body = gzip.decompress(write_spz(tmp_path / "a.spz", scene).read_bytes())
    raw = np.frombuffer(body[16:25], np.uint8).reshape(3, 3).astype(np.int64)
    fixed = raw[:, 0] | raw[:, 1] << 8 | raw[:, 2] << 16
    fixed = np.where(fixed & 0x800000, fixed - (1 << 24), fixed)
    assert (fixed / 4096).tolist() == [1.0, -2.0, -3.0]


@pytest.mark.parametrize("name", ["spz", "splat"])
def test_a_4d_folder_holds_any_format_and_loads_back(tmp_path, name):
    from dimx_core.recon.deform import gaussians_at
    from dimx_core.recon.files4d import load_scene_4d, save_scene_4d
    from tests.unit.test_recon_4d import deformable_ball

    scene = deformable_ball()
    manifest = save_scene_4d(tmp_path / "ball", scene, scene_format=name)
    extension = SCENE_FORMATS[name].extension
    assert {p.suffix for p in (tmp_path / "ball").iterdir() if p.stem.startswith(("time_", "canonical"))} == {
        extension, ".json"}
    loaded = load_scene_4d(manifest)
    assert len(loaded) == len(scene) and loaded.deformation.times == (0.0, 0.5, 1.0)
    moment = read_scene(tmp_path / "ball" / f"time_0002{extension}")
    assert len(moment) == len(scene)
    assert torch.cdist(moment.means, gaussians_at(scene, 1.0).means).min(dim=1).values.max() < 1e-3
    with pytest.raises(ValueError, match="format must be one of ply, splat, spz"):
        save_scene_4d(tmp_path / "other", scene, scene_format="obj")
