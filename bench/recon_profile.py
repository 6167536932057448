"""Where the time of a GaussianReconstruct fit goes on the GPU, to explain the gap between the fit's wall time
and gsplat's own trainer (bench/RESULTS-recon.md: 36-45 s for the fast preset against ~19 s): the flow
confidence alone, the fit with and without it, and the operators of the optimisation steps ranked by GPU and by
host time (torch.profiler).

    python bench/recon_profile.py --out $OUT/RESULTS-recon-profile.md      # on the GPU, ~3 min + gsplat build
    python bench/recon_profile.py --device cpu --size 64x48 --frames 8 --steps 20 --out /tmp/p.md   # logic only
"""
from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.recon_bench import Report, synchronize  # noqa: E402
from dimx_core.recon import confidence  # noqa: E402
from dimx_core.recon.raster import select_rasterizer  # noqa: E402
from dimx_core.recon.render import render_views  # noqa: E402
from dimx_core.recon.synthetic import ball_before_wall, orbit_rig  # noqa: E402
from dimx_core.recon.train import ReconstructOptions, reconstruct  # noqa: E402


def operator_table(profile, sort_by: str, rows: int, steps: int) -> list[str]:
    """The top operators by `sort_by` as a markdown table, in milliseconds per optimisation step."""
    device_key = "self_device_time_total" if sort_by == "device" else "self_cpu_time_total"
    events = sorted(profile.key_averages(), key=lambda e: getattr(e, device_key, 0.0), reverse=True)[:rows]
    lines = ["| operator | calls/step | self GPU ms/step | self host ms/step |", "| --- | --- | --- | --- |"]
    for event in events:
        lines.append(f"| `{event.key[:70]}` | {event.count / steps:.1f} | "
                     f"{getattr(event, 'self_device_time_total', 0.0) / 1000 / steps:.3f} | "
                     f"{event.self_cpu_time_total / 1000 / steps:.3f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="720x480", help="frame size WxH")
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--steps", type=int, default=3000, help="steps of the timed fits (fast preset)")
    parser.add_argument("--profiled-steps", type=int, default=300, help="steps recorded by the profiler")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS-recon-profile.md"))
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split("x"))
    device = torch.device(args.device)
    report = Report(args.out, "GaussianReconstruct: where a fit's time goes")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    report.add("Machine", [f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
                           f"- device: {name}; torch {torch.__version__}",
                           f"- command: `python {' '.join(sys.argv)}`"])

    rasterizer = select_rasterizer(device)
    trajectory = orbit_rig(args.frames, 30.0, width, height)
    images = render_views(ball_before_wall(60_000), trajectory, rasterizer=rasterizer)

    started = time.perf_counter()
    confidence.flow_confidence(images.numpy())
    flow_seconds = time.perf_counter() - started

    def fit(steps: int, confidence_mode: str) -> float:
        synchronize(device)
        begun = time.perf_counter()
        reconstruct(images, trajectory, ReconstructOptions(preset="fast", steps=steps, poses="trajectory",
                                                           confidence=confidence_mode, device=str(device), seed=0))
        synchronize(device)
        return time.perf_counter() - begun

    fit(50, "none")  # warm-up: kernels, allocator, kornia's filters
    with_flow, without = fit(args.steps, "flow"), fit(args.steps, "none")
    short = fit(args.profiled_steps, "none")
    report.add("Wall time", [
        f"- rasterizer: {rasterizer.name}; {args.frames} frames at {width}x{height}; fast preset",
        f"- flow confidence alone (OpenCV, host): {flow_seconds:.1f} s",
        f"- fit of {args.steps} steps with flow confidence: {with_flow:.1f} s; without: {without:.1f} s "
        f"({1000 * without / args.steps:.1f} ms/step, set-up included)",
        f"- fit of {args.profiled_steps} steps without confidence: {short:.1f} s (the profiled run, unprofiled)"])

    activities = [torch.profiler.ProfilerActivity.CPU] + (
        [torch.profiler.ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as profile:
        fit(args.profiled_steps, "none")
    busy = sum(getattr(e, "self_device_time_total", 0.0) for e in profile.key_averages()) / 1000
    report.add("GPU busy time", [f"- {busy / args.profiled_steps:.2f} ms/step of GPU work (sum of the operators' "
                                 f"self GPU time) against {1000 * short / args.profiled_steps:.2f} ms/step wall "
                                 "(set-up included): the rest is the host or idle GPU"])
    report.add("Operators by GPU time", operator_table(profile, "device", 25, args.profiled_steps))
    report.add("Operators by host time", operator_table(profile, "host", 25, args.profiled_steps))
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
