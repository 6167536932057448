"""The 4D splat nodes inside a real ComfyUI: Gaussian4DReconstruct picks Multi-View Generate's cameras, Save writes
the 4D folder and the viewer contract, Load reads it back, Preview flies through camera and time."""
import json
import os

import numpy as np
import pytest
import torch

from tests.nodes.test_recon_nodes import pack_module

PATH_POSES, VIEWS, TIMES = 9, 4, 2


@pytest.fixture(scope="module")
def multiview(pack):
    """4 cameras kept from a 9-pose orbit (frames 0, 3, 5, 8), 2 times of the moving ball, 32x24."""
    synthetic = pack_module("recon.synthetic")
    path = synthetic.orbit_rig(PATH_POSES, 40.0, 32, 24)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cameras = pack_module("recon.train4d").kept_cameras(path, VIEWS)
        return synthetic.dynamic_frames(cameras, [0.0, 1.0], 600), path
    finally:
        torch.set_num_threads(threads)


def deformable_scene():
    deform, synthetic = pack_module("recon.deform"), pack_module("recon.synthetic")
    scene = synthetic.textured_ball(60)
    scene.cameras = synthetic.orbit_rig(3, 20.0, 32, 24)
    config = deform.FieldConfig((-1.0, -1.0, 1.0), (1.0, 1.0, 3.0), reference_time=0.0, resolutions=(8,),
                                time_resolution=3, features=4, hidden=8)
    field = deform.DeformationField(config, seed=1)
    with torch.no_grad():
        for parameter in field.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.3)
    scene.deformation = deform.Deformation(field.requires_grad_(False), (0.0, 0.5, 1.0))
    return scene


def test_4d_reconstruct_node_fits_the_kept_cameras_and_returns_a_deformable_scene(node_classes, multiview):
    frames, path = multiview
    with torch.inference_mode():  # as ComfyUI's executor runs every node
        gaussians, report = node_classes["DimensionXGaussian4DReconstruct"].execute(
            multiview=frames.clone(), views=VIEWS, times=TIMES, trajectory=path, reference_time=1, preset="fast",
            poses="trajectory", seed=0, steps=4, initial_points=80).result
    assert gaussians.deformation.times == (0.0, 1.0) and gaussians.deformation.reference_time == 1.0
    assert len(gaussians.cameras) == VIEWS
    assert np.allclose(gaussians.cameras.c2w_opencv[0], path.c2w_opencv[0])
    assert np.allclose(gaussians.cameras.c2w_opencv, path.c2w_opencv[[0, 3, 5, 8]], atol=1e-2)
    assert "4 cameras x 2 times, warm-up 1 steps at time 1" in report and "rasterizer: torch" in report


def test_4d_reconstruct_node_names_what_does_not_fit(node_classes, multiview):
    frames, path = multiview
    node = node_classes["DimensionXGaussian4DReconstruct"]
    common = dict(trajectory=path, preset="fast", poses="trajectory", seed=0, steps=2, initial_points=40)
    with pytest.raises(ValueError, match="got 8 frames but views x times is 4 x 3 = 12"):
        node.execute(multiview=frames, views=VIEWS, times=3, reference_time=0, **common)
    with pytest.raises(ValueError, match="reference_time must be a time index from 0 to 1"):
        node.execute(multiview=frames, views=VIEWS, times=TIMES, reference_time=2, **common)
    with pytest.raises(ValueError, match="views is 12 but the trajectory has only 9 poses"):
        node.execute(multiview=frames.repeat(3, 1, 1, 1)[:24], views=12, times=TIMES, reference_time=0, **common)


def test_save_writes_the_4d_folder_and_the_viewer_contract_and_load_reads_it_back(node_classes, comfy_folders):
    scene = deformable_scene()
    output = node_classes["DimensionXSaveGaussians"].execute(gaussians=scene, filename_prefix="tests/ball4d",
                                                             format="ply")
    folder = comfy_folders / "output" / "tests" / "ball4d_00001_"
    assert output.result[0] == str(folder / "scene.dimx4d.json")
    assert output.ui == {"dimx_scene": [{
        "scene": {"filename": "scene.dimx4d.json", "subfolder": "tests/ball4d_00001_", "type": "output"},
        "cameras": {"filename": "canonical.transforms.json", "subfolder": "tests/ball4d_00001_", "type": "output"},
        "kind": "4d"}]}
    assert sorted(os.listdir(folder)) == [
        "canonical.ply", "canonical.transforms.json", "deformation.json",
        "deformation.safetensors", "scene.dimx4d.json", "time_0000.ply", "time_0001.ply", "time_0002.ply"]
    manifest = json.loads((folder / "scene.dimx4d.json").read_text())
    assert manifest["frames"][1] == {"filename": "time_0001.ply", "subfolder": "tests/ball4d_00001_",
                                     "type": "output"}
    again = node_classes["DimensionXSaveGaussians"].execute(gaussians=scene, filename_prefix="tests/ball4d",
                                                            format="spz")
    assert again.result[0] == str(comfy_folders / "output" / "tests" / "ball4d_00002_" / "scene.dimx4d.json")
    assert sorted(os.listdir(comfy_folders / "output" / "tests" / "ball4d_00002_"))[:2] == ["canonical.spz",
                                                                                            "canonical.transforms.json"]
    assert again.ui["dimx_scene"][0]["scene"]["type"] == "temp"  # the viewer plays a PLY copy

    load = node_classes["DimensionXLoadGaussians"]
    options = load.GET_SCHEMA().inputs[0].options
    assert "tests/ball4d_00001_/scene.dimx4d.json [output]" in options
    assert "tests/ball4d_00001_/time_0002.ply [output]" in options  # one moment, as a static scene
    loaded = load.execute(scene="tests/ball4d_00001_/scene.dimx4d.json [output]").result[0]
    at = pack_module("recon.deform").gaussians_at
    assert torch.equal(at(loaded, 0.3).means, at(scene, 0.3).means) and len(loaded.cameras) == 3


def test_preview_flies_through_a_4d_scene_each_frame_at_its_own_time(node_classes, comfy_folders):
    scene = deformable_scene()
    render, at = pack_module("recon.render"), pack_module("recon.deform").gaussians_at
    output = node_classes["DimensionXPreviewGaussians"].execute(gaussians=scene, path="trajectory", frames=4,
                                                                width=40, height=32)
    images = output.result[0]
    assert images.shape == (3, 24, 32, 3)
    for index, t in enumerate((0.0, 0.5, 1.0)):
        camera = type(scene.cameras)(scene.cameras.c2w_opencv[index:index + 1], scene.cameras.intrinsics[:1], 32, 24)
        assert torch.allclose(images[index], render.render_views(at(scene, t), camera)[0])
    entry = output.ui["dimx_scene"][0]
    assert entry["kind"] == "4d" and entry["scene"]["type"] == "temp"
    assert entry["cameras"]["filename"] == "preview.transforms.json"
    folder = comfy_folders / "temp" / entry["scene"]["subfolder"]
    assert (folder / "scene.dimx4d.json").is_file() and (folder / "preview.transforms.json").is_file()


def test_a_cancelled_4d_save_leaves_no_folder_behind(node_classes, comfy_folders):
    import comfy.model_management as model_management

    model_management.interrupt_current_processing(True)
    try:
        with pytest.raises(model_management.InterruptProcessingException):
            node_classes["DimensionXSaveGaussians"].execute(gaussians=deformable_scene(), filename_prefix="tests/c",
                                                            format="ply")
    finally:
        model_management.interrupt_current_processing(False)
    assert not (comfy_folders / "output" / "tests").exists() or os.listdir(comfy_folders / "output" / "tests") == []
