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
