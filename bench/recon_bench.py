"""GPU benchmark of GaussianReconstruct: gsplat build, gsplat-vs-reference parity, fwd+bwd speed, and 49-frame
720x480 synthetic fits per preset (time, held-out PSNR, peak memory, Gaussian count), plus SfM poses and the
20%-off pose check when pycolmap is installed.

    python bench/recon_bench.py                          # everything, writes bench/RESULTS-recon.md
    python bench/recon_bench.py --presets fast,standard   # fewer presets (high is 30k steps)
    python bench/recon_bench.py --device cpu --quick --out /tmp/r.md   # a smoke run of this script on a CPU

Needs gsplat (its PyPI wheel compiles the CUDA kernels on first use with nvcc; the build is cached under the
user's cache folder), kornia and OpenCV; pycolmap for the SfM section (skipped when absent).

Results are written after every section, so an interrupted run keeps what it measured.
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dimx_core.camera.formats import write_colmap_binary  # noqa: E402
from dimx_core.optional import version_of  # noqa: E402
from dimx_core.recon import parity, reference  # noqa: E402
from dimx_core.recon.fit import Preset, scaled_preset  # noqa: E402
from dimx_core.recon.raster import gsplat_status, select_rasterizer  # noqa: E402
from dimx_core.recon.render import render_views  # noqa: E402
from dimx_core.recon.synthetic import ball_before_wall, orbit_rig  # noqa: E402
from dimx_core.recon.train import PRESETS, ReconstructOptions, reconstruct  # noqa: E402

REFERENCE_NUMBERS = ("Issue references (H200, gsplat 1.5.3): 49-view synthetic fit ~19 s for 3k steps, ~43 s for "
                     "7k; fwd+bwd of one 720x480 view ~2.6 ms at 100k Gaussians. Published gsplat on Mip-NeRF 360: "
                     "7k steps 27.21 dB, 30k 28.95 dB.")


class Report:
    def __init__(self, path: Path, title: str = "GaussianReconstruct benchmark"):
        self.path, self.title, self.sections = path, title, []

    def add(self, title: str, lines: list[str]) -> None:
        """Print the section and rewrite the file; a title seen before replaces its section."""
        print(f"\n## {title}\n" + "\n".join(lines), flush=True)
        self.sections = [(t, ls) for t, ls in self.sections if t != title] + [(title, list(lines))]
        body = "\n\n".join(f"## {t}\n\n" + "\n".join(ls) for t, ls in self.sections)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"# {self.title}\n\n{body}\n")


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_reset(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> str:
    return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f}" if device.type == "cuda" else "n/a"


def time_fwd_bwd(rasterize, scene: dict, width: int, height: int, repeats: int, device: torch.device) -> float:
    """Median milliseconds of one forward+backward of one view (SH degree 3, gradients for every input)."""
    inputs = {k: v.clone().requires_grad_(k not in ("Ks", "viewmats")) for k, v in scene.items()}
    times = []
    for index in range(repeats + 2):
        synchronize(device)
        started = time.perf_counter()
        image, _, _ = rasterize(inputs["means"], inputs["quats"], inputs["scales"], inputs["opacities"],
                                inputs["colors"], inputs["viewmats"], inputs["Ks"], width, height, sh_degree=3)
        image.sum().backward()
        synchronize(device)
        if index >= 2:  # two warm-up runs
            times.append(1000 * (time.perf_counter() - started))
        for value in inputs.values():
            value.grad = None
    return statistics.median(times)


WORK = Path(__file__).with_name("work")  # ignored by git: gsplat's examples and the COLMAP folder live here


def write_colmap_scene(folder: Path, images: torch.Tensor, trajectory) -> Path:
    """The frames as images/frame_NNNNN.png and the exact poses as sparse/0 (the pack's COLMAP exporter, binary:
    the pycolmap fork simple_trainer reads COLMAP with parses text models with Python 2 code)."""
    import imageio.v2 as imageio

    (folder / "images").mkdir(parents=True, exist_ok=True)
    names = [f"frame_{index:05d}.png" for index in range(len(images))]
    for name, image in zip(names, images):
        imageio.imwrite(folder / "images" / name, (image.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8))
    write_colmap_binary(folder / "sparse" / "0", trajectory, names)
    return folder


def run_simple_trainer(examples: Path, images: torch.Tensor, trajectory, name: str, preset: Preset,
                       pack_seconds: float | None, initial_points: int | None = None) -> list[str]:
    """gsplat's examples/simple_trainer.py (default strategy, random start, every 8th frame its test split like the
    pack's held-out frames) on the same frames and poses, with the preset's step count, starting points,
    refinement stop and SH schedule: its wall time per step beside the pack's, Gaussians and eval PSNR, as rows."""
    copy = WORK / "gsplat-examples"
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(examples, copy)
    shutil.copy(Path(__file__).with_name("simple_trainer_launch.py"), copy)
    shutil.rmtree(WORK / "scene", ignore_errors=True)
    scene = write_colmap_scene(WORK / "scene", images, trajectory)
    result = WORK / "simple-trainer-result"
    shutil.rmtree(result, ignore_errors=True)
    steps = preset.steps
    command = [sys.executable, "simple_trainer_launch.py", "default", "--data_dir", str(scene), "--data_factor", "1",
               "--result_dir", str(result), "--disable_viewer", "--disable_video", "--init_type", "random",
               "--init_num_pts", str(initial_points or preset.initial_points), "--test_every", "8",
               # its world normalisation fits the principal axes of the model's points, which a poses-only model lacks
               "--no-normalize-world-space", "--sh_degree_interval", str(preset.sh_interval),
               "--strategy.refine-start-iter", str(preset.refine_start), "--strategy.refine-stop-iter",
               str(preset.refine_stop), "--strategy.refine-every", str(preset.refine_every), "--max_steps", str(steps),
               "--eval_steps", str(steps), "--save_steps", str(steps)]
    # simple_trainer's datasets/colmap.py reads COLMAP folders with the pure-Python pycolmap fork gsplat pins
    # (rmbrualla/pycolmap, not PyPI's pycolmap): first on this process's path when it was placed beside the examples
    environment = dict(os.environ)
    if (WORK / "pycolmap-fork").is_dir():
        environment["PYTHONPATH"] = os.pathsep.join([str(WORK / "pycolmap-fork"), environment.get("PYTHONPATH", "")])
    started = time.perf_counter()
    done = subprocess.run(command, cwd=copy, capture_output=True, text=True, env=environment)
    seconds = time.perf_counter() - started
    (WORK / "simple-trainer-log.txt").write_text(done.stdout + done.stderr)
    if done.returncode:
        return [f"- simple_trainer failed ({done.returncode}): `{' '.join(command)}`", "",
                "```", *done.stderr.splitlines()[-25:], "```"]
    train = json.loads((result / "stats" / f"train_step{steps - 1:04d}_rank0.json").read_text())
    evaluation = json.loads((result / "stats" / f"val_step{steps - 1:04d}.json").read_text())
    pack = f"{1000 * pack_seconds / steps:.2f}" if pack_seconds else "n/a"
    return [f"| simple_trainer (gsplat examples) | {steps} | trajectory (exact, not refined) | "
            f"{train['ellipse_time']:.1f} (process {seconds:.1f}) | {evaluation['psnr']:.2f} | {train['mem']:.2f} | "
            f"{train['num_GS']} | n/a |",
            f"\n- per step: simple_trainer {1000 * train['ellipse_time'] / steps:.2f} ms, the pack's {name} "
            f"fit {pack} ms (its whole fit's time, held-out renders included)",
            f"- simple_trainer: `{' '.join(command)}` in a copy of {examples}; its PSNR is its own eval on its test "
            "split (every 8th frame, as the pack holds out), its time its training loop's (ellipse_time)."]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="fast,standard,high", help="comma-separated presets to fit")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a smoke run")
    parser.add_argument("--quick", action="store_true", help="tiny sizes and few steps (checks the script runs)")
    parser.add_argument("--out", type=Path, default=Path(__file__).with_name("RESULTS-recon.md"))
    parser.add_argument("--poses", default="trajectory",
                        help="comma-separated pose modes each preset is fitted with (trajectory: refined; fixed: the "
                             "trajectory as given, what poses=auto fits when SfM does not replace it)")
    parser.add_argument("--skip-sfm", action="store_true", help="skip the SfM-posed fit and the pose check")
    parser.add_argument("--size", default=None, help="frame size WxH (default 720x480; --quick: 64x48)")
    parser.add_argument("--frames", type=int, default=None, help="number of frames (default 49; --quick: 16)")
    parser.add_argument("--steps", type=int, default=None, help="steps for every preset (default: the preset's)")
    parser.add_argument("--initial-points", type=int, default=None, help="random starting points (default: preset)")
    parser.add_argument("--scene-gaussians", type=int, default=None, help="Gaussians of the synthetic truth")
    parser.add_argument("--simple-trainer", type=Path, default=None,
                        help="gsplat's examples/ folder (a v1.5.3 checkout): run its simple_trainer.py beside the "
                             "pack's fits on the same frames and poses (bench/README.md lists what it needs)")
    parser.add_argument("--fallback-steps", type=int, default=100,
                        help="steps of a fit with the PyTorch reference on the GPU, as without gsplat (0: skip)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: run with --device cpu --quick for a smoke run", file=sys.stderr)
        return 2
    width, height, frames = (64, 48, 16) if args.quick else (720, 480, 49)
    if args.size:
        width, height = (int(v) for v in args.size.lower().split("x"))
    frames = args.frames or frames
    scene_size, timing_size, parity_size = (1500, 2000, 500) if args.quick else (60_000, 100_000, 20_000)
    scene_size = args.scene_gaussians or scene_size
    if device.type == "cpu":  # the fwd+bwd figure at 100k Gaussians is a GPU measurement
        timing_size, parity_size = 2000, 500
    steps = {"fast": 60, "standard": 100, "high": 150} if args.quick else {}
    if args.steps:
        steps = dict.fromkeys(PRESETS, args.steps)
    initial_points = args.initial_points or (2000 if args.quick else None)
    report = Report(args.out)

    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "CPU"
    report.add("Machine", [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
        f"- device: {gpu}", f"- torch {torch.__version__} (CUDA {torch.version.cuda}), Python {platform.python_version()}",
        f"- gsplat {version_of('gsplat')}, pycolmap {version_of('pycolmap') or 'absent'}",
        f"- run: {width}x{height}, {frames} frames, truth of {scene_size} Gaussians"
        + (f", {args.steps} steps per preset" if args.steps else "") + (" (--quick)" if args.quick else ""),
        f"- {REFERENCE_NUMBERS}"])

    # gsplat build (compiles on first use) and which rasterizer the fits get
    started = time.perf_counter()
    reason = gsplat_status() if device.type == "cuda" else "CPU run"
    build_seconds = time.perf_counter() - started
    rasterizer = select_rasterizer(device)
    report.add("gsplat", [f"- kernels: {'ready' if not reason else 'unavailable: ' + reason} after "
                          f"{build_seconds:.1f} s (includes the JIT compile when not cached)",
                          f"- fits below use: {rasterizer.name}" + (f" ({rasterizer.notice})" if rasterizer.notice
                                                                   else "")])

    if rasterizer.name == "gsplat":
        lines = ["| quantity | seed 0 | seed 1 |", "| --- | --- | --- |"]
        results = [parity.compare(parity_size, width, height, seed=seed) for seed in (0, 1)]
        for name in results[0]:
            lines.append(f"| {name} | {results[0][name]:.2e} | {results[1][name]:.2e} |")
        worst = max(v for r in results for k, v in r.items() if k != "radii mismatches")
        lines.append(f"\nWorst relative L2 error {worst:.2e} (tolerance {parity.PARITY_TOLERANCE:.0e}): "
                     f"{'PASS' if worst < parity.PARITY_TOLERANCE else 'FAIL'}; {parity_size} Gaussians, "
                     f"{width}x{height}, SH degree 3.")
        report.add("Parity: gsplat vs PyTorch reference (image and gradients)", lines)

    scene = parity.random_scene(timing_size, width, height, device=str(device))
    scene["scales"] = scene["scales"] * 0.5
    lines = ["| rasterizer | fwd+bwd ms (median) | peak GiB |", "| --- | --- | --- |"]
    candidates = [("gsplat", rasterizer.rasterize, 50)] if rasterizer.name == "gsplat" else []
    candidates.append(("PyTorch reference", reference.rasterization, 3))
    for name, function, repeats in candidates:
        peak_memory_reset(device)
        milliseconds = time_fwd_bwd(function, scene, width, height, repeats, device)
        lines.append(f"| {name} | {milliseconds:.2f} | {peak_memory_gib(device)} |")
    lines.append(f"\nOne {width}x{height} view, {timing_size} Gaussians, SH degree 3, gradients for all inputs.")
    report.add("Forward + backward of one view", lines)

    truth = ball_before_wall(scene_size)
    trajectory = orbit_rig(frames, 30.0, width, height)
    images = render_views(truth, trajectory, rasterizer=rasterizer)
    lines = ["| preset | steps | poses | time s | held-out PSNR dB | peak GiB | Gaussians | final loss |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]

    fit_seconds: dict[str, float] = {}  # the fits simple_trainer's steps are set beside

    def fit(preset: str, poses: str, preset_steps: int | None = None, prefer: str = "auto"):
        peak_memory_reset(device)
        result = reconstruct(images, trajectory, ReconstructOptions(
            preset=preset, steps=preset_steps or steps.get(preset), poses=poses, holdout_every=8,
            device=str(device), initial_points=initial_points, seed=0, rasterizer=prefer))
        r = result.report
        label = preset if prefer == "auto" else f"{preset}, {r.backend} rasterizer"
        if prefer == "auto":
            fit_seconds[preset] = r.seconds
        lines.append(f"| {label} | {r.steps} | {r.pose_source} | {r.seconds:.1f} | {r.heldout_psnr:.2f} | "
                     f"{peak_memory_gib(device)} | {r.gaussians} | {r.final_loss:.4f} |")

    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        if preset not in PRESETS:
            parser.error(f"unknown preset {preset!r}")
        for poses in args.poses.split(","):
            fit(preset, poses)
        report.add("Synthetic fits (ball before a wall, 30 deg orbit, every 8th frame held out)", lines)
    if args.simple_trainer:
        for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
            chosen = scaled_preset(PRESETS[preset], steps[preset]) if preset in steps else PRESETS[preset]
            rows = run_simple_trainer(args.simple_trainer, images, trajectory, preset, chosen, fit_seconds.get(preset),
                                      initial_points)
            lines += rows[:1] if rows[0].startswith("|") else []
            report.add("Synthetic fits (ball before a wall, 30 deg orbit, every 8th frame held out)", lines)
            report.add(f"gsplat's simple_trainer ({preset} preset's steps)", rows)
    if rasterizer.name == "gsplat" and args.fallback_steps:
        fit("fast", "trajectory", preset_steps=args.fallback_steps, prefer="torch")
        report.add("Synthetic fits (ball before a wall, 30 deg orbit, every 8th frame held out)", lines)

    if args.skip_sfm or importlib.util.find_spec("pycolmap") is None:
        report.add("SfM poses", ["- skipped: " + ("--skip-sfm" if args.skip_sfm else "pycolmap is not installed")])
    else:
        from dimx_core.recon.poses import compare_poses, run_sfm

        started = time.perf_counter()
        sfm = run_sfm(images.numpy(), trajectory.intrinsics[0])
        sfm_seconds = time.perf_counter() - started
        lines_sfm = [f"- SfM (pycolmap, CPU) on {frames} frames at {width}x{height}: {sfm_seconds:.1f} s"]
        if sfm is None or len(sfm.registered) < 3:
            lines_sfm.append("- SfM found no model on the synthetic frames")
        else:
            estimated = np.stack([sfm.c2w_opencv[i] for i in sfm.registered])
            for label, degrees in (("the true trajectory (30 deg)", 30.0),
                                   ("a trajectory 20% too large (36 deg asked, 30 deg rendered)", 36.0)):
                requested = orbit_rig(frames, degrees, width, height).c2w_opencv[sfm.registered]
                lines_sfm.append(f"- against {label}: {compare_poses(estimated, requested, frames)[0].summary()}")
            fit("fast", "auto")
            report.add("Synthetic fits (ball before a wall, 30 deg orbit, every 8th frame held out)", lines)
            lines_sfm.append("- the 'auto' row above is the fit with SfM poses and SfM starting points (its time "
                             "includes SfM again)")
        report.add("SfM poses", lines_sfm)
    print(f"\nwritten: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
