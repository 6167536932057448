"""Every attention kernel the pack can choose, on the CogVideoX attention shapes, against a float32 reference.

One call of the joint text-video attention per shape (random bf16 inputs in the processor's memory layout: heads
interleaved per token): 5b-I2V's 49 frames at 720x480 and the 360-degree model's 145 frames at 480x320, batch 2
(guidance), 48 heads of 64. For each kernel: the first call (FlashAttention-4 compiles its kernel then), the median
of the timed calls, TFLOP/s (4 B H T^2 D), and the relative L2 error against float32 attention on the same inputs,
beside cuDNN's own error; then what 'auto' chooses. A kernel that does not run here is recorded with its reason.

    PYTHONUNBUFFERED=1 python3 bench/attention_bench.py --out $OUT/RESULTS-attention.md   # GPU, ~1 minute
    python bench/attention_bench.py --tiny --out /tmp/RESULTS-attention.md                 # the same logic on a CPU
"""
from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import platform
import sys
import time
import traceback
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from dimx_core.speed.attention import (OPTIONAL_KERNELS, SDPA_BACKENDS, SdpaBackend, choose_kernel,  # noqa: E402
                                       installed, kernel_named)
from video_bench import rel_l2, timed_calls  # noqa: E402

# name -> (batch, heads, tokens, head_dim): 226 text tokens + one per 2x2 patch of every latent frame
SHAPES = {
    "5b-I2V, 49 frames at 720x480": (2, 48, 226 + 13 * 30 * 45, 64),
    "360-degree model, 145 frames at 480x320": (2, 48, 226 + 37 * 20 * 30, 64),
}
TINY_SHAPES = {"tiny": (2, 2, 40 + 3 * 4 * 6, 16)}


def kernel_names(device: torch.device) -> list[str]:
    if device.type != "cuda":
        return ["sdpa"]
    return [*SDPA_BACKENDS, *(name for name in OPTIONAL_KERNELS if installed(name))]


def inputs_for(shape, device) -> tuple[torch.Tensor, ...]:
    batch, heads, tokens, head_dim = shape
    generator = torch.Generator(device=device).manual_seed(0)
    return tuple(torch.randn(batch, tokens, heads, head_dim, generator=generator, device=device,
                             dtype=torch.bfloat16).transpose(1, 2) for _ in range(3))


def float32_reference(inputs, device) -> torch.Tensor:
    """Attention in float32 on the same (bf16-rounded) inputs; memory-efficient attention keeps it in memory."""
    as_float = tuple(t.float() for t in inputs)
    if device.type == "cuda":
        return SdpaBackend(SDPBackend.EFFICIENT_ATTENTION)(*as_float)
    return kernel_named("sdpa")(*as_float)


def measure(shape, device, repeats: int) -> tuple[list[dict], str]:
    inputs = inputs_for(shape, device)
    reference = float32_reference(inputs, device)
    flops = 4 * shape[0] * shape[1] * shape[2] ** 2 * shape[3]
    rows = []
    for name in kernel_names(device):
        row = {"kernel": name}
        try:
            kernel = kernel_named(name)
            started = time.perf_counter()
            out = kernel(*inputs)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            row["first_call_s"] = time.perf_counter() - started
            seconds, _, out = timed_calls(lambda: kernel(*inputs), device, repeats)
            row.update(ms=seconds * 1000, tflops=flops / seconds / 1e12, error=rel_l2(out, reference))
        except Exception as err:  # noqa: BLE001 - one kernel failing is a result; the others go on
            row["status"] = f"{type(err).__name__}: {str(err).splitlines()[0][:160] if str(err) else ''}"
            traceback.print_exc()
        rows.append(row)
        print(row, flush=True)
    try:
        _, auto = choose_kernel("auto", shape, torch.bfloat16, device)
    except Exception as err:  # noqa: BLE001
        auto = f"auto failed: {err}"
    return rows, auto


def table(title: str, shape, rows: list[dict], auto: str) -> list[str]:
    lines = [f"## {title}: (batch, heads, tokens, head_dim) = {shape}", "",
             "| kernel | first call s | ms per call (median) | TFLOP/s | rel. L2 error vs float32 |",
             "| --- | --- | --- | --- | --- |"]
    for row in rows:
        if "status" in row:
            lines.append(f"| {row['kernel']} | cannot run: {row['status']} | | | |")
        else:
            lines.append(f"| {row['kernel']} | {row['first_call_s']:.2f} | {row['ms']:.2f} | {row['tflops']:.0f} | "
                         f"{row['error']:.2e} |")
    return [*lines, "", f"'auto' here: {auto}", ""]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("RESULTS-attention.md"))
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--tiny", action="store_true", help="small shapes on the CPU (checks the logic)")
    args = parser.parse_args(argv)
    device = torch.device("cpu" if args.tiny or not torch.cuda.is_available() else "cuda")
    versions = [f"torch {torch.__version__}"]
    for package in ("flash_attn_4", "nvidia_cutlass_dsl"):
        try:
            versions.append(f"{package} {importlib.metadata.version(package.replace('_', '-'))}")
        except importlib.metadata.PackageNotFoundError:
            versions.append(f"{package} not installed")
    lines = ["# Attention kernels on the CogVideoX shapes", "",
             f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- device: {torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'CPU'}",
             f"- {', '.join(versions)}",
             f"- command: python3 bench/attention_bench.py {' '.join(argv if argv is not None else sys.argv[1:])}", ""]
    for title, shape in (TINY_SHAPES if args.tiny else SHAPES).items():
        rows, auto = measure(shape, device, args.repeats)
        lines += table(title, shape, rows, auto)
        args.out.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
