"""`dimx` command line: the library's stages without ComfyUI."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .camera import cli as camera_cli
from .datasets import cli as datasets_cli
from .distributed import cli as distributed_cli
from .pipeline import cli as pipeline_cli
from .recon import cli as recon_cli
from .recon import cli4d as recon4d_cli
from .speed import cli as speed_cli
from .training import cli as training_cli
from .video import cli as video_cli
from .video import sat_cli


def _tiny_model(args) -> None:
    from .tiny import build_tiny_model

    print(build_tiny_model(args.out, seed=args.seed, version=args.version))


def _tiny_lora(args) -> None:
    from .tiny import build_tiny_lora

    print(build_tiny_lora(args.model, args.out, kind=args.kind, seed=args.seed))


def _info(args) -> None:
    from .backends import report

    print(report().as_text())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dimx", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    tiny_model = commands.add_parser(
        "tiny-model", help="write a tiny CogVideoX image-to-video diffusers folder (random weights, for tests)",
        description="Build a tiny CogVideoX image-to-video model with the layout and architecture of "
                    "CogVideoX-5b-I2V, for tests and demos. Its outputs are noise: it only checks the plumbing.")
    tiny_model.add_argument("--out", type=Path, required=True, help="folder to create (must be empty or absent)")
    tiny_model.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    tiny_model.add_argument("--version", choices=("1.0", "1.5", "1.0-inp", "1.5-inp"), default="1.0",
                            help="1.0 mirrors CogVideoX-5b-I2V (default), 1.5 mirrors CogVideoX1.5-5B-I2V, 1.0-inp "
                                 "and 1.5-inp the start/end-frame CogVideoX-Fun V1.1-5b-InP and V1.5-5b-InP")
    tiny_model.set_defaults(run=_tiny_model)

    tiny_lora = commands.add_parser(
        "tiny-lora", help="write a tiny director LoRA for a tiny model, in the DimensionX release layout",
        description="Write a random director LoRA (attention q/k/v/out of every block, no alpha, like the "
                    "released DimensionX files) that fits the tiny model in --model.")
    tiny_lora.add_argument("--model", type=Path, required=True, help="tiny model folder written by tiny-model")
    tiny_lora.add_argument("--out", type=Path, required=True, help=".safetensors file to write")
    tiny_lora.add_argument("--kind", choices=("s", "t"), required=True,
                           help="s: S-Director (camera motion), t: T-Director (object motion)")
    tiny_lora.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    tiny_lora.set_defaults(run=_tiny_lora)

    info = commands.add_parser("info", help="show the pack version and which optional backends are available",
                               description="Report the pack version, torch, the CUDA device and optional packages.")
    info.set_defaults(run=_info)

    video_cli.register(commands)
    camera_cli.register(commands)
    recon_cli.register(commands)
    recon4d_cli.register(commands)
    speed_cli.register(commands)
    sat_cli.register(commands)
    datasets_cli.register(commands)
    training_cli.register(commands, distributed_cli.TRAINING)
    pipeline_cli.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, OSError, ImportError) as err:  # bad input or a full disk: the reason, no traceback
        print(f"dimx {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0
