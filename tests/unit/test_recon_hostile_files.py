"""Scene files and fits fed garbage (issue 13): each gets a clear error naming the file and what is wrong, or a
notice where the result is still valid, instead of loading, rendering black or crashing without a cause."""
import json

import pytest
import torch
from safetensors.torch import save_file

from dimx_core.recon.deform import FieldConfig, parameter_shapes
from dimx_core.recon.files import read_ply, read_scene, write_ply, write_splat
from dimx_core.recon.files4d import load_scene_4d, save_scene_4d
from dimx_core.recon.gaussians import Gaussians
from dimx_core.recon.render import render_views, turntable
from dimx_core.recon.synthetic import orbit_rig
from dimx_core.recon.train import ReconstructOptions, reconstruct
from tests.unit.recon_scenes import one_thread  # noqa: F401 (autouse fixture)
from tests.unit.test_recon_4d import deformable_ball, small_field
from tests.unit.test_recon_files import random_gaussians


def ply_with_count(tmp_path, count: str):
    path = write_ply(tmp_path / "scene.ply", random_gaussians(n=4, degree=0))
    path.write_bytes(path.read_bytes().replace(b"element vertex 4", f"element vertex {count}".encode()))
    return path


@pytest.mark.parametrize("count, message", [("0", "holds no Gaussians"), ("-3", "a count of zero or more"),
                                            ("many", "a count of zero or more")])
def test_a_ply_with_no_or_a_negative_vertex_count_is_refused(tmp_path, count, message):
    with pytest.raises(ValueError, match=message):
        read_ply(ply_with_count(tmp_path, count))


def test_degenerate_gaussians_are_refused_on_load_render_and_save(tmp_path):
    zero_rotation = random_gaussians(n=6, degree=0)
    zero_rotation.quats_wxyz[2] = 0.0
    huge = random_gaussians(n=6, degree=0)
    huge.log_scales[4, 1] = 90.0  # exp(90) overflows float32: the splat would cover everything, or nothing
    cameras = orbit_rig(2, 10.0, 32, 24)
    for scene, message in ((zero_rotation, "1 of 6 Gaussians with a zero quaternion"),
                           (huge, "1 of 6 Gaussians whose log scale exceeds 44")):
        with pytest.raises(ValueError, match=message):
            render_views(scene, cameras)
        with pytest.raises(ValueError, match=message):
            write_ply(tmp_path / "bad.ply", scene)
    # a file written by another tool with a zero quaternion: refused on load, naming the file
    path = write_ply(tmp_path / "scene.ply", random_gaussians(n=6, degree=0))
    data = bytearray(path.read_bytes())
    header_end = data.index(b"end_header\n") + len(b"end_header\n")
    record = 4 * 17  # 17 float properties per Gaussian at degree 0; rot_0..3 are the last four
    data[header_end + record - 16:header_end + record] = bytes(16)
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"scene\.ply' has 1 of 6 Gaussians with a zero quaternion"):
        read_scene(path)


def test_a_splat_whose_rotations_are_all_zero_bytes_is_refused(tmp_path):
    path = write_splat(tmp_path / "scene.splat", random_gaussians(n=3, degree=0))
    data = bytearray(path.read_bytes())
    for record in range(3):
        data[32 * record + 28:32 * record + 32] = bytes([128] * 4)  # (q - 128) / 128 = 0
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="3 of 3 Gaussians with a zero quaternion"):
        read_scene(path)


def test_previewing_an_empty_scene_says_it_is_empty():
    empty = Gaussians(torch.zeros(0, 3), torch.zeros(0, 3), torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, 1, 3))
    with pytest.raises(ValueError, match="the scene holds no Gaussians"):
        turntable(empty, 4, 32, 24)
    with pytest.raises(ValueError, match="the scene holds no Gaussians"):
        render_views(empty, orbit_rig(2, 10.0, 32, 24))


def test_a_fit_on_all_black_frames_says_so():
    cameras = orbit_rig(6, 20.0, 32, 24)
    result = reconstruct(torch.zeros(6, 24, 32, 3), cameras, ReconstructOptions(
        preset="fast", poses="trajectory", confidence="none", steps=3, initial_points=40))
    assert "WARNING: every frame is black" in result.report.as_text()
    grey = reconstruct(torch.full((6, 24, 32, 3), 0.5), cameras, ReconstructOptions(
        preset="fast", poses="trajectory", confidence="none", steps=3, initial_points=40))
    assert "WARNING: every frame is one flat colour (0.500)" in grey.report.as_text()


def test_a_deformation_config_claiming_huge_planes_is_refused_before_allocating(tmp_path, monkeypatch):
    manifest = save_scene_4d(tmp_path / "ball", deformable_ball())
    config_path = tmp_path / "ball" / "deformation.json"
    config = json.loads(config_path.read_text())
    config["resolutions"] = [40000, 40000]
    config_path.write_text(json.dumps(config))
    import dimx_core.recon.deform as deform

    def no_field(*args, **kwargs):
        raise AssertionError("a field was built before its weights were checked")

    monkeypatch.setattr(deform, "DeformationField", no_field)
    with pytest.raises(ValueError, match=r"does not match its config.*planes\.0.*\(1, 4, 40000, 40000\)"):
        load_scene_4d(manifest)


def test_the_shapes_computed_from_a_config_are_the_fields_own():
    field = small_field()
    assert parameter_shapes(field.config) == {name: tuple(v.shape) for name, v in field.state_dict().items()}
    wide = FieldConfig((-1.0,) * 3, (1.0,) * 3, resolutions=(40000,), features=32)
    assert parameter_shapes(wide)["planes.0"] == (1, 32, 40000, 40000)  # computed, never allocated


@pytest.mark.parametrize("damage, message", [
    (lambda folder: (folder / "deformation.safetensors").write_bytes(
        (folder / "deformation.safetensors").read_bytes()[:100]), r"deformation\.safetensors' is not a readable"),
    (lambda folder: (folder / "deformation.json").write_text("{\"format\": \"dimx-hexplane-field/1\", \"times\": [0]}"),
     r"deformation\.json' is not a readable DimensionX deformation config \(missing key 'bounds_min'\)"),
    (lambda folder: (folder / "deformation.json").write_text("[1, 2"), r"deformation\.json' is not a readable"),
])
def test_a_truncated_or_garbled_deformation_file_is_named(tmp_path, damage, message):
    manifest = save_scene_4d(tmp_path / "ball", deformable_ball())
    damage(tmp_path / "ball")
    with pytest.raises(ValueError, match=message):
        load_scene_4d(manifest)


def test_weights_of_another_shape_are_refused_naming_both_files(tmp_path):
    manifest = save_scene_4d(tmp_path / "ball", deformable_ball())
    save_file({"planes.0": torch.zeros(1, 2, 3, 3)}, str(tmp_path / "ball" / "deformation.safetensors"))
    with pytest.raises(ValueError, match=r"deformation\.safetensors' does not match its config '.*deformation\.json'"):
        load_scene_4d(manifest)


@pytest.mark.parametrize("drop", ["canonical", "field", "times"])
def test_a_manifest_missing_keys_names_what_it_lacks(tmp_path, drop):
    manifest_path = save_scene_4d(tmp_path / "ball", deformable_ball())
    manifest = json.loads(manifest_path.read_text())
    del manifest[drop]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=f"damaged 4D scene manifest: it lacks or garbles '{drop}'"):
        load_scene_4d(manifest_path)
