"""Camera nodes called the way ComfyUI calls them (execute on the class), and the preview route's logic."""
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from dimx_core.camera import plan, split_motion
from dimx_core.camera.genxd import genxd_trajectory
from dimx_core.camera.formats import read_colmap_text, read_transforms_json, write_transforms_json
from tests.synthetic_scene import Room

PLANNER_DEFAULTS = dict(pattern="orbit_left", frames=0, magnitude=30.0, radius=2.0, elevation=0.0, fov_deg=60.0,
                        width=0, height=0, easing="linear", azimuth_start=0.0,
                        azimuth_end=30.0)  # 0: the connected model's, else 49 at 720x480
MODEL_360 = SimpleNamespace(parts=SimpleNamespace(spec=SimpleNamespace(frames=145, width=480, height=320)))


@pytest.fixture
def folders(pack, tmp_path):
    """ComfyUI's input and output folders pointed at a fresh temporary tree."""
    import folder_paths

    saved = folder_paths.get_input_directory(), folder_paths.get_output_directory()
    (tmp_path / "input").mkdir()
    (tmp_path / "output").mkdir()
    folder_paths.set_input_directory(str(tmp_path / "input"))
    folder_paths.set_output_directory(str(tmp_path / "output"))
    yield tmp_path
    folder_paths.set_input_directory(saved[0])
    folder_paths.set_output_directory(saved[1])


def test_planner_outputs_the_plan_and_its_director(node_classes):
    output = node_classes["DimensionXTrajectoryPlanner"].execute(**PLANNER_DEFAULTS | dict(pattern="orbit_up",
                                                                                           frames=13))
    trajectory, director = output.result
    assert director == "orbit_up" and len(trajectory) == 13
    np.testing.assert_allclose(trajectory.c2w_opencv, plan("orbit_up", 13, 30.0).c2w_opencv)


def test_planner_widgets_default_to_the_model_else_the_library_defaults(node_classes):
    node = node_classes["DimensionXTrajectoryPlanner"]
    schema = node.GET_SCHEMA()
    assert {item.id: item.default for item in schema.inputs if item.id != "model"} == PLANNER_DEFAULTS
    without = node.execute(**PLANNER_DEFAULTS).result[0]
    assert (len(without), without.width, without.height) == (49, 720, 480)
    np.testing.assert_allclose(without.c2w_opencv, plan("orbit_left").c2w_opencv)
    loop = node.execute(**PLANNER_DEFAULTS | dict(pattern="orbit_360_right"), model=MODEL_360).result[0]
    assert (len(loop), loop.width, loop.height) == (145, 480, 320)
    np.testing.assert_allclose(loop.c2w_opencv, plan("orbit_360_right", 145, width=480, height=320).c2w_opencv)
    chosen = node.execute(**PLANNER_DEFAULTS | dict(frames=17, width=144), model=MODEL_360).result[0]
    assert (len(chosen), chosen.width, chosen.height) == (17, 144, 320)  # what the user set stays as set


def test_articulated_planner_clips_follow_the_model(node_classes):
    node = node_classes["DimensionXArticulatedPathPlanner"]
    values = dict(pattern="orbit_360_right", total=360.0, max_clip=90.0, frames_per_clip=0, radius=2.0,
                  elevation=0.0, fov_deg=60.0, width=0, height=0)
    whole, clips, director, summary = node.execute(**values, model=MODEL_360).result
    expected = split_motion("orbit_right", 360.0, 90.0, 145, width=480, height=320)
    assert len(clips) == 4 and all(len(clip) == 145 and clip.width == 480 for clip in clips)
    np.testing.assert_allclose(whole.c2w_opencv, expected.combined().c2w_opencv)
    assert director == "orbit_right" and "145 frames each" in summary


def test_planner_plans_genxd_modes_with_genxd_focal_from_the_fov(node_classes):
    planner = node_classes["DimensionXTrajectoryPlanner"]
    forward, director = planner.execute(**PLANNER_DEFAULTS | dict(pattern="genxd_forward", frames=16, elevation=15.0,
                                                                  azimuth_start=-20.0, azimuth_end=20.0,
                                                                  radius=3.0, fov_deg=90.0)).result
    expected = genxd_trajectory("forward", 15.0, (-20.0, 20.0), radius=3.0, focal=0.5, frames=16)  # fx = w/2 at 90
    np.testing.assert_allclose(forward.c2w_opencv, expected.c2w_opencv, atol=1e-12)
    np.testing.assert_allclose(forward.intrinsics[0, 0, 0], 360.0)
    assert director == "" and forward.pattern == "genxd_forward"
    orbit, director = planner.execute(**PLANNER_DEFAULTS | dict(pattern="genxd_orbit", frames=8, azimuth_start=30.0,
                                                                azimuth_end=-30.0)).result
    assert director == "orbit_right"
    np.testing.assert_allclose(orbit.c2w_opencv, genxd_trajectory("orbit", 0.0, (30, -30), frames=8).c2w_opencv,
                               atol=1e-12)
    with pytest.raises(ValueError, match="multiple of 4"):
        planner.execute(**PLANNER_DEFAULTS | dict(pattern="genxd_forward", frames=10))


def test_planner_refuses_bad_values_with_the_librarys_message(node_classes):
    with pytest.raises(ValueError, match="radius must be > 0"):
        node_classes["DimensionXTrajectoryPlanner"].execute(**PLANNER_DEFAULTS | dict(radius=-2.0))


def test_preview_route_logic_answers_the_contract(pack):
    status, body = pack.nodes.routes.trajectory_preview({"pattern": "orbit_right", "frames": "9", "magnitude": "45",
                                                          "radius": "3", "elevation": "10", "fov_deg": "50",
                                                          "width": "640", "height": "480", "easing": "ease"})
    assert status == 200
    assert set(body) == {"pattern", "director", "width", "height", "c2w_opencv", "intrinsics", "pivot"}
    expected = plan("orbit_right", 9, 45.0, radius=3.0, elevation=10.0, fov_deg=50.0, width=640, height=480,
                    easing="ease")
    np.testing.assert_allclose(body["c2w_opencv"], expected.c2w_opencv)
    np.testing.assert_allclose(body["intrinsics"], expected.intrinsics)
    assert (body["pattern"], body["director"], body["width"], body["height"], body["pivot"]) == (
        "orbit_right", "orbit_right", 640, 480, [0.0, 0.0, 3.0])
    assert json.loads(json.dumps(body)) == body  # plain JSON types only
    status, body = pack.nodes.routes.trajectory_preview({"pattern": "pan_left"})  # missing: widget defaults
    assert status == 200 and len(body["c2w_opencv"]) == 49 and body["pivot"] is None


@pytest.mark.parametrize("query, message", [
    ({"pattern": "spin"}, "pattern must be one of truck_left"),
    ({"frames": "-1"}, "frames must be between 0 and 1024, got -1"),
    ({"frames": "1"}, "frames must be a whole number from 2 to 1024, got 1"),
    ({"frames": "ten"}, "frames must be a whole number, got 'ten'"),
    ({"magnitude": "nan"}, "magnitude must be a finite number"),
    ({"radius": "-1"}, "radius must be between 0.01 and 1000, got -1"),
    ({"easing": "bounce"}, "easing must be one of linear, ease, got 'bounce'"),
    ({"pattern": "dolly_in", "magnitude": "5"}, "would reach or pass the pivot"),
    ({"zoom": "2"}, "unknown parameter(s) zoom; expected: pattern, frames"),
])
def test_preview_route_logic_refuses_bad_parameters(pack, query, message):
    status, body = pack.nodes.routes.trajectory_preview(query)
    assert status == 400 and set(body) == {"error"} and message in body["error"]


def test_routes_are_not_registered_without_a_server(pack):
    assert pack.nodes.routes.register() is False


def test_articulated_planner_outputs_path_clips_and_director(node_classes):
    output = node_classes["DimensionXArticulatedPathPlanner"].execute(
        pattern="orbit_left", total=120.0, max_clip=30.0, frames_per_clip=13, radius=2.0, elevation=0.0,
        fov_deg=60.0, width=720, height=480)
    path, clips, director, summary = output.result
    assert director == "orbit_left" and len(clips) == 4 and len(path) == 49
    assert summary.startswith("4 clips of 30 degrees")
    np.testing.assert_allclose(path.c2w_opencv, plan("orbit_left", 49, 120.0).c2w_opencv, atol=1e-6)
    schema = node_classes["DimensionXArticulatedPathPlanner"].GET_SCHEMA()
    assert [o.is_output_list for o in schema.outputs] == [False, True, False, False]


def test_director_chooser_from_a_pose_a_trajectory_and_two_images(node_classes):
    chooser = node_classes["DimensionXDirectorChooser"]
    pose = plan("pan_left", 2, 20.0).c2w_opencv[-1]
    director, table, views, _ = chooser.execute(fov_deg=60.0, candidates="all",
                                                relative_pose=json.dumps(pose.tolist())).result
    assert director == "pan_left" and table.startswith("best director: pan_left (score 1.000)")
    np.testing.assert_allclose(views.c2w_opencv[1], pose, atol=1e-12)
    given = plan("orbit_up", 5, 25.0)
    director, _, _, path = chooser.execute(fov_deg=60.0, candidates="released", views=given, frames=5).result
    assert director == "orbit_up" and len(path) == 5  # the chosen director's path by the fitted 25 degrees
    np.testing.assert_allclose(path.c2w_opencv, given.c2w_opencv, atol=1e-6)

    path = plan("orbit_left", 2, 15.0, radius=2.6)
    room = Room(seed=7)
    a, b = (torch.from_numpy(room.render(c2w, path.intrinsics[0], 720, 480))[None] for c2w in path.c2w_opencv)
    director, table, views, _ = chooser.execute(fov_deg=60.0, candidates="all", image_a=a, image_b=b).result
    assert director == "orbit_left" and "feature matches agree" in table and views.width == 720


@pytest.mark.parametrize("inputs, message", [
    ({}, "give exactly one of"),
    ({"relative_pose": "1 0 0 0  0 1 0 0  0 0 1 0  0 0 0 1", "views": plan("orbit_up", 3)},
     "got views, relative_pose"),
    ({"image_a": torch.zeros(1, 64, 64, 3)}, "connect both image_a and image_b"),
    ({"relative_pose": "1 2 3"}, "12 or 16 numbers"),
])
def test_director_chooser_refuses_unclear_inputs(node_classes, inputs, message):
    with pytest.raises(ValueError, match=message):
        node_classes["DimensionXDirectorChooser"].execute(fov_deg=60.0, candidates="all", **inputs)


@pytest.mark.parametrize("form", ["transforms.json", "colmap"])
def test_export_writes_a_numbered_folder_under_output_that_reads_back(node_classes, folders, form):
    trajectory = plan("orbit_down", 9, 20.0)
    export = node_classes["DimensionXTrajectoryExport"]
    first = export.execute(trajectory=trajectory, format=form, filename_prefix="dimx/path").result[0]
    second = export.execute(trajectory=trajectory, format=form, filename_prefix="dimx/path").result[0]
    assert first.endswith("path_00001_") and second.endswith("path_00002_")
    assert first.startswith(str(folders / "output" / "dimx"))
    back, _ = (read_colmap_text(f"{first}/sparse/0") if form == "colmap"
               else read_transforms_json(f"{first}/transforms.json"))
    np.testing.assert_allclose(back.c2w_opencv, trajectory.c2w_opencv, atol=1e-9)
    assert not [p for p in (folders / "output" / "dimx").iterdir() if p.name.startswith(".")]  # nothing half-written


def test_export_never_writes_outside_output(node_classes, folders):
    with pytest.raises(ValueError, match="filename_prefix .* '../escape' leads outside"):
        node_classes["DimensionXTrajectoryExport"].execute(trajectory=plan("pan_left", 3), format="colmap",
                                                           filename_prefix="../escape/path")
    assert not (folders / "escape").exists()


def test_a_failing_export_leaves_no_folder(node_classes, folders, monkeypatch, pack):
    def broken(path, trajectory):
        (path.parent / "half.txt").write_text("partial")
        raise OSError("disk full")

    monkeypatch.setattr(pack.nodes.camera, "write_transforms_json", broken)
    with pytest.raises(OSError, match="disk full"):
        node_classes["DimensionXTrajectoryExport"].execute(trajectory=plan("pan_left", 3), format="transforms.json",
                                                           filename_prefix="dimx/path")
    assert list((folders / "output" / "dimx").iterdir()) == []


def test_load_lists_and_reads_camera_files_from_input(node_classes, folders):
    planned = plan("truck_right", 7, 0.5)
    write_transforms_json(folders / "input" / "shots" / "transforms.json", planned)
    pack_export = node_classes["DimensionXTrajectoryExport"]
    colmap_folder = pack_export.execute(trajectory=planned, format="colmap", filename_prefix="x").result[0]
    (folders / "input" / "scan").mkdir()
    for name in ("cameras.txt", "images.txt", "points3D.txt"):
        (folders / "input" / "scan" / name).write_bytes((folders / "output" / colmap_folder / "sparse" / "0" /
                                                          name).read_bytes())
    load = node_classes["DimensionXTrajectoryLoad"]
    options = next(i for i in load.GET_SCHEMA().inputs if i.id == "file").options
    assert options == ["scan", "shots/transforms.json"]
    for choice in options:
        trajectory, info = load.execute(file=choice).result
        np.testing.assert_allclose(trajectory.c2w_opencv, planned.c2w_opencv, atol=1e-9)
        assert info.startswith("7 cameras, 720x480")
    with pytest.raises(ValueError, match="file: '../output' is not one of the 2 files this node offers"):
        load.execute(file="../output")


def test_load3d_camera_nodes_round_trip_a_view_pair(node_classes):
    planned = plan("orbit_right", 5, 40.0, radius=2.5, fov_deg=70.0)
    to_camera = node_classes["DimensionXTrajectoryToLoad3DCamera"]
    camera_a = to_camera.execute(trajectory=planned, frame=0).result[0]
    camera_b = to_camera.execute(trajectory=planned, frame=4).result[0]
    views = node_classes["DimensionXLoad3DCamerasToViews"].execute(
        camera_a=camera_a, camera_b=camera_b, width=720, height=480, fallback_fov_deg=50.0).result[0]
    np.testing.assert_allclose(views.c2w_opencv[1], planned.c2w_opencv[4], atol=1e-9)
    np.testing.assert_allclose(views.intrinsics[0], planned.intrinsics[0], atol=1e-9)
    np.testing.assert_allclose(views.pivot, [0, 0, 2.5], atol=1e-9)
    director = node_classes["DimensionXDirectorChooser"].execute(fov_deg=60.0, candidates="all",
                                                                 views=views).result[0]
    assert director == "orbit_right"
