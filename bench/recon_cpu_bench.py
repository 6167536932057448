"""The fallback rasterizer on the CPU (issue 14 item 6): forward + backward of one view of the fast preset's
starting scene, against an older rasterizer file when given; the tile sizes; a fast-preset fit of 24 views.

    git show f229853:dimx_core/recon/reference.py > /tmp/reference_before.py   # the rasterizer before the tiles
    python bench/recon_cpu_bench.py --baseline /tmp/reference_before.py --out bench/RESULTS-recon-cpu.md
    python bench/recon_cpu_bench.py --skip-fit ...                             # the view timings alone
    python bench/recon_cpu_bench.py --tiles "" --fit-first-steps 40 ...        # the fit's first 40 steps, timed
    python bench/recon_cpu_bench.py --quick --out /tmp/cpu.md                  # a smoke run (small sizes, few steps)

The machine's load average is written beside every measurement: on a shared machine the wall time follows the
load, the process's CPU time much less (both are given). Results are rewritten after every section.
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import functools
import importlib.util
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.recon_bench import Report  # noqa: E402
from bench.recon_loop_ab import patched  # noqa: E402
from dimx_core.hooks import Hooks, Interrupted  # noqa: E402
from dimx_core.optional import version_of  # noqa: E402
from dimx_core.recon import reference  # noqa: E402
from dimx_core.recon.init import initial_gaussians  # noqa: E402
from dimx_core.recon.render import camera_tensors, render_views  # noqa: E402
from dimx_core.recon.synthetic import ball_before_wall, orbit_rig  # noqa: E402
from dimx_core.recon.train import PRESETS, ReconstructOptions, reconstruct  # noqa: E402


def load() -> str:
    return "load average %.1f / %.1f / %.1f" % os.getloadavg()


def rasterizer_from(path: Path):
    """`rasterization` of another version of reference.py (loaded inside the package: its relative imports work)."""
    spec = importlib.util.spec_from_file_location("dimx_core.recon._baseline_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.rasterization


def starting_scene(width: int, height: int, count: int) -> dict:
    """The fast preset's random starting Gaussians on the 24-view orbit, SH degree 3, seen from its 4th camera."""
    trajectory = orbit_rig(24, 30.0, width, height)
    frames = render_views(ball_before_wall(1500), trajectory).numpy()
    scene = initial_gaussians(trajectory, frames, count=count, sh_degree=3, seed=0)
    viewmats, intrinsics = camera_tensors(trajectory)
    return {"means": scene.means, "quats": scene.quats_wxyz, "log_scales": scene.log_scales,
            "logits": scene.opacity_logits, "sh": scene.sh, "viewmats": viewmats[3:4], "Ks": intrinsics[3:4]}


def time_view(rasterize, scene: dict, width: int, height: int, repeats: int, **options) -> dict[str, float]:
    """Median wall and CPU seconds of the forward and of the backward of one view (after one warm-up)."""
    results: dict[str, list[float]] = {"forward": [], "backward": [], "forward cpu": [], "backward cpu": []}
    for index in range(repeats + 1):
        inputs = {name: value.clone().requires_grad_(name not in ("viewmats", "Ks")) for name, value in scene.items()}
        wall, cpu = time.perf_counter(), time.process_time()
        image, _, _ = rasterize(inputs["means"], inputs["quats"], inputs["log_scales"].exp(),
                                torch.sigmoid(inputs["logits"]), inputs["sh"], inputs["viewmats"], inputs["Ks"],
                                width, height, sh_degree=3, **options)
        middle, middle_cpu = time.perf_counter(), time.process_time()
        image.sum().backward()
        if index:
            results["forward"].append(middle - wall)
            results["forward cpu"].append(middle_cpu - cpu)
            results["backward"].append(time.perf_counter() - middle)
            results["backward cpu"].append(time.process_time() - middle_cpu)
    return {name: statistics.median(values) for name, values in results.items()}


def view_row(label: str, times: dict[str, float]) -> str:
    return (f"| {label} | {times['forward']:.3f} | {times['backward']:.3f} | {times['forward cpu']:.3f} | "
            f"{times['backward cpu']:.3f} | {load()} |")


FIT_SCENE = ("The ball-before-wall scene (3000 Gaussians of truth) on a 30-degree orbit of 24 views, every 8th frame "
             "held out, poses = the trajectory (refined), flow confidence.")


def first_steps(frames, trajectory, options: ReconstructOptions, count: int, total: int) -> list[str]:
    """The first `count` steps of the fit with the preset's whole schedule (the start stays at its 30k Gaussians until
    refinement begins at step 500), timed step by step through the progress hooks, then stopped as Cancel would."""
    marks: list[tuple[float, float]] = []

    def progress(step, steps, preview):
        marks.append((time.perf_counter(), time.process_time()))

    before, started, cpu = load(), time.perf_counter(), time.process_time()
    with contextlib.suppress(Interrupted):
        reconstruct(frames, trajectory, options, hooks=Hooks(progress=progress,
                                                             should_stop=lambda: len(marks) >= count + 1))
    # the first mark ends step 1, which also holds the setup; per-step figures are from step 2 on
    walls = [later[0] - earlier[0] for earlier, later in zip(marks, marks[1:])]
    cpus = [later[1] - earlier[1] for earlier, later in zip(marks, marks[1:])]
    wall, cpu_step = statistics.median(walls), statistics.median(cpus)
    return ["| frames | size | steps timed | setup + step 1 s (CPU s) | per step s (CPU s) | the preset's "
            f"{total} steps at that rate, min (CPU min) | machine before / after |",
            "| --- | --- | --- | --- | --- | --- | --- |",
            f"| 24 | {frames.shape[2]}x{frames.shape[1]} | {len(walls)} | {marks[0][0] - started:.1f} "
            f"({marks[0][1] - cpu:.1f}) | {wall:.3f} ({cpu_step:.3f}) | {total * wall / 60:.1f} "
            f"({total * cpu_step / 60:.1f}) | {before} / {load()} |",
            f"\n{FIT_SCENE} Medians of the timed steps; the whole fit's Gaussian count changes once refinement starts "
            "(step 500), so the last column extrapolates the starting rate, it is not a measured fit."]


VIEW_HEADER = ["| rasterizer | forward s | backward s | forward CPU s | backward CPU s | machine |",
               "| --- | --- | --- | --- | --- | --- |"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS-recon-cpu.md"))
    parser.add_argument("--baseline", type=Path, help="an older reference.py to time against (see above)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of one view")
    parser.add_argument("--gaussians", type=int, default=PRESETS["fast"].initial_points,
                        help="starting Gaussians of the timed view (default: the fast preset's)")
    parser.add_argument("--tiles", default="2,4,8,16", help="tile sizes to compare (empty: skip)")
    parser.add_argument("--fit-size", default="160x120", help="frame size WxH of the fast-preset fit")
    parser.add_argument("--fit-steps", type=int, default=None, help="steps of the fit (default: the preset's)")
    parser.add_argument("--fit-first-steps", type=int, default=None,
                        help="time only the fit's first N steps (its whole schedule kept), then stop it")
    parser.add_argument("--skip-fit", action="store_true")
    parser.add_argument("--fit-baseline", action="store_true",
                        help="fit with the --baseline rasterizer too (the issue's 'faster than today' is the fit's)")
    parser.add_argument("--quick", action="store_true", help="2000 Gaussians, one repeat, a 60-step fit at 64x48")
    parser.add_argument("--kernels", default=",".join(reference.KERNELS),
                        help="this version's kernels to time, each in turn (entries of reference.KERNELS)")
    args = parser.parse_args(argv)
    if args.fit_baseline and not args.baseline:
        parser.error("--fit-baseline fits with the --baseline rasterizer: give --baseline FILE too")
    torch.set_num_threads(args.threads)
    if args.quick:
        args.gaussians, args.repeats, args.fit_size, args.fit_steps = 2000, 1, "64x48", args.fit_steps or 60
    report = Report(args.out, "The fallback rasterizer on the CPU")
    report.add("Machine", [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- CPU: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch threads {args.threads}",
        f"- torch {torch.__version__}, Python {platform.python_version()}, gsplat {version_of('gsplat')}",
        f"- command: `python bench/recon_cpu_bench.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        f"- at the start: {load()}"])

    lines = list(VIEW_HEADER)
    scene = starting_scene(64, 48, args.gaussians)
    if args.baseline:
        lines.append(view_row(f"before ({args.baseline.name})",
                              time_view(rasterizer_from(args.baseline), scene, 64, 48, args.repeats)))
        report.add("One view at 64x48", lines)
    versions = {f"this version, {name} kernels": functools.partial(reference.rasterization, kernels=name)
                for name in args.kernels.split(",")}
    for name, rasterization in versions.items():
        lines.append(view_row(name, time_view(rasterization, scene, 64, 48, args.repeats)))
    lines.append(f"\n{len(scene['means'])} Gaussians (the fast preset's random start on the 24-view orbit: those "
                 f"some camera sees of {args.gaussians}), SH degree 3, gradients for every input; medians of the "
                 "repeats after one warm-up.")
    report.add("One view at 64x48", lines)

    tiles = [int(value) for value in args.tiles.split(",") if value.strip()]
    if tiles:
        lines = list(VIEW_HEADER)
        width, height = (int(value) for value in args.fit_size.lower().split("x"))
        for size in dict.fromkeys([(64, 48), (width, height)]):  # once each when the fit size is 64x48
            scene = starting_scene(*size, args.gaussians)
            for tile in tiles:
                lines.append(view_row(f"{size[0]}x{size[1]}, tile {tile}", time_view(
                    reference.rasterization, scene, *size, args.repeats, tile_size=tile)))
                report.add("Tile sizes", lines)
        defaults = ", ".join(f"{name} {kernels.tile}" for name, kernels in reference.KERNELS.items())
        lines.append(f"\nThe defaults: {defaults}.")
        report.add("Tile sizes", lines)

    if not args.skip_fit:
        width, height = (int(value) for value in args.fit_size.lower().split("x"))
        trajectory = orbit_rig(24, 30.0, width, height)
        frames = render_views(ball_before_wall(3000), trajectory)
        options = ReconstructOptions(preset="fast", steps=args.fit_steps, poses="trajectory", holdout_every=8, seed=0)
        total = args.fit_steps or PRESETS["fast"].steps
        if args.fit_first_steps:
            report.add("Fast-preset fit", first_steps(frames, trajectory, options, args.fit_first_steps, total))
        else:
            lines = ["| rasterizer | frames | size | steps | time s | CPU s | held-out PSNR dB | Gaussians | machine "
                     "before / after |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
            fits = dict(versions)
            if args.baseline and args.fit_baseline:
                fits = {f"before ({args.baseline.name})": rasterizer_from(args.baseline), **fits}
            for name, rasterization in fits.items():
                before = load()
                cpu = time.process_time()
                with patched(reference, "rasterization", rasterization):  # the fit picks it when it starts
                    r = reconstruct(frames, trajectory, options).report
                lines.append(f"| {name} | 24 | {width}x{height} | {r.steps} | {r.seconds:.1f} | "
                             f"{time.process_time() - cpu:.1f} | {r.heldout_psnr:.2f} | {r.gaussians} | {before} / "
                             f"{load()} |")
                report.add("Fast-preset fit", lines)
            lines.append(f"\n{FIT_SCENE} The time includes the confidence, the starting points and the held-out "
                         "renders.")
            report.add("Fast-preset fit", lines)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
