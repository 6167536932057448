"""Which random start suits the 4D fit (recon/init.py STARTS, the preset field `start`): the 4D fit of the synthetic
moving scene (8 cameras on a 40-degree orbit x 4 times of a ball sliding before a wall, 48x32, the 1-in-8 diagonals
held out) from each start, without densification (300 steps, the unit test's fit) and with it (1200 steps).

    python bench/recon4d_start.py --starts cube,frustum --points 300,1200 --threads 2 --out /tmp/start4d.md  # ~6 min

The static column is the canonical scene rendered without its motion on the same held-out frames.
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.recon_loop_ab import patched  # noqa: E402
from bench.recon_plain import emit  # noqa: E402
from dimx_core.recon import train4d as train4d_module  # noqa: E402
from dimx_core.recon.render import render_views  # noqa: E402
from dimx_core.recon.synthetic import dynamic_frames, orbit_rig  # noqa: E402
from dimx_core.recon.train import psnr  # noqa: E402
from dimx_core.recon.train4d import PRESETS_4D, Reconstruct4DOptions, fitted_times, reconstruct_4d  # noqa: E402

VIEWS, TIMES, WIDTH, HEIGHT = 8, 4, 48, 32
RUNS = {"fixed": (300, False), "densified": (1200, True)}  # steps, densify


def with_start(start: str):
    """The 4D presets with `start` as their random start."""
    return patched(train4d_module, "PRESETS_4D", {name: replace(preset, fit=replace(preset.fit, start=start))
                                                  for name, preset in PRESETS_4D.items()})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--starts", default="cube,frustum")
    parser.add_argument("--points", default="300,1200", help="comma-separated starting point counts")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cameras = orbit_rig(VIEWS, 40.0, WIDTH, HEIGHT)
    frames = dynamic_frames(cameras, fitted_times(TIMES), 1000)
    lines = ["", f"`python bench/recon4d_start.py {' '.join(argv if argv is not None else sys.argv[1:])}` "
             f"(load average {'%.1f / %.1f / %.1f' % os.getloadavg()})", "",
             "| start | run | points | steps | held-out PSNR dB | static dB | Gaussians |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    emit(lines, args.out)
    for start in args.starts.split(","):
        for run, (steps, densify) in RUNS.items():
            for points in (int(value) for value in args.points.split(",")):
                with with_start(start):
                    result = reconstruct_4d(frames, VIEWS, TIMES, cameras, Reconstruct4DOptions(
                        steps=steps, initial_points=points, holdout_every=8, reference_time=1, confidence="none",
                        densify=densify, poses="trajectory"))
                scene, held = result.gaussians, result.report.heldout_frames
                views = [frame // TIMES for frame in held]
                static = render_views(replace(scene, deformation=None), replace(
                    scene.cameras, c2w_opencv=scene.cameras.c2w_opencv[views],
                    intrinsics=scene.cameras.intrinsics[views]))
                emit([f"| {start} | {run} | {points} | {steps} | {result.report.heldout_psnr:.2f} | "
                      f"{psnr(static, frames[held]):.2f} | {len(scene)} |"], args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
