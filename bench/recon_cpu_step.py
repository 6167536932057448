"""Where one late fit step's CPU time goes on the fallback rasterizer (bench/RESULTS-recon-cpu.md, "Where a late
step's time goes"): the fit loop's calls at a step after refinement (every SH band on) with COUNT Gaussians, each
piece timed with time.process_time by wrapping it.

    nice -n 10 python bench/recon_cpu_step.py --gaussians 60000 --size 160x120 --steps 6
"""
from __future__ import annotations

import argparse
import collections
import os
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dimx_core.recon import reference  # noqa: E402
from dimx_core.recon.fit import SceneOptimizer  # noqa: E402
from dimx_core.recon.init import initial_gaussians  # noqa: E402
from dimx_core.recon.loss import photometric_map  # noqa: E402
from dimx_core.recon.raster import select_rasterizer  # noqa: E402
from dimx_core.recon.render import render_views  # noqa: E402
from dimx_core.recon.synthetic import ball_before_wall, orbit_rig  # noqa: E402
from dimx_core.recon.train import PRESETS  # noqa: E402

SECONDS: collections.defaultdict[str, float] = collections.defaultdict(float)


def timed(name: str, function):
    def run(*args, **kwargs):
        started = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            SECONDS[name] += time.process_time() - started
    return run


def time_backwards() -> None:
    """Every autograd Function of the rasterizer with its backward timed (its forward is within its stage's)."""
    for name in ("_Project", "_ProjectCompiled", "_ShadeCompiled", "_CompositeTiles", "_CompositeCompiled"):
        function = getattr(reference, name)
        function.backward = staticmethod(timed(f"backward: {name}", function.backward))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gaussians", type=int, default=60_000)
    parser.add_argument("--size", default="160x120")
    parser.add_argument("--steps", type=int, default=6, help="timed steps (after two untimed)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--kernels", default="auto", help="auto, or an entry of reference.KERNELS")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    width, height = (int(value) for value in args.size.lower().split("x"))
    trajectory = orbit_rig(24, 30.0, width, height)
    frames = render_views(ball_before_wall(3000), trajectory)
    preset = PRESETS["fast"]
    scene = initial_gaussians(trajectory, frames.numpy(), count=args.gaussians, sh_degree=3, seed=0)
    fit = SceneOptimizer(scene, trajectory, preset, device=torch.device("cpu"), refine_poses=True)
    rasterizer = select_rasterizer("cpu")
    late = preset.refine_stop + 1  # no densification: the count stays fixed
    for name in ("evaluate_sh", "_tile_lists", "_exponents", "_gather", "_pick_once"):
        setattr(reference, name, timed(f"forward: {name}", getattr(reference, name)))
    time_backwards()
    stages = reference._kernels(args.kernels, torch.device("cpu"))
    timed_stages = stages._replace(**{field: timed(f"forward: {field}", getattr(stages, field))
                                      for field in ("project", "shade", "composite_view")})
    reference._kernels = lambda name, device: timed_stages
    for name, optimizer in fit.optimizers.items():
        optimizer.step = timed("Adam (all groups)", optimizer.step)

    def step(view: int) -> None:
        params = fit.params
        image, _, meta = timed("forward in all", rasterizer.render)(
            params["means"], params["quats"], params["scales"], params["opacities"], fit.colours(),
            fit.poses.world_to_camera(view), fit.intrinsics[view:view + 1], width, height, sh_degree=3,
            background=torch.zeros(3))
        fit.before_backward(late, meta)
        loss = timed("loss", lambda: photometric_map(image[0], frames[view]).mean())()
        timed("backward in all", loss.backward)()
        timed("optimisers, poses and strategy", fit.step)(late, meta)

    for view in (1, 2):
        step(view)
    SECONDS.clear()
    started = time.process_time()
    for index in range(args.steps):
        step(3 + index % 20)
    total = (time.process_time() - started) / args.steps
    print(f"{args.gaussians} Gaussians at {width}x{height}, {args.threads} thread(s), {args.kernels} kernels, load average "
          f"{'%.1f / %.1f / %.1f' % os.getloadavg()}: {total:.3f} CPU s a step\n")
    print("| piece | CPU s a step |\n| --- | --- |")
    for name, seconds in SECONDS.items():
        print(f"| {name} | {seconds / args.steps:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
