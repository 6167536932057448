"""Camera files and camera paths from careless or hostile sources: every camera is read or the field is named,
nothing half-written on a full disk, no loop sized by an input runs unbounded or ignores Cancel."""
import errno
import json
import os
import re
import time
from pathlib import Path

import numpy as np
import pytest

from dimx_core.camera import Trajectory, plan, split_motion
from dimx_core.camera.formats import find_camera_files, read_colmap_text, read_transforms_json, write_colmap_text
from dimx_core.cli import main
from dimx_core.files import atomic_folder, resolve_inside
from dimx_core.hooks import Hooks, Interrupted


def test_colmap_images_without_points2d_lines_keep_every_camera(tmp_path):
    planned = plan("orbit_left", 7, 30.0)
    write_colmap_text(tmp_path, planned)
    images = tmp_path / "images.txt"
    lines = images.read_text().splitlines()
    images.write_text("\n".join(line for line in lines if line.strip()) + "\n")  # no POINTS2D line per image
    back, names = read_colmap_text(tmp_path)
    assert len(back) == 7 and names == [f"frame_{i:05d}.png" for i in range(7)]
    np.testing.assert_allclose(back.c2w_opencv, planned.c2w_opencv, atol=1e-9)


def test_colmap_points2d_lines_with_points_are_not_taken_for_cameras(tmp_path):
    write_colmap_text(tmp_path, plan("pan_left", 3, 20.0))
    images = tmp_path / "images.txt"
    images.write_text(images.read_text().replace("frame_00001.png\n\n", "frame_00001.png\n1.5 2.5 -1 3.0 4.0 7\n"))
    assert len(read_colmap_text(tmp_path)[0]) == 3


def test_colmap_image_line_that_is_not_one_is_named(tmp_path):
    write_colmap_text(tmp_path, plan("pan_left", 3, 20.0))
    (tmp_path / "images.txt").write_text("1 0.5 0.5 0.5 frame.png\n")
    with pytest.raises(ValueError, match="images.txt line 1 is neither an image line"):
        read_colmap_text(tmp_path)


def _transforms(tmp_path, change) -> Path:
    document = json.loads(json.dumps({"w": 720, "h": 480, "fl_x": 500.0, "frames": [
        {"file_path": "a.png", "transform_matrix": np.eye(4).tolist()},
        {"file_path": "b.png", "transform_matrix": np.eye(4).tolist()}]}))
    change(document)
    path = tmp_path / "transforms.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("change, message", [
    (lambda d: d.pop("fl_x"), "frame 0 has no focal length: give 'fl_x' (pixels)"),
    (lambda d: d.update(frames=[]), "it needs a non-empty list 'frames' of objects, got list (empty)"),
    (lambda d: d.update(w="wide"), "'w' (image width in pixels) must be a whole number, got 'wide'"),
    (lambda d: d.update(h=-3), "'h' (image height in pixels) must be a positive whole number, got -3"),
    (lambda d: d.update(dimensionx={"pivot": [1.0, 2.0]}), "pivot must be 3 finite numbers (x, y, z), got [1.0, 2.0]"),
    (lambda d: d["frames"][1].update(fl_x="long"), "frame 1 'fl_x' (focal length in pixels) must be a number"),
    (lambda d: d["frames"][1].update(transform_matrix=[[1, 0, 0]]), "frame 1 transform_matrix must be a 4x4 matrix"),
    (lambda d: d["frames"][1]["transform_matrix"][3].__setitem__(0, 0.5),
     "pose 1 has the bottom row [0.5, 0.0, 0.0, 1.0], not 0 0 0 1"),
], ids=["no-fl_x", "no-frames", "w-text", "h-negative", "pivot-2", "fl_x-text", "matrix-3", "bottom-row"])
def test_a_bad_transforms_json_field_is_named(tmp_path, change, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        read_transforms_json(_transforms(tmp_path, change))


def test_a_projection_matrix_is_not_taken_as_a_pose():
    poses = np.tile(np.eye(4), (2, 1, 1))
    poses[1, 3, 2] = -1.0  # a perspective row, as a projection matrix has
    with pytest.raises(ValueError, match="pose 1 has the bottom row"):
        Trajectory(poses, np.tile(np.diag([100.0, 100.0, 1.0]), (2, 1, 1)), 720, 480)


def test_cli_refuses_a_magnitude_of_a_billion_degrees(tmp_path, capsys):
    out = tmp_path / "t.json"
    assert main(["trajectory", "--pattern", "orbit_left", "--magnitude", "1e9", "--out", str(out)]) == 2
    assert "magnitude must be at most 3600 degrees for orbit_left, got 1e+09" in capsys.readouterr().err
    assert not out.exists()


def test_millions_of_clips_are_refused_before_any_is_planned():
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"total 3600 / max_clip 0.001 makes 3600000 clips, but at most 360 .* "
                                         r"raise max_clip to at least 10 degrees"):
        split_motion("orbit_left", 3600.0, 0.001)
    assert time.perf_counter() - started < 1.0


def test_planning_clips_honours_cancel():
    seen = []

    def stop_after_three():
        return len(seen) >= 3

    hooks = Hooks(progress=lambda step, total, _: seen.append((step, total)), should_stop=stop_after_three)
    with pytest.raises(Interrupted):
        split_motion("orbit_left", 360.0, 1.0, frames_per_clip=5, hooks=hooks)
    assert seen == [(1, 360), (2, 360), (3, 360)]


def test_a_full_disk_leaves_the_previous_colmap_set_as_it_was(tmp_path, monkeypatch, capsys):
    out = tmp_path / "colmap"
    assert main(["trajectory", "--pattern", "pan_left", "--frames", "5", "--format", "colmap", "--out", str(out)]) == 0
    before = {name: (out / name).read_bytes() for name in ("cameras.txt", "images.txt", "points3D.txt")}
    real_write = Path.write_bytes  # the COLMAP set's files, text or binary, are written as bytes

    def full_disk_on_images(self, data):
        if "images" in self.name:
            raise OSError(errno.ENOSPC, "No space left on device", str(self))
        return real_write(self, data)

    monkeypatch.setattr(Path, "write_bytes", full_disk_on_images)
    assert main(["trajectory", "--pattern", "tilt_up", "--frames", "9", "--format", "colmap", "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert "dimx trajectory: error: [Errno 28] No space left on device" in error and "Traceback" not in error
    assert {name: (out / name).read_bytes() for name in before} == before
    assert sorted(p.name for p in out.iterdir()) == sorted(before)  # no temporary left behind


def test_a_link_in_the_input_folder_that_leads_outside_is_neither_listed_nor_read(tmp_path):
    inside, outside = tmp_path / "input", tmp_path / "secret"
    inside.mkdir(), outside.mkdir()
    write_colmap_text(outside / "scan", plan("pan_left", 3, 20.0))
    (outside / "transforms.json").write_text("{}")
    (inside / "stolen_transforms.json").symlink_to(outside / "transforms.json")
    (inside / "scan").symlink_to(outside / "scan", target_is_directory=True)
    (inside / "here").mkdir()
    (inside / "here" / "transforms.json").write_text("{}")
    (inside / "alias_transforms.json").symlink_to(inside / "here" / "transforms.json")
    assert find_camera_files(inside) == ["alias_transforms.json", "here/transforms.json"]
    with pytest.raises(ValueError, match=r"file 'stolen_transforms.json' leads outside .*input"):
        resolve_inside(inside, "stolen_transforms.json", "file")
    assert resolve_inside(inside, "alias_transforms.json", "file") == (inside / "here" / "transforms.json").resolve()


def test_result_folders_get_the_users_folder_mode(tmp_path):
    previous = os.umask(0o022)
    try:
        with atomic_folder(tmp_path / "export_00001_") as partial:
            (partial / "transforms.json").write_text("{}")
    finally:
        os.umask(previous)
    assert (tmp_path / "export_00001_").stat().st_mode & 0o777 == 0o755
    assert [p.name for p in tmp_path.iterdir()] == ["export_00001_"]
