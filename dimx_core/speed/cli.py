"""Speed flags of `dimx generate`, and `dimx speed-info`."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from .options import ATTENTION_CHOICES, SpeedOptions


def default_compile_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "dimensionx" / "torch-compile"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("speed", "how fast, and how lossy, the run may be (defaults: lossless)")
    group.add_argument("--attention", choices=ATTENTION_CHOICES, default="auto",
                       help="attention kernel; auto = the fastest exact one measured on this GPU (default)")
    group.add_argument("--fuse-qkv", action=argparse.BooleanOptionalAction, default=True,
                       help="one product for q, k and v (default on; exact)")
    group.add_argument("--merge-directors", action=argparse.BooleanOptionalAction, default=True,
                       help="merge active directors into the weights at each switch (default on)")
    group.add_argument("--compile", action="store_true", help="torch.compile the transformer block")
    group.add_argument("--compile-cache", type=Path, default=default_compile_cache(),
                       help="folder for torch.compile's cache (default: %(default)s)")
    group.add_argument("--fp8", action="store_true", help="fp8 products in the transformer (Ada/Hopper; lossy)")
    group.add_argument("--low-memory", action="store_true",
                       help="24 GB mode: T5 off the GPU after encoding, VAE decoded in tiles")
    group.add_argument("--step-cache", type=float, default=0.0, metavar="THRESHOLD",
                       help="first-block step cache threshold, e.g. 0.05 (default 0: off; lossy)")


def options_from(args: argparse.Namespace) -> SpeedOptions:
    return SpeedOptions(attention=args.attention, fuse_qkv=args.fuse_qkv, merge_directors=args.merge_directors,
                        compile=args.compile, compile_cache=str(args.compile_cache), fp8=args.fp8,
                        low_memory=args.low_memory, step_cache=args.step_cache)


def _speed_info(args) -> None:
    import torch

    from .attention import describe_kernels

    lines = [f"torch {torch.__version__}"]
    if torch.cuda.is_available():
        major, minor = torch.cuda.get_device_capability()
        fp8 = "yes" if (major, minor) >= (8, 9) else "no (needs compute capability 8.9+)"
        lines.append(f"GPU: {torch.cuda.get_device_name()} (compute capability {major}.{minor}); fp8 products: {fp8}")
    else:
        lines.append("GPU: none (attention auto = PyTorch SDPA on the CPU; compile and fp8 run but gain little)")
    lines += describe_kernels()
    lines.append(f"torch.compile cache: {os.environ.get('TORCHINDUCTOR_CACHE_DIR') or default_compile_cache()}")
    print("\n".join(lines))


def register(commands) -> None:
    info = commands.add_parser("speed-info", help="which attention kernels, fp8 and compile this machine offers",
                               description="Show the speed options this machine can use: attention kernels "
                                           "(PyTorch SDPA backends, FlashAttention-3, SageAttention), fp8 support "
                                           "and where torch.compile keeps its cache.")
    info.set_defaults(run=_speed_info)
