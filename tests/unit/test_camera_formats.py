import json

import numpy as np
import pytest

from dimx_core.camera import Trajectory
from dimx_core.camera.formats import (quaternion_wxyz_to_rotation, read_colmap_text, read_transforms_json,
                                      write_colmap_text, write_transforms_json)


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
