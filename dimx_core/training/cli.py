"""`dimx train-director`: train an S- or T-Director LoRA on a dataset folder, resumable, here or on Ray workers."""
from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from ..video import cli as video_cli
from .options import OPTIMIZERS, SPARSE_VIEW_STEPS, TrainOptions, parse_steps

DEFAULTS = TrainOptions()


def _train(args, workers) -> None:
    import torch
    from PIL import Image

    from ..datasets.clips import write_clip
    from ..datasets.layout import open_dataset
    from ..files import atomic_path
    from ..hooks import Hooks, Interrupted
    from ..images import read_rgb
    from ..video.runtime import Runtime
    from ..video.sampling import FPS
    from .curve import loss_curve
    from .job import TrainingJob, run_training

    if args.out.suffix != ".safetensors":
        raise ValueError(f"--out must be a .safetensors file, got '{args.out}'")
    options = TrainOptions(
        kind=args.kind, rank=args.rank, alpha=args.alpha, learning_rate=args.lr, steps=args.steps,
        batch_size=args.batch_size, seed=args.seed, optimizer=args.optimizer,
        gradient_checkpointing=args.gradient_checkpointing, low_memory=args.low_memory,
        checkpoint_every=args.checkpoint_every, eval_every=args.eval_every,
        early_stop_patience=args.early_stop_patience, validation_steps=parse_steps(args.validation_steps),
        validation=args.validation, validation_inference_steps=args.validation_inference_steps)
    open_dataset(args.dataset)  # a bad folder is refused before the model loads
    image = None
    if args.validation_image is not None:
        image = torch.from_numpy(read_rgb(args.validation_image, "--validation-image")).float() / 255.0
    device, dtype = video_cli.device_and_dtype(args)
    parts = video_cli.load_model(args, dtype)
    checkpoints = args.checkpoints or args.out.with_name(args.out.stem + ".checkpoints")
    say = lambda text: print(text, file=sys.stderr, flush=True)  # noqa: E731
    pool = workers.pool(args, say)
    job = TrainingJob(args.dataset, options, args.out, checkpoints, args.resume, args.validation_prompt, image)

    stop = threading.Event()

    def on_interrupt(signum, frame) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print("stopping after this step and saving a checkpoint (Ctrl-C again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, on_interrupt)
    try:
        result = run_training(parts, job, Runtime.on_device(device, hooks=Hooks(should_stop=stop.is_set)), pool,
                              say=say)
    except Interrupted:
        print(f"stopped; continue with the same command and --resume (checkpoint in {checkpoints})", file=sys.stderr)
        raise SystemExit(130) from None
    finally:
        signal.signal(signal.SIGINT, previous)
    curve = args.out.with_name(args.out.stem + ".loss.png")
    with atomic_path(curve) as part:
        picture = loss_curve(result.losses, result.evals, f"{args.out.name}: {options.role}-Director")
        Image.fromarray((picture.numpy() * 255).round().astype("uint8")).save(part, format="PNG")
    for step, frames in result.validations:
        video = write_clip(args.out.with_name(f"{args.out.stem}.validation_step{step:05d}.mp4"), frames, FPS)
        print(f"validation video: {video}", file=sys.stderr)
    print(result.describe(), file=sys.stderr)
    print(f"loss curve: {curve}", file=sys.stderr)
    print(result.path)


def register(commands, workers) -> None:
    """workers: the top-level CLI's distributed.cli.WorkerArguments for training (--workers, --ray-address)."""
    train = commands.add_parser(
        "train-director", help="train an S- or T-Director LoRA (diffusers + peft) on a dataset folder",
        description="Train a director LoRA on the attention projections of every transformer block of a CogVideoX "
                    "image-to-video model: v-prediction MSE, conditions computed once, T5 and the VAE off the GPU "
                    "while training. Writes FILE.safetensors (loads at strength 1.0 as trained in Load Director LoRA "
                    "and in diffusers' load_lora_weights), FILE.loss.png and the validation videos beside it, and "
                    "keeps a resumable checkpoint in FILE.checkpoints/. With --workers N the run is shared by N Ray "
                    "workers (GPUs here or of a cluster), each training its share of every batch.")
    video_cli.add_model_arguments(train)
    train.add_argument("--dataset", type=Path, required=True, help="dataset folder (prompts.txt + videos.txt)")
    train.add_argument("--kind", choices=("s", "t"), required=True,
                       help="s: S-Director (camera motion), t: T-Director (object motion)")
    train.add_argument("--out", type=Path, required=True, help="the .safetensors file to write")
    train.add_argument("--rank", type=int, default=DEFAULTS.rank, help=f"LoRA rank (default {DEFAULTS.rank})")
    train.add_argument("--alpha", type=float, default=DEFAULTS.alpha,
                       help="LoRA alpha; the trained effect is alpha/rank B·A (default 1, as DimensionX's SAT runs)")
    train.add_argument("--lr", type=float, default=DEFAULTS.learning_rate,
                       help=f"learning rate (default {DEFAULTS.learning_rate:g})")
    train.add_argument("--steps", type=int, default=DEFAULTS.steps,
                       help=f"steps (default {DEFAULTS.steps}; the paper's sparse-view S-Directors, on a "
                            f"start/end-frame base such as CogVideoX-Fun InP: {SPARSE_VIEW_STEPS})")
    train.add_argument("--batch-size", type=int, default=DEFAULTS.batch_size, help="clips per step (default 1)")
    train.add_argument("--seed", type=int, default=DEFAULTS.seed, help="seed of data order and noise (default 0)")
    train.add_argument("--optimizer", choices=tuple(OPTIMIZERS), default=DEFAULTS.optimizer,
                       help="; ".join(f"{name}: {text}" for name, (text, _) in OPTIMIZERS.items()))
    train.add_argument("--gradient-checkpointing", action=argparse.BooleanOptionalAction,
                       default=DEFAULTS.gradient_checkpointing, help="recompute activations in backward (default on)")
    train.add_argument("--low-memory", action="store_true",
                       help="24 GB mode: the VAE encodes and decodes in tiles (use with --optimizer adamw8bit)")
    train.add_argument("--checkpoint-every", type=int, default=DEFAULTS.checkpoint_every,
                       help=f"steps between checkpoints (default {DEFAULTS.checkpoint_every})")
    train.add_argument("--checkpoints", type=Path, default=None,
                       help="checkpoint folder (default: FILE.checkpoints beside --out)")
    train.add_argument("--resume", action="store_true", help="continue from the checkpoint in the checkpoint folder")
    train.add_argument("--eval-every", type=int, default=DEFAULTS.eval_every,
                       help=f"steps between fixed-noise evaluations (default {DEFAULTS.eval_every}, 0: off)")
    train.add_argument("--early-stop-patience", type=int, default=DEFAULTS.early_stop_patience,
                       help="stop after this many evaluations without a better loss (default 0: never)")
    train.add_argument("--validation-steps", default="",
                       help="steps that also render a validation video, e.g. '500,1000' (the last step always does)")
    train.add_argument("--validation", action=argparse.BooleanOptionalAction, default=True,
                       help="render a validation video at the last step (default on)")
    train.add_argument("--validation-inference-steps", type=int, default=DEFAULTS.validation_inference_steps,
                       help=f"denoising steps of a validation video (default {DEFAULTS.validation_inference_steps})")
    train.add_argument("--validation-prompt", default=None, help="default: the first clip's caption")
    train.add_argument("--validation-image", type=Path, default=None,
                       help="default: the first clip's first frame (and its last, for a start/end-frame base)")
    video_cli.add_device_arguments(train)
    workers.add(train)
    train.set_defaults(run=lambda args: _train(args, workers))
