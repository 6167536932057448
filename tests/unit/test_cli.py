import subprocess
import sys

import pytest

from dimx_core.cli import build_parser, main


def test_every_command_has_help():
    commands = build_parser()._subparsers._group_actions[0].choices
    assert {"tiny-model", "tiny-lora", "info"} <= set(commands)
    for name in commands:
        result = subprocess.run([sys.executable, "-m", "dimx_core", name, "--help"], capture_output=True, text=True)
        assert result.returncode == 0 and f"usage: dimx {name}" in result.stdout


def test_tiny_model_and_lora_from_the_command_line(tmp_path, capsys):
    assert main(["tiny-model", "--out", str(tmp_path / "m"), "--seed", "1"]) == 0
    assert (tmp_path / "m" / "model_index.json").is_file()
    assert main(["tiny-lora", "--model", str(tmp_path / "m"), "--out", str(tmp_path / "s.safetensors"),
                 "--kind", "s"]) == 0
    assert (tmp_path / "s.safetensors").stat().st_size > 0


def test_errors_exit_2_with_a_message(tmp_path, capsys):
    assert main(["tiny-lora", "--model", str(tmp_path), "--out", str(tmp_path / "x.safetensors"), "--kind", "t"]) == 2
    assert "no transformer/config.json" in capsys.readouterr().err


def test_info_lists_optional_backends(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("diffusers", "gsplat", "pycolmap", "CUDA device"):
        assert name in out


@pytest.mark.parametrize("argv", [["tiny-lora", "--model", "m", "--out", "o", "--kind", "x"], []])
def test_bad_arguments_are_refused_by_argparse(argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2


def test_generate_writes_a_video_and_frames(tiny_model_dir, tmp_path, capsys):
    import imageio.v3 as iio
    import numpy as np

    from dimx_core.tiny import build_tiny_lora

    iio.imwrite(tmp_path / "in.png", np.full((120, 200, 3), 128, np.uint8))
    lora = build_tiny_lora(tiny_model_dir, tmp_path / "s.safetensors", "s")
    common = ["generate", "--model", str(tiny_model_dir), "--image", str(tmp_path / "in.png"), "--prompt", "a cat",
              "--steps", "2", "--director", f"{lora}:0.5"]
    assert main(common + ["--out", str(tmp_path / "frames")]) == 0
    assert sorted(p.name for p in (tmp_path / "frames").iterdir())[::16] == ["frame_00000.png", "frame_00016.png"]
    assert iio.imread(tmp_path / "frames" / "frame_00003.png").shape == (96, 144, 3)
    assert main(common + ["--out", str(tmp_path / "video.mp4")]) == 0
    assert iio.imread(tmp_path / "video.mp4").shape[1:] == (96, 144, 3)
    assert "center-cropped to 180x120" in capsys.readouterr().out
    assert [p.name for p in tmp_path.iterdir() if ".part" in p.name] == []


def test_lora_info_names_format_rank_and_scale(tiny_model_dir, tmp_path, capsys):
    from dimx_core.tiny import build_tiny_lora

    assert main(["lora-info", str(build_tiny_lora(tiny_model_dir, tmp_path / "t.safetensors", "t"))]) == 0
    out = capsys.readouterr().out
    assert "diffusers/PEFT keys" in out and "rank: 8" in out and "W + 0.125·B·A" in out


def test_the_report_names_optional_packages_whose_parent_package_is_absent(monkeypatch):
    """Pack Info and `dimx info` list yunchang.comm.all_to_all (the optional 'distributed' extra); where yunchang is
    not installed, the report says so instead of failing."""
    from dimx_core import backends
    from dimx_core.optional import version_of

    assert version_of("no_such_parent_package.child") is None
    monkeypatch.setitem(backends.KNOWN, "no_such_parent_package.child", ("no-such-package", "a test"))
    assert backends.report().packages["no_such_parent_package.child"] is None
