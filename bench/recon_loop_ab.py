"""A/B of the fit loop's choices on the ball-before-wall orbit with exact poses (bench/RESULTS-recon-loop.md on the
H200; the CPU command below is not recorded yet): the view order (reshuffled every epoch or one shuffled order
repeated), pose refinement of the exact poses (on, or off), densification before or after the optimisers' step.

    python bench/recon_loop_ab.py --variants reshuffle,cycle --preset standard --seeds 0,1            # H200, 720x480
    python bench/recon_loop_ab.py --device cpu --size 96x64 --initial-points 900 --threads 1 \\
        --variants reshuffle,cycle,reshuffle-fixed-poses,cycle-fixed-poses --seeds 0,1 --out /tmp/order.md

Each variant is a patch of the loop for the length of its fits; a row per (variant, seed) is appended to --out as it
finishes. The held-out frames are every 8th; the scene is rendered once with the rasterizer the fits use.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dimx_core.recon import fit as fit_module  # noqa: E402
from dimx_core.recon import train as train_module  # noqa: E402
from dimx_core.recon.raster import select_rasterizer  # noqa: E402
from dimx_core.recon.render import render_views  # noqa: E402
from dimx_core.recon.synthetic import ball_before_wall, orbit_rig  # noqa: E402
from dimx_core.recon.train import ReconstructOptions, reconstruct  # noqa: E402


@contextlib.contextmanager
def patched(owner, name: str, value) -> Iterator[None]:
    original = getattr(owner, name)
    setattr(owner, name, value)
    try:
        yield
    finally:
        setattr(owner, name, original)


def _densify_first(self, step, meta):
    """Densification before the optimisers' step (the loop before recon/fit.py)."""
    self.kind.post_backward(self.strategy, self.params, self.optimizers, self.strategy_state, step, meta,
                            self.means_decay.get_last_lr()[0])
    for optimizer in self.optimizers.values():
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    self.means_decay.step()
    self.poses.step()


def _fixed_poses():
    original = fit_module.SceneOptimizer.__init__

    def init(self, *args, **kwargs):
        original(self, *args, **{**kwargs, "refine_poses": False})
    return patched(fit_module.SceneOptimizer, "__init__", init)


def _together(*patches: Callable[[], contextlib.AbstractContextManager]):
    @contextlib.contextmanager
    def both():
        with contextlib.ExitStack() as stack:
            for patch in patches:
                stack.enter_context(patch())
            yield
    return both


def _cycle():
    """The presets' view order 'cycle': one shuffled order, repeated (the loop before recon/fit.py)."""
    return patched(train_module, "PRESETS", {name: replace(preset, view_order="cycle")
                                             for name, preset in train_module.PRESETS.items()})


def _old_order():
    return patched(fit_module.SceneOptimizer, "step", _densify_first)


VARIANTS: dict[str, tuple[str, Callable[[], contextlib.AbstractContextManager]]] = {
    "reshuffle": ("the loop as it is", contextlib.nullcontext),
    "cycle": ("one shuffled view order, repeated", _cycle),
    "reshuffle-fixed-poses": ("the exact poses not refined", _fixed_poses),
    "cycle-fixed-poses": ("one order repeated, poses not refined", _together(_cycle, _fixed_poses)),
    "old-order": ("densification before the optimisers' step", _old_order),
    "both-old": ("densification before the step, one order repeated", _together(_old_order, _cycle)),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="reshuffle,cycle", help=f"comma-separated: {', '.join(VARIANTS)}")
    parser.add_argument("--preset", default="standard")
    parser.add_argument("--steps", type=int, default=None, help="steps (default: the preset's)")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", default="720x480")
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--scene-gaussians", type=int, default=60_000)
    parser.add_argument("--initial-points", type=int, default=None, help="default: the preset's")
    parser.add_argument("--confidence", default="flow")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None, help="append the rows to this markdown file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    width, height = (int(value) for value in args.size.lower().split("x"))
    device = torch.device(args.device)
    trajectory = orbit_rig(args.frames, 30.0, width, height)
    images = render_views(ball_before_wall(args.scene_gaussians), trajectory, rasterizer=select_rasterizer(device))
    command = " ".join(argv if argv is not None else sys.argv[1:])
    header = ["", f"`python bench/recon_loop_ab.py {command}` ({'load average %.1f / %.1f / %.1f' % os.getloadavg()})",
              "", "| variant | what differs | seed | time s | held-out PSNR dB | Gaussians | final loss |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    print("\n".join(header), flush=True)
    if args.out:
        with args.out.open("a") as out:
            out.write("\n".join(header) + "\n")
    for name in args.variants.split(","):
        description, patch = VARIANTS[name]
        for seed in (int(value) for value in args.seeds.split(",")):
            with patch():
                started = time.perf_counter()
                result = reconstruct(images, trajectory, ReconstructOptions(
                    preset=args.preset, steps=args.steps, poses="trajectory", holdout_every=8, device=args.device,
                    seed=seed, initial_points=args.initial_points, confidence=args.confidence))
            r = result.report
            row = (f"| {name} | {description} | {seed} | {time.perf_counter() - started:.1f} | {r.heldout_psnr:.2f} | "
                   f"{r.gaussians} | {r.final_loss:.4f} |")
            print(row, flush=True)
            if args.out:
                with args.out.open("a") as out:
                    out.write(row + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
