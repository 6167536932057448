import json

import numpy as np
import pytest

from dimx_core.camera import Trajectory, plan
from dimx_core.camera.conventions import from_load3d_camera, opencv_to_opengl, opengl_to_opencv, to_load3d_camera
from dimx_core.camera.formats import (quaternion_wxyz_to_rotation, read_colmap_text, read_transforms_json,
                                      write_colmap_binary, write_colmap_text, write_transforms_json)


def _random_rotation(rng):
    q = rng.normal(size=4)
    return quaternion_wxyz_to_rotation(q)


@pytest.fixture
def trajectory():
    rng = np.random.default_rng(0)
    poses = np.tile(np.eye(4), (6, 1, 1))
    for pose in poses[1:]:
        pose[:3, :3] = _random_rotation(rng)
        pose[:3, 3] = rng.normal(size=3)
    k = np.tile(np.array([[500.0, 0, 360], [0, 510.0, 240], [0, 0, 1]]), (6, 1, 1))
    k[3, 0, 0] = 450.0
    return Trajectory(poses, k, 720, 480, pattern="orbit_left", pivot=[0, 0, 2], director="orbit_left")


def test_transforms_json_round_trip(tmp_path, trajectory):
    path = write_transforms_json(tmp_path / "transforms.json", trajectory)
    back, names = read_transforms_json(path)
    np.testing.assert_allclose(back.c2w_opencv, trajectory.c2w_opencv, atol=1e-12)
    np.testing.assert_allclose(back.intrinsics, trajectory.intrinsics, atol=1e-12)
    assert (back.width, back.height, back.pattern, back.director) == (720, 480, "orbit_left", "orbit_left")
    assert back.pivot.tolist() == [0, 0, 2] and names[0] == "images/frame_00000.png"


def test_transforms_json_uses_the_opengl_camera_convention(tmp_path, trajectory):
    document = json.loads(write_transforms_json(tmp_path / "t.json", trajectory).read_text())
    matrix = np.array(document["frames"][1]["transform_matrix"])
    np.testing.assert_allclose(matrix[:3, 1], -trajectory.c2w_opencv[1, :3, 1])  # y up instead of down
    np.testing.assert_allclose(matrix[:3, 2], -trajectory.c2w_opencv[1, :3, 2])  # z back instead of forward
    np.testing.assert_allclose(matrix[:3, 3], trajectory.c2w_opencv[1, :3, 3])


def test_colmap_text_round_trip(tmp_path, trajectory):
    write_colmap_text(tmp_path, trajectory)
    back, names = read_colmap_text(tmp_path)
    np.testing.assert_allclose(back.c2w_opencv, trajectory.c2w_opencv, atol=1e-9)
    np.testing.assert_allclose(back.intrinsics, trajectory.intrinsics, atol=1e-9)
    assert names == [f"frame_{i:05d}.png" for i in range(6)]
    assert len((tmp_path / "cameras.txt").read_text().strip().splitlines()) == 3  # header + 2 distinct cameras
    assert (tmp_path / "points3D.txt").read_text().startswith("#")


def test_colmap_quaternions_have_positive_w(tmp_path, trajectory):
    write_colmap_text(tmp_path, trajectory)
    rows = [line.split() for line in (tmp_path / "images.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    assert all(float(row[1]) >= 0 for row in rows)


def test_unreadable_files_say_so(tmp_path):
    (tmp_path / "t.json").write_text('{"frames": [')
    with pytest.raises(ValueError, match="not a readable transforms.json"):
        read_transforms_json(tmp_path / "t.json")
    with pytest.raises(ValueError, match="COLMAP"):
        read_colmap_text(tmp_path)


@pytest.mark.parametrize("pattern", ["orbit_up", "dolly_out", "roll_left", "orbit_360"])
def test_planned_paths_export_and_parse_back_identically(tmp_path, pattern):
    planned = plan(pattern, frames=17, radius=2.5, elevation=10.0, fov_deg=55.0, easing="ease")
    back, names = read_transforms_json(write_transforms_json(tmp_path / "transforms.json", planned))
    np.testing.assert_allclose(back.c2w_opencv, planned.c2w_opencv, atol=1e-12)
    np.testing.assert_allclose(back.intrinsics, planned.intrinsics, atol=1e-12)
    assert (back.pattern, back.director, back.meta) == (planned.pattern, planned.director, planned.meta)
    assert (back.pivot is None) == (planned.pivot is None) and len(names) == 17
    write_colmap_text(tmp_path / "colmap", planned)
    back, names = read_colmap_text(tmp_path / "colmap")
    np.testing.assert_allclose(back.c2w_opencv, planned.c2w_opencv, atol=1e-9)
    np.testing.assert_allclose(back.intrinsics, planned.intrinsics, atol=1e-9)


def test_opengl_conversion_flips_the_camera_axes_and_is_its_own_inverse(trajectory):
    gl = opencv_to_opengl(trajectory.c2w_opencv)
    np.testing.assert_allclose(gl[:, :3, 1], -trajectory.c2w_opencv[:, :3, 1])
    np.testing.assert_allclose(gl[:, :3, 3], trajectory.positions)
    np.testing.assert_allclose(opengl_to_opencv(gl), trajectory.c2w_opencv)


def test_load3d_camera_of_the_first_frame_is_a_default_threejs_camera():
    camera = to_load3d_camera(plan("orbit_left", 5, 40.0, radius=3.0, fov_deg=60.0))
    assert camera["position"] == {"x": 0.0, "y": 0.0, "z": 0.0} and camera["cameraType"] == "perspective"
    assert camera["target"] == pytest.approx({"x": 0.0, "y": 0.0, "z": -3.0})  # looks down -z at the pivot
    assert camera["quaternion"] == pytest.approx({"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0})
    assert camera["fov"] == pytest.approx(2 * np.degrees(np.arctan(240 / (360 / np.tan(np.radians(30))))))
    assert camera["aspect"] == pytest.approx(1.5)


@pytest.mark.parametrize("pattern", ["orbit_left", "roll_right", "orbit_up", "truck_left"])
def test_load3d_camera_round_trip(pattern):
    planned = plan(pattern, 7, 0.5 if pattern == "truck_left" else 35.0, radius=2.0, fov_deg=50.0)
    for index in range(7):
        c2w, k = from_load3d_camera(to_load3d_camera(planned, index), planned.width, planned.height)
        np.testing.assert_allclose(c2w, planned.c2w_opencv[index], atol=1e-9)
        np.testing.assert_allclose(k, planned.intrinsics[index], atol=1e-9)


def test_load3d_camera_without_quaternion_uses_position_and_target():
    planned = plan("orbit_left", 5, 60.0, radius=2.0)  # no roll: recoverable from where the camera looks
    old_style = {key: value for key, value in to_load3d_camera(planned, 4).items() if key in
                 ("position", "target", "zoom", "cameraType")}
    c2w, k = from_load3d_camera(old_style, 720, 480, default_fov_deg=40.0)
    np.testing.assert_allclose(c2w, planned.c2w_opencv[4], atol=1e-9)
    assert k[1, 1] == pytest.approx(240 / np.tan(np.radians(20)))
    with pytest.raises(ValueError, match="only perspective cameras"):
        from_load3d_camera(old_style | {"cameraType": "orthographic"}, 720, 480)
    with pytest.raises(ValueError, match="position must be a dict with numbers x, y, z"):
        from_load3d_camera({"position": [0, 0, 0], "target": {"x": 0, "y": 0, "z": 1}}, 720, 480)
    with pytest.raises(ValueError, match="frame index 9"):
        to_load3d_camera(planned, 9)


def test_colmap_binary_reads_back_as_the_same_cameras_and_poses(tmp_path, trajectory):
    """COLMAP's own reader (pycolmap) takes the binary model; converted to text by it, the pack reads the poses and
    intrinsics it was given."""
    pycolmap = pytest.importorskip("pycolmap")
    names = [f"view_{i}.png" for i in range(6)]
    write_colmap_binary(tmp_path / "binary", trajectory, names)
    (tmp_path / "text").mkdir()
    pycolmap.Reconstruction(str(tmp_path / "binary")).write_text(str(tmp_path / "text"))
    back, back_names = read_colmap_text(tmp_path / "text")
    order = np.argsort(back_names)
    np.testing.assert_allclose(back.c2w_opencv[order], trajectory.c2w_opencv, atol=1e-9)
    np.testing.assert_allclose(back.intrinsics[order], trajectory.intrinsics, atol=1e-9)
    assert sorted(back_names) == names and (back.width, back.height) == (720, 480)
    assert sorted(path.name for path in (tmp_path / "binary").iterdir()) == ["cameras.bin", "images.bin",
                                                                              "points3D.bin"]
