"""`dimx generate` and `dimx lora-info`."""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..speed import cli as speed_cli

PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def _director_argument(text: str) -> tuple[Path, float]:
    path, _, strength = text.rpartition(":") if ":" in Path(text).name else (text, "", "")
    try:
        return Path(path), float(strength) if strength else 1.0
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not FILE or FILE:strength")


def load_model(args, dtype):
    from .components import load_diffusers_folder
    from .single_file import load_single_files

    if args.model.is_dir():
        return load_diffusers_folder(args.model, dtype)
    missing = [flag for flag, value in (("--vae", args.vae), ("--text-encoder", args.text_encoder),
                                        ("--tokenizer", args.tokenizer)) if value is None]
    if missing:
        raise ValueError(f"--model {args.model} is a file: also give {', '.join(missing)}")
    return load_single_files(args.model, args.vae, args.text_encoder, args.tokenizer, dtype)


def write_video(frames: torch.Tensor, out: Path, fps: int) -> Path:
    """frames (N, H, W, 3) in 0..1 -> an .mp4 file, or a folder of PNGs; nothing half-written either way."""
    import numpy as np

    from ..files import atomic_path
    from ..optional import require

    pixels = (frames.clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    imageio = require("imageio.v3", "writing videos")
    if out.suffix.lower() in (".mp4", ".webm", ".mkv", ".gif"):
        with atomic_path(out) as part:
            imageio.imwrite(part, pixels, fps=fps, extension=out.suffix)
        return out
    out.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(np.asarray(pixels)):
        with atomic_path(out / f"frame_{index:05d}.png") as part:
            imageio.imwrite(part, frame, extension=".png")
    return out


def device_and_dtype(args) -> tuple[torch.device, torch.dtype]:
    """--device (default: CUDA when there is one) and --precision (default: bf16 on CUDA, fp32 on the CPU)."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return device, PRECISIONS[args.precision or ("bf16" if device.type == "cuda" else "fp32")]


def _generate(args) -> None:
    from ..directors import schedule
    from ..directors.adapters import Director, attach
    from ..directors.formats import read_lora
    from ..hooks import Hooks
    from ..images import read_rgb
    from ..speed.cli import options_from
    from .request import SamplerSettings, VideoRequest
    from .runtime import Runtime
    from .sampling import generate

    device, dtype = device_and_dtype(args)
    parts = load_model(args, dtype)
    image = torch.from_numpy(read_rgb(args.image, "--image")).float() / 255
    directors = [Director(f"director{i}", "S", strength, read_lora(path))
                 for i, (path, strength) in enumerate(args.director)]
    plan = schedule.constant([d.name for d in directors], args.steps)
    if args.switch_once:
        directors = [Director("spatial", "S", 1.0, read_lora(args.switch_once[0])),
                     Director("temporal", "T", 1.0, read_lora(args.switch_once[1]))]
        plan = schedule.switch_once("spatial", "temporal", args.switch_step, args.steps)
    settings = SamplerSettings(steps=args.steps, guidance=args.guidance, dynamic_cfg=args.dynamic_cfg,
                               scheduler=args.scheduler, seed=args.seed)
    speed = options_from(args)
    request = VideoRequest(image, args.prompt, args.negative_prompt, settings,
                           attach(parts.transformer, directors, parts.spec.describe()), plan, lossy=speed.lossy())

    def progress(step, total, preview):
        print(f"\rstep {step}/{total}", end="", flush=True)

    runtime = Runtime.on_device(device, hooks=Hooks(progress=progress), speed=speed, preview_every=0)
    result = generate(parts, request, runtime)
    print()
    for note in result.notes:
        print(note)
    print(write_video(result.frames, args.out, result.fps))


def _lora_info(args) -> None:
    from ..directors.formats import read_lora

    print(read_lora(args.file).describe())


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model (a diffusers folder or a transformer file) and the single files that go with a file."""
    parser.add_argument("--model", type=Path, required=True,
                        help="a diffusers folder (CogVideoX-5b-I2V), or a transformer .safetensors file")
    parser.add_argument("--vae", type=Path, help="VAE file, when --model is a file")
    parser.add_argument("--text-encoder", type=Path, help="T5-XXL file, when --model is a file")
    parser.add_argument("--tokenizer", type=Path, help="T5 tokenizer folder, when --model is a file")


def add_device_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available")
    parser.add_argument("--precision", choices=tuple(PRECISIONS), help="default: bf16 on cuda, fp32 on cpu")


def register(commands) -> None:
    generate = commands.add_parser(
        "generate", help="one image to a video with CogVideoX image-to-video and director LoRAs",
        description="Generate a video from one image, optionally steered by director LoRAs (all active for the "
                    "whole run) or by an S-Director then a T-Director (--switch-once).")
    add_model_arguments(generate)
    generate.add_argument("--image", type=Path, required=True, help="the first frame (any size; center-cropped)")
    generate.add_argument("--prompt", required=True, help="what the video shows")
    generate.add_argument("--negative-prompt", default="", help="what to avoid (default empty)")
    generate.add_argument("--director", type=_director_argument, action="append", default=[],
                          metavar="FILE[:STRENGTH]", help="a director LoRA, active for every step (repeatable)")
    generate.add_argument("--switch-once", nargs=2, type=Path, metavar=("S_FILE", "T_FILE"),
                          help="S-Director for the first --switch-step steps, then T-Director")
    generate.add_argument("--switch-step", type=int, default=3, help="steps under the S-Director (default 3)")
    generate.add_argument("--steps", type=int, default=50, help="denoising steps (default 50)")
    generate.add_argument("--guidance", type=float, default=6.0, help="classifier-free guidance (default 6)")
    generate.add_argument("--dynamic-cfg", action=argparse.BooleanOptionalAction, default=True,
                          help="dynamic CFG as DimensionX used it (default on)")
    generate.add_argument("--scheduler", choices=("ddim", "dpm"), default="ddim", help="default ddim")
    generate.add_argument("--seed", type=int, default=0, help="noise seed (default 0)")
    add_device_arguments(generate)
    generate.add_argument("--out", type=Path, required=True, help="an .mp4/.webm/.gif file, or a folder for PNGs")
    speed_cli.add_arguments(generate)
    generate.set_defaults(run=_generate)

    info = commands.add_parser("lora-info", help="what a director LoRA file holds: format, layers, rank, alpha",
                               description="Detect a LoRA file's key format and show its layers, rank, alpha and "
                                           "the effect strength 1.0 applies.")
    info.add_argument("file", type=Path, help="the LoRA file (.safetensors, or a weights-only .pt/.ckpt)")
    info.set_defaults(run=_lora_info)
