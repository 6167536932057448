"""The nodes against careless or hostile prompt values, inside a real ComfyUI 0.3.75 process: every widget value is
checked against the node's own schema, file inputs stay inside their folders, result names are ones a loader
lists, model folders may be links."""
import os
import re
import shutil

import pytest

from dimx_core.camera import plan
from dimx_core.camera.formats import write_transforms_json

PLANNER = dict(pattern="orbit_left", frames=9, magnitude=30.0, radius=2.0, elevation=0.0, fov_deg=60.0, width=720,
               height=480, easing="linear")


def test_every_node_checks_its_widget_values_itself(node_classes):
    from comfy_api.internal import first_real_override

    for node_id, node in node_classes.items():
        assert first_real_override(node, "validate_inputs") is not None, node_id
        assert node.validate_inputs() is True, node_id  # nothing given: nothing to refuse (links come as None)


@pytest.mark.parametrize("node_id, values, problem", [
    ("DimensionXLoadVideoModel", dict(precision="fp64"), "precision: 'fp64' is not one of its options ('bf16', "
                                                         "'fp16', 'fp32')"),
    ("DimensionXPreviewGaussians", dict(gaussians=None, path="bogus", frames=36),
     "path: 'bogus' is not one of its options ('turntable', 'trajectory')"),
    ("DimensionXLoadDirectorLoRA", dict(strength=float("nan")), "strength must be a finite number, got nan"),
    ("DimensionXTrajectoryPlanner", dict(PLANNER, frames=5000), "frames must be between 0 and 1024, got 5000"),
    ("DimensionXTrajectoryPlanner", dict(PLANNER, magnitude=float("inf")), "magnitude must be a finite number"),
    ("DimensionXSaveGaussians", dict(filename_prefix="scene\x00.ply"), "filename_prefix contains a NUL character"),
], ids=["combo", "combo-preview", "nan-strength", "int-range", "inf-float", "nul-string"])
def test_values_outside_the_schema_are_refused_before_the_run(node_classes, node_id, values, problem):
    assert problem in node_classes[node_id].validate_inputs(**values)


def test_values_inside_the_schema_pass(node_classes):
    assert node_classes["DimensionXTrajectoryPlanner"].validate_inputs(**PLANNER) is True
    assert node_classes["DimensionXLoadVideoModel"].validate_inputs(precision="fp32") is True


def test_file_links_leading_outside_the_input_folder_are_not_offered_or_read(node_classes, comfy_folders, pack):
    secret = comfy_folders / "secret"
    secret.mkdir()
    write_transforms_json(secret / "transforms.json", plan("pan_left", 3, 20.0))
    (secret / "scene.ply").write_bytes(b"ply\n")
    (comfy_folders / "input" / "link_transforms.json").symlink_to(secret / "transforms.json")
    (comfy_folders / "input" / "scene.ply").symlink_to(secret / "scene.ply")
    load = node_classes["DimensionXTrajectoryLoad"]
    assert next(i for i in load.GET_SCHEMA().inputs if i.id == "file").options == []
    with pytest.raises(ValueError, match="file: 'link_transforms.json' is not one of the 0 files this node offers"):
        load.execute(file="link_transforms.json")
    with pytest.raises(ValueError, match="file: '../secret/transforms.json' is not one of"):
        load.execute(file="../secret/transforms.json")
    gaussians = node_classes["DimensionXLoadGaussians"]
    assert next(i for i in gaussians.GET_SCHEMA().inputs if i.id == "scene").options == []
    with pytest.raises(ValueError, match="scene: 'scene.ply' is not one of the 0 files"):
        gaussians.execute(scene="scene.ply")
    host = pack.nodes.host
    with pytest.raises(ValueError, match="leads outside"):  # listed once, swapped for a link afterwards
        host.listed_file("scene.ply", ["scene.ply"], "scene")


def test_a_model_folder_linked_into_the_model_folder_is_listed_and_loads(node_classes, tiny_model_dir, tmp_path):
    import folder_paths

    saved = list(folder_paths.folder_names_and_paths["dimensionx"][0])
    elsewhere = tmp_path / "other_disk" / "CogVideoX-5b-I2V"
    shutil.copytree(tiny_model_dir, elsewhere)
    models = tmp_path / "models_dimensionx"
    models.mkdir()
    (models / "cogvideox").symlink_to(elsewhere, target_is_directory=True)
    (models / "loop").symlink_to(models, target_is_directory=True)  # a link loop must not hang the listing
    folder_paths.add_model_folder_path("dimensionx", str(models), is_default=True)
    try:
        schema = node_classes["DimensionXLoadVideoModel"].GET_SCHEMA()
        assert "cogvideox" in schema.inputs[0].options
        assert not any(name.startswith("loop") for name in schema.inputs[0].options)
        model, info = node_classes["DimensionXLoadVideoModel"].execute("cogvideox", "fp32").result
        assert "144x96, 17 frames" in info and str(models / "cogvideox") in info
    finally:
        folder_paths.folder_names_and_paths["dimensionx"][0][:] = saved


def test_export_folders_get_the_users_folder_mode(node_classes, comfy_folders):
    previous = os.umask(0o022)
    try:
        folder = node_classes["DimensionXTrajectoryExport"].execute(
            trajectory=plan("pan_left", 3, 20.0), format="colmap", filename_prefix="dimx/modes").result[0]
    finally:
        os.umask(previous)
    assert os.stat(folder).st_mode & 0o777 == 0o755


@pytest.mark.parametrize("prefix, message", [
    ("", "filename_prefix '' gives the file name '.'; a result needs a name that does not start with '.'"),
    ("shots/.hidden", "gives the file name '.hidden'"),
    ("a\x00b", "filename_prefix 'a\\x00b' contains a NUL character"),
    ("x" * 240, "Shorten it by"),
    ("../outside", "leads outside"),
], ids=["empty", "hidden", "nul", "too-long", "outside"])
def test_result_prefixes_that_no_loader_would_list_are_refused(node_classes, comfy_folders, prefix, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        node_classes["DimensionXTrajectoryExport"].execute(trajectory=plan("pan_left", 3, 20.0),
                                                           format="transforms.json", filename_prefix=prefix)
    assert not list((comfy_folders / "output").rglob("*"))


@pytest.mark.parametrize("prefix, folder", [("y" * 200, "y" * 200 + "_00001_"), ("shots/", "shots_00001_")])
def test_a_long_prefix_that_fits_with_its_temporary_name_and_a_folder_name_are_written(node_classes, comfy_folders,
                                                                                       prefix, folder):
    node_classes["DimensionXTrajectoryExport"].execute(trajectory=plan("pan_left", 3, 20.0), format="transforms.json",
                                                       filename_prefix=prefix)
    assert (comfy_folders / "output" / folder / "transforms.json").is_file()
