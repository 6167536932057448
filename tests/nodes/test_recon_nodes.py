"""The Gaussian-splat nodes inside a real ComfyUI (0.3.75, or COMFYUI_PATH): files land in ComfyUI's folders,
the viewer's UI contract holds, loading and previewing work, bad inputs get specific errors."""
import importlib
import json
import os

import numpy as np
import pytest
import torch

from tests.nodes.conftest import PACK_NAME


def pack_module(name):
    return importlib.import_module(f"{PACK_NAME}.dimx_core.{name}")


@pytest.fixture(scope="module")
def orbit(pack):
    synthetic, render = pack_module("recon.synthetic"), pack_module("recon.render")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    trajectory = synthetic.orbit_rig(8, 30.0, 48, 32)
    frames = render.render_views(synthetic.textured_ball(300), trajectory)
    torch.set_num_threads(threads)
    return frames, trajectory


def test_reconstruct_node_returns_a_scene_and_a_report(node_classes, orbit):
    frames, trajectory = orbit
    with torch.inference_mode():  # as ComfyUI's executor runs every node; upstream IMAGEs are inference tensors
        gaussians, report = node_classes["DimensionXGaussianReconstruct"].execute(
            frames=frames.clone(), trajectory=trajectory, preset="fast", poses="trajectory", seed=0, steps=3,
            initial_points=200).result
    started = len(pack_module("recon.init").cube_points(trajectory, 200, np.random.default_rng(0)))  # seen ones
    assert 50 < len(gaussians) == started and gaussians.cameras is not None and len(gaussians.cameras) == 8
    assert "pose source: trajectory" in report and "rasterizer: torch" in report and "Gaussians:" in report


def test_reconstruct_node_names_the_mismatch(node_classes, orbit):
    frames, trajectory = orbit
    with pytest.raises(ValueError, match="got 7 frames but the trajectory has 8 poses"):
        node_classes["DimensionXGaussianReconstruct"].execute(
            frames=frames[:7], trajectory=trajectory, preset="fast", poses="trajectory", seed=0, steps=1)
    with pytest.raises(ValueError, match="mask must be"):
        node_classes["DimensionXGaussianReconstruct"].execute(
            frames=frames, trajectory=trajectory, preset="fast", poses="trajectory", seed=0, steps=1,
            mask=torch.ones(3, 32, 48))


def test_save_writes_each_format_with_cameras_and_returns_the_viewer_contract(node_classes, comfy_folders, pack):
    scene = pack_module("recon.synthetic").textured_ball(50)
    scene.cameras = pack_module("recon.synthetic").orbit_rig(4, 20.0, 32, 24)
    save = node_classes["DimensionXSaveGaussians"]
    assert save.GET_SCHEMA().inputs[2].options == ["ply", "splat", "spz"]
    output = save.execute(gaussians=scene, filename_prefix="tests/ball", format="ply")
    folder = comfy_folders / "output" / "tests"
    assert sorted(os.listdir(folder)) == ["ball_00001_.ply", "ball_00001_.transforms.json"]
    assert output.result[0] == str(folder / "ball_00001_.ply")
    assert output.ui == {"dimx_scene": [{
        "scene": {"filename": "ball_00001_.ply", "subfolder": "tests", "type": "output"},
        "cameras": {"filename": "ball_00001_.transforms.json", "subfolder": "tests", "type": "output"},
        "kind": "3d"}]}
    assert json.loads((folder / "ball_00001_.transforms.json").read_text())["camera_model"] == "OPENCV"
    compact = save.execute(gaussians=scene, filename_prefix="tests/ball", format="spz")
    assert compact.result[0] == str(folder / "ball_00002_.spz") and (folder / "ball_00002_.transforms.json").is_file()
    shown = compact.ui["dimx_scene"][0]  # the viewer reads PLY: a copy in temp/
    assert shown["scene"]["type"] == "temp" and shown["scene"]["filename"].endswith(".ply")
    assert (comfy_folders / "temp" / shown["scene"]["subfolder"] / shown["scene"]["filename"]).is_file()
    reread = pack_module("recon.files").load_scene(folder / "ball_00002_.spz")
    assert len(reread) == 50 and len(reread.cameras) == 4
    with pytest.raises(ValueError, match="format must be one of ply, splat, spz, got 'obj'"):
        save.execute(gaussians=scene, filename_prefix="tests/ball", format="obj")


def test_load_lists_input_and_output_scenes_and_reads_cameras_back(node_classes, comfy_folders, pack):
    files = pack_module("recon.files")
    scene = pack_module("recon.synthetic").textured_ball(40)
    scene.cameras = pack_module("recon.synthetic").orbit_rig(3, 20.0, 32, 24)
    files.write_splat(comfy_folders / "input" / "mine.splat", scene)
    files.write_spz(comfy_folders / "input" / "mine.spz", scene)
    node_classes["DimensionXSaveGaussians"].execute(gaussians=scene, filename_prefix="DimensionX/s", format="ply")
    (comfy_folders / "input" / "notes.txt").write_text("not a scene")
    load = node_classes["DimensionXLoadGaussians"]
    options = load.GET_SCHEMA().inputs[0].options
    assert options == ["mine.splat", "mine.spz", "DimensionX/s_00001_.ply [output]"]
    loaded = load.execute(scene="DimensionX/s_00001_.ply [output]").result[0]
    assert torch.equal(loaded.means, scene.means) and len(loaded.cameras) == 3
    assert load.execute(scene="mine.splat").result[0].sh_degree == 0
    assert len(load.execute(scene="mine.spz").result[0]) == 40
    with pytest.raises(ValueError, match=r"scene: '../secret.ply' is not one of the \d+ files this node offers"):
        load.execute(scene="../secret.ply")


def test_preview_renders_a_turntable_and_the_fitted_cameras(node_classes, comfy_folders, pack):
    scene = pack_module("recon.synthetic").textured_ball(200)
    preview = node_classes["DimensionXPreviewGaussians"]
    output = preview.execute(gaussians=scene, path="turntable", frames=4, width=40, height=32)
    images = output.result[0]
    assert images.shape == (4, 32, 40, 3) and images.max() > 0.2  # the ball is in view
    entry = output.ui["dimx_scene"][0]
    assert entry["kind"] == "3d" and entry["scene"]["type"] == "temp" and entry["cameras"]["type"] == "temp"
    assert (comfy_folders / "temp" / entry["scene"]["subfolder"] / entry["scene"]["filename"]).is_file()
    with pytest.raises(ValueError, match="needs a trajectory input or a scene with fitted cameras"):
        preview.execute(gaussians=scene, path="trajectory", frames=4, width=40, height=32)
    scene.cameras = pack_module("recon.synthetic").orbit_rig(3, 20.0, 24, 16)
    flight = preview.execute(gaussians=scene, path="trajectory", frames=4, width=40, height=32).result[0]
    assert flight.shape == (3, 16, 24, 3)
    # the first fitted camera looks straight at the ball: its centre pixel is not background
    assert flight[0, 8, 12].sum() > 0.3


def test_splat_converter_exists_exactly_where_the_core_type_does(node_classes, pack):
    from comfy_api.latest import io

    if not hasattr(io, "Splat"):
        assert "DimensionXGaussiansToSplat" not in node_classes
        return
    scene = pack_module("recon.synthetic").textured_ball(30)
    splat = node_classes["DimensionXGaussiansToSplat"].execute(gaussians=scene).result[0]
    assert splat.positions.shape == (1, 30, 3) and splat.opacities.shape == (1, 30, 1)
    assert torch.allclose(splat.scales[0], scene.log_scales.exp())
    assert np.allclose(splat.rotations[0].norm(dim=-1).numpy(), 1.0, atol=1e-6)


def test_core_splat_comes_back_as_the_same_gaussians(node_classes, pack):
    from comfy_api.latest import io

    if not hasattr(io, "Splat"):
        assert "DimensionXSplatToGaussians" not in node_classes
        return
    from comfy_api.latest import Types

    scene = pack_module("recon.synthetic").textured_ball(30)
    scene.quats_wxyz = torch.nn.functional.normalize(scene.quats_wxyz, dim=-1)
    splat = node_classes["DimensionXGaussiansToSplat"].execute(gaussians=scene).result[0]
    back = node_classes["DimensionXSplatToGaussians"].execute(splat=splat).result[0]
    for name in ("means", "log_scales", "quats_wxyz", "opacity_logits", "sh"):
        torch.testing.assert_close(getattr(back, name), getattr(scene, name), rtol=1e-5, atol=1e-5)
    # a padded batch of two: the second scene is its first 12 rows
    two = Types.SPLAT(*(torch.cat([t, t]) for t in (splat.positions, splat.scales, splat.rotations,
                                                      splat.opacities, splat.sh)), counts=torch.tensor([30, 12]))
    second = node_classes["DimensionXSplatToGaussians"].execute(splat=two, index=1).result[0]
    assert len(second) == 12 and torch.allclose(second.means, scene.means[:12])
    with pytest.raises(ValueError, match="index 2 is outside this SPLAT batch of 2 scene"):
        node_classes["DimensionXSplatToGaussians"].execute(splat=two, index=2)
