"""`dimx trajectory`, `articulate`, `director` and `camera-bounds` write and read what they promise."""

import numpy as np
import pytest
from PIL import Image

from dimx_core.camera import plan
from dimx_core.camera.formats import read_colmap_text, read_transforms_json
from dimx_core.cli import main
from tests.synthetic_scene import Room


def test_trajectory_writes_transforms_json_that_reads_back_as_the_plan(tmp_path, capsys):
    out = tmp_path / "orbit" / "transforms.json"
    assert main(["trajectory", "--pattern", "orbit_up", "--frames", "25", "--magnitude", "40", "--radius", "3",
                 "--elevation", "10", "--fov", "50", "--width", "640", "--height", "480", "--easing", "ease",
                 "--out", str(out)]) == 0
    assert "25 frames, director orbit_up" in capsys.readouterr().out
    back, _ = read_transforms_json(out)
    expected = plan("orbit_up", 25, 40.0, radius=3.0, elevation=10.0, fov_deg=50.0, width=640, height=480,
                    easing="ease")
    np.testing.assert_allclose(back.c2w_opencv, expected.c2w_opencv, atol=1e-12)
    np.testing.assert_allclose(back.intrinsics, expected.intrinsics, atol=1e-12)


def test_trajectory_plans_genxd_forward_mode_with_its_azimuth_range_and_focal(tmp_path, capsys):
    from dimx_core.camera.genxd import genxd_trajectory

    out = tmp_path / "genxd.json"
    assert main(["trajectory", "--pattern", "genxd_forward", "--frames", "20", "--azimuth", "-30", "30",
                 "--elevation", "10", "--radius", "2.5", "--focal", "787.5", "--out", str(out)]) == 0
    assert "20 frames, director none" in capsys.readouterr().out
    back, _ = read_transforms_json(out)
    expected = genxd_trajectory("forward", 10.0, (-30.0, 30.0), radius=2.5, focal=1.09375, frames=20)
    np.testing.assert_allclose(back.c2w_opencv, expected.c2w_opencv, atol=1e-9)
    np.testing.assert_allclose(back.intrinsics, expected.intrinsics, atol=1e-9)
    assert main(["trajectory", "--pattern", "genxd_orbit", "--azimuth", "10", "10", "--out", str(out)]) == 2
    assert "azimuth_range is empty" in capsys.readouterr().err


def test_trajectory_writes_colmap_text(tmp_path):
    assert main(["trajectory", "--pattern", "truck_right", "--magnitude", "0.5", "--format", "colmap",
                 "--out", str(tmp_path)]) == 0
    back, names = read_colmap_text(tmp_path)
    np.testing.assert_allclose(back.positions[-1], [0.5, 0, 0], atol=1e-9)
    assert len(names) == 49 and (tmp_path / "points3D.txt").is_file()


def test_bad_trajectory_parameters_exit_2_with_the_reason(tmp_path, capsys):
    assert main(["trajectory", "--pattern", "orbit_left", "--frames", "0", "--out", str(tmp_path / "t.json")]) == 2
    assert "frames must be a whole number from 2 to 1024, got 0" in capsys.readouterr().err
    assert main(["trajectory", "--pattern", "orbit_left", "--radius", "-1", "--out", str(tmp_path / "t.json")]) == 2
    assert "radius must be > 0" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()
    with pytest.raises(SystemExit):
        main(["trajectory", "--pattern", "spin", "--out", str(tmp_path / "t.json")])


def test_articulate_writes_the_whole_path_and_every_clip(tmp_path, capsys):
    assert main(["articulate", "--pattern", "orbit_left", "--total", "120", "--max-clip", "30",
                 "--frames-per-clip", "13", "--out", str(tmp_path)]) == 0
    assert "4 clips of 30 degrees" in capsys.readouterr().out
    whole, _ = read_transforms_json(tmp_path / "transforms.json")
    np.testing.assert_allclose(whole.c2w_opencv, plan("orbit_left", 49, 120.0).c2w_opencv, atol=1e-6)
    third, _ = read_transforms_json(tmp_path / "clips" / "clip_002.json")
    start = np.array(third.meta["start_c2w_opencv"])
    np.testing.assert_allclose(start @ third.c2w_opencv, whole.c2w_opencv[24:37], atol=1e-6)


def test_director_from_a_pose_file_and_from_a_transforms_json(tmp_path, capsys):
    pose = plan("tilt_down", 2, 15.0).c2w_opencv[-1]
    (tmp_path / "pose.txt").write_text("\n".join(" ".join(f"{v:.12f}" for v in row) for row in pose))
    assert main(["director", "--pose", str(tmp_path / "pose.txt")]) == 0
    assert capsys.readouterr().out.startswith("best director: tilt_down (score 1.000)")
    main(["trajectory", "--pattern", "dolly_out", "--out", str(tmp_path / "t.json")])
    capsys.readouterr()
    assert main(["director", "--pose", str(tmp_path / "t.json"), "--candidates", "dolly_in,dolly_out"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("best director: dolly_out") and len(out.strip().splitlines()) == 4
    (tmp_path / "bad.txt").write_text("1 2 3")
    assert main(["director", "--pose", str(tmp_path / "bad.txt")]) == 2
    assert "12 or 16 numbers" in capsys.readouterr().err


def test_director_from_two_photos(tmp_path, capsys):
    path = plan("orbit_right", 2, 15.0, radius=2.6)
    room = Room(seed=5)
    for name, c2w in zip("ab", path.c2w_opencv):
        Image.fromarray((room.render(c2w, path.intrinsics[0], 720, 480) * 255).round().astype(np.uint8)).save(
            tmp_path / f"{name}.png")
    assert main(["director", "--images", str(tmp_path / "a.png"), str(tmp_path / "b.png"), "--fov", "60"]) == 0
    out = capsys.readouterr().out
    assert "matches agree" in out and "best director: orbit_right" in out


def test_camera_bounds_prints_the_pca_box(tmp_path, capsys):
    main(["trajectory", "--pattern", "truck_left", "--magnitude", "2", "--out", str(tmp_path / "t.json")])
    capsys.readouterr()
    assert main(["camera-bounds", str(tmp_path / "t.json")]) == 0
    out = capsys.readouterr().out
    assert "major axis [1. 0. 0.]: size 2" in out and "center: [-1.  0.  0.]" in out
