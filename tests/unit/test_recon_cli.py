"""`dimx reconstruct` and `dimx render` on a tiny synthetic orbit: files that reopen, errors that explain."""
import numpy as np
import torch
from PIL import Image

from dimx_core.camera.formats import read_transforms_json, write_transforms_json
from dimx_core.cli import main
from dimx_core.recon.cli import read_frames
from dimx_core.recon.files import load_scene
from tests.unit.recon_scenes import one_thread, orbit_frames  # noqa: F401 (autouse fixture)


def write_frames(folder, frames):
    folder.mkdir()
    for index, frame in enumerate(frames):
        Image.fromarray((frame.numpy() * 255).round().astype(np.uint8)).save(folder / f"f{index:03d}.png")


def test_reconstruct_then_render_from_the_command_line(tmp_path, capsys):
    frames, trajectory = orbit_frames(64, 48, 16)
    write_frames(tmp_path / "frames", frames)
    write_transforms_json(tmp_path / "path.json", trajectory)
    assert main(["reconstruct", "--frames", str(tmp_path / "frames"), "--trajectory", str(tmp_path / "path.json"),
                 "--out", str(tmp_path / "out" / "scene.ply"), "--poses", "trajectory", "--preset", "fast",
                 "--steps", "20", "--initial-points", "200", "--seed", "3"]) == 0
    captured = capsys.readouterr()
    assert "pose source: trajectory" in captured.err and "16 frames" in captured.err
    scene = load_scene(tmp_path / "out" / "scene.ply")
    # of the 200 random points of the cube about the scene, those no camera sees were dropped; 20 steps do not refine
    assert 50 < len(scene) < 200 and scene.cameras is not None and len(scene.cameras) == 16
    assert main(["convert-scene", str(tmp_path / "out" / "scene.ply"), str(tmp_path / "out" / "scene.splat")]) == 0
    assert (tmp_path / "out" / "scene.splat").stat().st_size == 32 * len(scene)
    assert "keeps no view-dependent colour" in capsys.readouterr().err
    assert main(["convert-scene", str(tmp_path / "out" / "scene.ply"), str(tmp_path / "out" / "scene.spz")]) == 0
    compact = load_scene(tmp_path / "out" / "scene.spz")
    assert len(compact) == len(scene) and compact.sh_degree == 3 and len(compact.cameras) == 16
    assert torch.allclose(compact.means, scene.means, atol=0.5 / 4096 + 1e-6)
    cameras, _ = read_transforms_json(tmp_path / "out" / "scene.transforms.json")
    assert np.allclose(cameras.c2w_opencv[0], trajectory.c2w_opencv[0], atol=1e-6)

    assert main(["render", "--scene", str(tmp_path / "out" / "scene.ply"), "--trajectory",
                 str(tmp_path / "path.json"), "--out", str(tmp_path / "renders")]) == 0
    renders = sorted((tmp_path / "renders").glob("*.png"))
    assert [p.name for p in renders[:2]] == ["frame_00000.png", "frame_00001.png"] and len(renders) == 16
    assert Image.open(renders[0]).size == (64, 48)


def test_a_video_file_is_read_as_frames(tmp_path):
    import imageio.v3 as iio

    frames = (np.random.default_rng(0).uniform(0, 1, (5, 24, 32, 3)) * 255).astype(np.uint8)
    iio.imwrite(tmp_path / "clip.gif", frames)
    read, names = read_frames(tmp_path / "clip.gif")
    assert read.shape == (5, 24, 32, 3) and names[0] == "clip#0"


def test_mismatched_frames_exit_2_with_the_reason(tmp_path, capsys):
    frames, trajectory = orbit_frames(64, 48, 16)
    write_frames(tmp_path / "frames", frames[:10])
    write_transforms_json(tmp_path / "path.json", trajectory)
    assert main(["reconstruct", "--frames", str(tmp_path / "frames"), "--trajectory", str(tmp_path / "path.json"),
                 "--out", str(tmp_path / "scene.ply"), "--poses", "trajectory"]) == 2
    assert "got 10 frames but the trajectory has 16 poses" in capsys.readouterr().err
    assert not (tmp_path / "scene.ply").exists()
    assert main(["reconstruct", "--frames", str(tmp_path / "nothing"), "--trajectory", str(tmp_path / "path.json"),
                 "--out", str(tmp_path / "scene.ply")]) == 2
    capsys.readouterr()
    assert main(["reconstruct", "--frames", str(tmp_path / "frames"), "--trajectory", str(tmp_path / "path.json"),
                 "--out", str(tmp_path / "scene.obj")]) == 2
    assert "must end in .ply, .splat, .spz (the extension picks the format), got '.obj'" in capsys.readouterr().err
