"""GPU benchmark of DimensionX's 4D stage: the Gaussian4DReconstruct fit at 720x480 on a synthetic moving scene
(K cameras x N times, every 8th diagonal of frames held out: time, held-out PSNR, peak memory), the fit's
steps/s and peak memory at 100k-1M Gaussians, and the cost of the whole image -> 4D graph at 5B size as
arithmetic from measured parts: the video model's seconds per guided denoising step (from bench/video_bench.py,
passed in, not re-measured here), times the steps each stage runs, plus the measured fit.

    python bench/recon4d_bench.py --video-step-seconds 1.0 --video-fixed-seconds 20    # on the GPU, ~5 min + build
    python bench/recon4d_bench.py --tiny --device cpu --video-step-seconds 1.0 --out /tmp/r4d.md   # logic, CPU

Needs gsplat (its PyPI wheel compiles its CUDA kernels on first use with nvcc, 1-3 minutes, cached in the user's
cache folder) and kornia; OpenCV for the flow confidence (the fit uses confidence 'none' without it, and says so).
Results are rewritten after every section, so an interrupted run keeps what it measured; `--budget` seconds after
the start no new scaling size is begun.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import math
import platform
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.recon_bench import Report, peak_memory_gib, peak_memory_reset, synchronize  # noqa: E402
from dimx_core.hooks import Hooks  # noqa: E402
from dimx_core.identity.refine import pass_steps, refinement_passes  # noqa: E402
from dimx_core.optional import version_of  # noqa: E402
from dimx_core.recon.raster import gsplat_status, select_rasterizer  # noqa: E402
from dimx_core.recon.render import render_views  # noqa: E402
from dimx_core.recon.synthetic import dynamic_frames, orbit_rig  # noqa: E402
from dimx_core.recon.train import psnr  # noqa: E402
from dimx_core.recon.train4d import PRESETS_4D, Reconstruct4DOptions, fitted_times, reconstruct_4d  # noqa: E402


def graph_cost(step_seconds: float, fixed_seconds: float, fit_seconds: float, *, times: int, views: int,
               steps: int = 50, start_strength: float = 0.9, refine_strength: float = 0.5,
               refine_repeat: bool = True) -> list[tuple[str, int, int, float]]:
    """(stage, video runs, denoising steps, seconds) of the image -> 4D graph, as its nodes run it: every video run
    costs its denoising steps x `step_seconds` plus `fixed_seconds` (text encoding, VAE encode and decode); the
    per-frame videos start from the identity guide at `start_strength`, each refinement pass at its strength."""
    def runs(count: int, strengths: list[float]) -> tuple[int, int, float]:
        run_steps = sum(pass_steps(strengths, steps))
        return count * len(strengths), count * run_steps, count * (run_steps * step_seconds
                                                                   + len(strengths) * fixed_seconds)

    passes = refinement_passes(refine_strength, refine_repeat)
    rows = [("T-Director video (N frames)", *runs(1, [1.0])),
            ("reference spatial video v_ref", *runs(1, [1.0])),
            (f"multi-view: {times} per-frame videos", *runs(times, [start_strength])),
            (f"appearance refine: {views} camera videos x {len(passes)} passes", *runs(views, passes)),
            ("4D fit (measured)", 0, 0, fit_seconds)]
    videos = sum(row[1] for row in rows)
    denoising = sum(row[2] for row in rows)
    return rows + [("total", videos, denoising, sum(row[3] for row in rows))]


class StepClock:
    """Hooks that time the optimisation steps from `first` to the last (the GPU synchronised at both ends)."""

    def __init__(self, device: torch.device, first: int):
        self.device, self.first = device, first
        self.started = self.ended = None
        self.last = 0

    def progress(self, step: int, total: int, preview) -> None:
        if step == self.first:
            synchronize(self.device)
            self.started = time.perf_counter()
        if step == total:
            synchronize(self.device)
            self.ended, self.last = time.perf_counter(), step

    def steps_per_second(self) -> float:
        return (self.last - self.first) / (self.ended - self.started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu with --tiny")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes and few steps: checks the logic on a CPU")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS-4d.md"))
    parser.add_argument("--views", type=int, default=None, help="K cameras of the fit (default 8; --tiny 4)")
    parser.add_argument("--times", type=int, default=None, help="N times of the fit (default 13; --tiny 3)")
    parser.add_argument("--size", default=None, help="frame size WxH (default 720x480; --tiny 48x32)")
    parser.add_argument("--preset", default="fast", choices=tuple(PRESETS_4D), help="preset of the fit (fast)")
    parser.add_argument("--steps", type=int, default=None, help="steps of the fit (default: the preset's)")
    parser.add_argument("--scaling", default=None,
                        help="comma-separated Gaussian counts for steps/s and memory (default 100000,300000,1000000)")
    parser.add_argument("--scaling-steps", type=int, default=None, help="steps per scaling run (default 300)")
    parser.add_argument("--video-step-seconds", type=float, default=None,
                        help="seconds per guided denoising step of CogVideoX-5b-I2V (49 frames, 720x480), from "
                             "bench/video_bench.py; without it the graph cost is not computed")
    parser.add_argument("--video-fixed-seconds", type=float, default=0.0,
                        help="fixed seconds per video run (text encoding, VAE encode and decode), from the video "
                             "benchmark's whole-run section (default 0: denoising only)")
    parser.add_argument("--budget", type=float, default=420.0,
                        help="seconds after which no new scaling size is started (default 420)")
    args = parser.parse_args(argv)
    begun = time.perf_counter()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --tiny --device cpu to check the logic on a CPU", file=sys.stderr)
        return 2
    views, times = (4, 3) if args.tiny else (8, 13)
    views, times = args.views or views, args.times or times
    width, height = (48, 32) if args.tiny else (720, 480)
    if args.size:
        width, height = (int(v) for v in args.size.lower().split("x"))
    fit_steps = args.steps or (60 if args.tiny else None)
    scaling = [int(n) for n in (args.scaling or ("300,600" if args.tiny else "100000,300000,1000000")).split(",")]
    scaling_steps = args.scaling_steps or (40 if args.tiny else 300)
    truth_gaussians = 1000 if args.tiny else 60_000
    report = Report(args.out, "Gaussian4DReconstruct and image -> 4D benchmark")
    have_cv2 = importlib.util.find_spec("cv2") is not None

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    report.add("Machine", [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- device: {name}",
        f"- torch {torch.__version__} (CUDA {torch.version.cuda}), Python {platform.python_version()}, "
        f"gsplat {version_of('gsplat')}, kornia {version_of('kornia')}, OpenCV {version_of('cv2') or 'absent'}",
        f"- command: `python {' '.join(shlex.quote(a) for a in [sys.argv[0], *(argv if argv is not None else sys.argv[1:])])}`",
        f"- fit: {views} cameras x {times} times at {width}x{height}, preset {args.preset}"
        + (f", {fit_steps} steps" if fit_steps else "") + (" (--tiny)" if args.tiny else "")])

    started = time.perf_counter()
    reason = gsplat_status() if device.type == "cuda" else "CPU run"
    rasterizer = select_rasterizer(device)
    report.add("gsplat", [f"- kernels: {'ready' if not reason else 'unavailable: ' + reason} after "
                          f"{time.perf_counter() - started:.1f} s (includes the JIT compile when not cached)",
                          f"- the fits use: {rasterizer.name}" + (f" ({rasterizer.notice})" if rasterizer.notice
                                                                  else "")])

    # 1. the 4D fit on the synthetic moving scene
    cameras = orbit_rig(views, 40.0, width, height)
    frames = dynamic_frames(cameras, fitted_times(times), truth_gaussians, rasterizer=rasterizer)
    confidence = "flow" if have_cv2 else "none"
    options = Reconstruct4DOptions(preset=args.preset, steps=fit_steps, reference_time=times // 2, poses="trajectory",
                                   confidence=confidence, holdout_every=8, device=str(device),
                                   initial_points=2000 if args.tiny else None, seed=0, preview_every=10**9)
    peak_memory_reset(device)
    result = reconstruct_4d(frames, views, times, cameras, options)
    fit = result.report
    heldout = fit.heldout_frames
    scene = result.gaussians
    positions = [index // times for index in heldout]
    still = render_views(replace(scene, deformation=None), replace(
        scene.cameras, c2w_opencv=scene.cameras.c2w_opencv[positions], intrinsics=scene.cameras.intrinsics[positions]),
        rasterizer=rasterizer)
    without_motion = psnr(still, frames[heldout])
    report.add("4D fit on a synthetic moving scene", [
        "| cameras x times | size | steps | time s | held-out PSNR dB | same frames, no motion dB | peak GiB | "
        "Gaussians | final loss |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        f"| {views} x {times} | {width}x{height} | {fit.steps} | {fit.seconds:.1f} | {fit.heldout_psnr:.2f} | "
        f"{without_motion:.2f} | {peak_memory_gib(device)} | {fit.gaussians} | {fit.final_loss:.4f} |",
        "",
        f"A textured ball slides along an arc and turns 60 degrees before a static wall ({truth_gaussians} Gaussians "
        f"of truth), seen by {views} cameras on a 40 degree orbit; {len(heldout)} of {views * times} frames (every "
        f"8th diagonal of the camera x time grid) held out. 'No motion' scores the fitted canonical scene without its deformation on the "
        f"same frames. Confidence: {confidence}" + ("" if have_cv2 else " (OpenCV absent)") + ". The time includes "
        "the flow confidence, the starting points and the held-out renders.",
        "", "Report:", "", *[f"    {line}" for line in fit.as_text().splitlines()]])

    # 2. steps/s and memory against the Gaussian count (densification off, so the count stays)
    lines = ["| Gaussians | steps/s (joint stage) | ms/step | peak GiB |", "| --- | --- | --- | --- |"]
    warmup_share = PRESETS_4D[args.preset].warmup / PRESETS_4D[args.preset].fit.steps
    first_timed = math.ceil(warmup_share * scaling_steps) + 10  # past the warm-up: the field is in every step
    for count in scaling:
        if time.perf_counter() - begun > args.budget:
            lines.append(f"| {count} | skipped: the --budget of {args.budget:.0f} s was spent | | |")
        else:
            clock = StepClock(device, first_timed)
            peak_memory_reset(device)
            try:
                reconstruct_4d(frames, views, times, cameras, replace(
                    options, steps=scaling_steps, initial_points=count, densify=False, holdout_every=0,
                    confidence="none"), hooks=Hooks(progress=clock.progress))
                rate = clock.steps_per_second()
                lines.append(f"| {count} | {rate:.1f} | {1000 / rate:.1f} | {peak_memory_gib(device)} |")
            except torch.cuda.OutOfMemoryError as err:
                lines.append(f"| {count} | out of memory ({str(err).splitlines()[0][:80]}) | | |")
                torch.cuda.empty_cache()
        report.add("Fit speed and memory against the Gaussian count", lines + [
            "", f"{views} cameras x {times} times at {width}x{height}, {scaling_steps} steps of which steps "
                f"{first_timed}-{scaling_steps} are timed (joint stage: deformation field, rasterization, SSIM loss, "
                "backward, Adam on the Gaussians and the field), no densification, confidence 'none'."])

    # 3. the whole graph at 5B size
    if args.video_step_seconds is None:
        report.add("Image -> 4D graph at 5B size", [
            "- not computed: pass --video-step-seconds (the pack's seconds per guided step of CogVideoX-5b-I2V at "
            "49 frames, 720x480, from bench/video_bench.py) and --video-fixed-seconds"])
    else:
        lines = []
        for n, k, fit_seconds, note in ((times, views, fit.seconds, "measured above"),
                                        (49, 13, fit.seconds, f"measured at {views} x {times}; the fit's cost is set "
                                                              "by its steps, its frames mostly add memory")):
            rows = graph_cost(args.video_step_seconds, args.video_fixed_seconds, fit_seconds, times=n, views=k)
            lines += [f"N = {n} times, K = {k} cameras (fit {note}):", "",
                      "| stage | video runs | denoising steps | minutes |", "| --- | --- | --- | --- |",
                      *[f"| {stage} | {runs} | {steps} | {seconds / 60:.1f} |" for stage, runs, steps, seconds in rows],
                      ""]
        lines.append(f"Arithmetic from measured parts: {args.video_step_seconds:g} s per guided denoising step and "
                     f"{args.video_fixed_seconds:g} s fixed per video run (from the video benchmark, passed in), 50 "
                     "steps per schedule, per-frame videos starting from the identity guide at strength 0.9, "
                     "appearance refine at 0.5 then 0.25; multi-view videos resumed from the cache cost nothing.")
        report.add("Image -> 4D graph at 5B size", lines)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
