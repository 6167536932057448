"""Scene files: the standard 3DGS PLY and .splat round trip, follow the viewers' layout, and refuse damage."""
import numpy as np
import pytest
import torch

from dimx_core.recon.files import SPLAT_RECORD, ply_property_names, read_ply, read_scene, read_splat, write_ply, \
    write_splat
from dimx_core.recon.gaussians import SH_C0, Gaussians


def random_gaussians(n=50, degree=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Gaussians(means=torch.randn(n, 3, generator=g), log_scales=torch.randn(n, 3, generator=g) - 3,
                     quats_wxyz=torch.randn(n, 4, generator=g), opacity_logits=torch.randn(n, generator=g),
                     sh=torch.randn(n, (degree + 1) ** 2, 3, generator=g))


@pytest.mark.parametrize("degree", [0, 1, 3])
def test_ply_round_trip_returns_every_value_exactly(tmp_path, degree):
    scene = random_gaussians(degree=degree)
    back = read_ply(write_ply(tmp_path / "scene.ply", scene))
    assert back.sh_degree == degree and len(back) == len(scene)
    for name in ("means", "log_scales", "quats_wxyz", "opacity_logits", "sh"):
        assert torch.equal(getattr(back, name), getattr(scene, name)), name


def test_ply_uses_the_3dgs_header_and_channel_major_f_rest(tmp_path):
    n = 4
    sh = torch.zeros(n, 16, 3)
    for k in range(16):
        for c in range(3):
            sh[:, k, c] = 100 * c + k
    scene = random_gaussians(n=n)
    scene.sh = sh
    data = write_ply(tmp_path / "scene.ply", scene).read_bytes()
    header, body = data.split(b"end_header\n")
    lines = header.decode().splitlines()
    assert lines[:2] == ["ply", "format binary_little_endian 1.0"] and f"element vertex {n}" in lines
    names = [line.split()[2] for line in lines if line.startswith("property float")]
    assert names == ply_property_names(3)
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[-8:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    table = np.frombuffer(body, dtype=np.dtype([(name, "<f4") for name in names]))
    assert (table["f_rest_0"] == 1).all() and (table["f_rest_14"] == 15).all()    # red, bands 1..15
    assert (table["f_rest_15"] == 101).all() and (table["f_rest_44"] == 215).all()  # then green, then blue
    assert (table["f_dc_1"] == 100).all()
    assert np.array_equal(table["rot_0"], scene.quats_wxyz[:, 0].numpy())          # w first
    assert np.array_equal(table["opacity"], scene.opacity_logits.numpy())            # logits, not 0..1
    assert (table["nx"] == 0).all()


def test_ply_with_extra_properties_and_trailing_elements_still_reads(tmp_path):
    scene = random_gaussians(n=3, degree=0)
    names = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
             "rot_0", "rot_1", "rot_2", "rot_3", "extra"]
    values = np.concatenate([scene.means, scene.sh[:, 0], scene.opacity_logits[:, None], scene.log_scales,
                             scene.quats_wxyz, np.full((3, 1), 7.0)], axis=1).astype("<f8")
    header = ["ply", "format binary_little_endian 1.0", "element vertex 3",
              *[f"property double {n}" for n in names], "element camera 0", "property float fx", "end_header"]
    path = tmp_path / "other.ply"
    path.write_bytes(("\n".join(header) + "\n").encode() + values.tobytes())
    back = read_ply(path)
    assert torch.allclose(back.means, scene.means) and back.sh_degree == 0


def test_splat_round_trip_is_exact_up_to_its_8_bit_colours_and_rotations(tmp_path):
    scene = random_gaussians(n=200, degree=2)
    back = read_splat(write_splat(tmp_path / "scene.splat", scene))
    assert back.sh_degree == 0 and len(back) == len(scene)
    # .splat reorders by size x opacity: match records by position
    order = [int(torch.cdist(back.means[i:i + 1], scene.means).argmin()) for i in range(len(back))]
    assert sorted(order) == list(range(len(scene)))
    original = scene.to("cpu")
    original.means, original.log_scales, original.quats_wxyz, original.opacity_logits, original.sh = (
        getattr(scene, name)[order] for name in ("means", "log_scales", "quats_wxyz", "opacity_logits", "sh"))
    assert torch.equal(back.means, original.means)
    assert torch.allclose(back.log_scales, original.log_scales, atol=1e-6)
    colours = (0.5 + SH_C0 * original.sh[:, 0]).clamp(0, 1)
    assert torch.allclose(back.base_colors(), colours, atol=0.5 / 255 + 1e-6)
    assert torch.allclose(back.opacities(), original.opacities(), atol=0.5 / 255 + 1e-6)
    unit = torch.nn.functional.normalize(original.quats_wxyz, dim=1)
    alignment = (torch.nn.functional.normalize(back.quats_wxyz, dim=1) * unit).sum(1).abs()
    assert alignment.min() > 0.999


def test_splat_records_are_32_bytes_largest_and_most_opaque_first(tmp_path):
    scene = random_gaussians(n=30, degree=0)
    data = write_splat(tmp_path / "s.splat", scene).read_bytes()
    assert len(data) == 32 * 30 and SPLAT_RECORD.itemsize == 32
    records = np.frombuffer(data, SPLAT_RECORD)
    importance = records["scale"].prod(axis=1) * records["rgba"][:, 3]
    assert (np.diff(importance) <= 1e-6 * importance.max() + 1e-3).all()


def test_read_scene_picks_the_format_from_the_content(tmp_path):
    scene = random_gaussians(n=5, degree=1)
    write_ply(tmp_path / "a.ply", scene)
    (tmp_path / "renamed.bin").write_bytes((tmp_path / "a.ply").read_bytes())
    write_splat(tmp_path / "b.splat", scene)
    assert read_scene(tmp_path / "renamed.bin").sh_degree == 1
    assert read_scene(tmp_path / "b.splat").sh_degree == 0
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_scene(tmp_path / "missing.ply")


@pytest.mark.parametrize("damage, message", [
    (lambda data: data[: len(data) - 10], "truncated"),
    (lambda data: b"PK\x03\x04" + data, "not a PLY"),
    (lambda data: data.replace(b"end_header", b"end_hxader"), "never ends"),
    (lambda data: data.replace(b"property float opacity", b"property float opacitx"), "missing opacity"),
    (lambda data: data.replace(b"binary_little_endian", b"ascii"), "ascii PLY"),
    (lambda data: data.replace(b"property float nx", b"property list uchar int nx"), "list properties"),
    (lambda data: data.replace(b"element vertex", b"element chunk 1\nproperty float a\nelement vertex"),
     "vertex element first"),
])
def test_damaged_ply_files_are_refused_with_the_reason(tmp_path, damage, message):
    path = write_ply(tmp_path / "scene.ply", random_gaussians(n=8, degree=1))
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ValueError, match=message):
        read_scene(path)


def test_a_ply_holding_nan_is_refused(tmp_path):
    scene = random_gaussians(n=4, degree=0)
    scene.means[2, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        read_ply(write_ply(tmp_path / "nan.ply", scene))


def test_a_splat_file_of_the_wrong_size_is_refused(tmp_path):
    path = tmp_path / "x.splat"
    path.write_bytes(b"\0" * 33)
    with pytest.raises(ValueError, match="multiple of 32"):
        read_scene(path)


def test_gaussians_check_their_shapes():
    scene = random_gaussians(n=3)
    with pytest.raises(ValueError, match="log_scales"):
        Gaussians(scene.means, scene.log_scales[:2], scene.quats_wxyz, scene.opacity_logits, scene.sh)
    with pytest.raises(ValueError, match="degree"):
        Gaussians(scene.means, scene.log_scales, scene.quats_wxyz, scene.opacity_logits, scene.sh[:, :5])
