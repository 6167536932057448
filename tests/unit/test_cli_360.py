"""The 360-degree path headless, as the README gives it: `dimx generate` on the converted 145-frame model (its
release's solver by default), `dimx trajectory` for its loop, `dimx reconstruct` closing the loop."""
import numpy as np
from PIL import Image

from dimx_core.camera.formats import read_transforms_json
from dimx_core.cli import main
from dimx_core.recon.files import load_scene
from tests.unit.recon_scenes import one_thread  # noqa: F401 (autouse fixture)


def test_generate_then_reconstruct_a_360_loop_headless(tiny_model_360_dir, tmp_path, capsys):
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(photo)
    assert main(["generate", "--model", str(tiny_model_360_dir), "--image", str(photo), "--prompt", "a house",
                 "--steps", "1", "--out", str(tmp_path / "orbit")]) == 0
    printed = capsys.readouterr().out
    assert "48x32, 145 frames" in printed and "auto sampling: sat_dpmpp2m" in printed
    assert "solver sat_dpmpp2m, guidance 6, dynamic CFG by timestep" in printed
    assert len(list((tmp_path / "orbit").glob("frame_*.png"))) == 145
    assert main(["trajectory", "--pattern", "orbit_360_right", "--frames", "145", "--width", "48", "--height", "32",
                 "--out", str(tmp_path / "loop.transforms.json")]) == 0
    loop, _ = read_transforms_json(tmp_path / "loop.transforms.json")
    assert len(loop) == 145 and loop.closes_loop
    assert main(["reconstruct", "--frames", str(tmp_path / "orbit"), "--trajectory",
                 str(tmp_path / "loop.transforms.json"), "--out", str(tmp_path / "scene.ply"), "--poses",
                 "trajectory", "--preset", "fast", "--steps", "4", "--initial-points", "300"]) == 0
    report = capsys.readouterr().err
    assert "closed loop: the last camera kept its planned pose beside the first" in report
    scene = load_scene(tmp_path / "scene.ply")
    assert len(scene.cameras) == 145
    np.testing.assert_allclose(scene.cameras.c2w_opencv[-1], loop.c2w_opencv[-1], atol=1e-5)
