"""The pack's fit against a plain gsplat fit on scenes with exact poses (issue 14 item 3: "never worse than a plain
fit"). The plain fit is the loop of gsplat's examples/simple_trainer.py with its defaults, written out short here:
random points in a cube of 3 x its scene scale around the cameras' focus, scales from the 3 nearest neighbours,
random colours, opacity 0.1; one Adam per group at its rates; its DefaultStrategy (refinement from step 500 to 15000
every 100, grow_grad2d 0.0002); one SH band more every 1000 steps; 0.8 L1 + 0.2 (1 - SSIM) with SSIM's 'valid'
padding; views drawn without replacement, reshuffled every epoch; poses as given, never refined.

    python bench/recon_plain.py --device cpu --threads 1 --size 96x64 --frames 24 --steps 1500 --points 2000 \\
        --scenes ball,ground --fits plain,pack,pack-fixed-poses --out /tmp/plain.md
    python bench/recon_plain.py --size 720x480 --frames 49 --steps 7000 --points 100000 --out $OUT/plain.md  # GPU

Rows are appended to --out as each fit ends. Held out: every 8th frame, scored on the exact poses.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.recon_loop_ab import _fixed_poses, _together, patched  # noqa: E402
from dimx_core.recon import fit as fit_module, init as init_module, pose_refinement, train as train_module  # noqa: E402
from dimx_core.recon.gaussians import Gaussians, rgb_to_sh_dc  # noqa: E402
from dimx_core.recon.raster import select_rasterizer  # noqa: E402
from dimx_core.recon.render import camera_tensors, render_views  # noqa: E402
from dimx_core.recon.synthetic import ball_before_wall, ball_on_fine_ground, orbit_rig  # noqa: E402
from dimx_core.recon.train import PRESETS, ReconstructOptions, psnr, reconstruct  # noqa: E402

SCENES = {"ball": ball_before_wall, "ground": ball_on_fine_ground}


def focus_point(c2w: np.ndarray) -> np.ndarray:
    """The point nearest to every camera's optical axis (least squares), where simple_trainer centres its world."""
    directions, origins = c2w[:, :3, 2], c2w[:, :3, 3]
    projectors = np.eye(3)[None] - directions[:, :, None] * directions[:, None, :]
    return np.linalg.solve(projectors.sum(axis=0), (projectors @ origins[:, :, None]).sum(axis=0))[:, 0]


def gsplat_scene_scale(trajectory) -> float:
    """simple_trainer's scene scale: 1.1 x the cameras' largest distance from their mean."""
    return 1.1 * init_module.camera_extent(trajectory)


def cube_points(trajectory, count: int, generator: torch.Generator) -> torch.Tensor:
    """simple_trainer's random points: a cube of 3 x its scene scale around the cameras' focus."""
    centre = torch.as_tensor(focus_point(trajectory.c2w_opencv), dtype=torch.float32)
    return centre + 3.0 * gsplat_scene_scale(trajectory) * (torch.rand(count, 3, generator=generator) * 2 - 1)


def plain_start(trajectory, count: int, generator: torch.Generator) -> tuple[Gaussians, float]:
    """simple_trainer's random start and its scene scale (1.1 x the cameras' largest distance from their mean)."""
    means = cube_points(trajectory, count, generator)
    log_scales = torch.as_tensor(np.log(init_module.neighbour_scales(means.numpy(), 0.0)), dtype=torch.float32)
    sh = torch.zeros(count, 16, 3)
    sh[:, 0] = rgb_to_sh_dc(torch.rand(count, 3, generator=generator))
    scene = Gaussians(means=means, log_scales=log_scales[:, None].repeat(1, 3),
                      quats_wxyz=torch.rand(count, 4, generator=generator),
                      opacity_logits=torch.full((count,), math.log(0.1 / 0.9)), sh=sh)
    return scene, gsplat_scene_scale(trajectory)


def plain_fit(images: torch.Tensor, trajectory, *, steps: int, points: int, seed: int, device: torch.device):
    """(held-out PSNR, Gaussians, seconds) of the plain loop on `images` with the exact `trajectory`."""
    import kornia
    from gsplat.strategy import DefaultStrategy

    started = time.perf_counter()
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    rasterizer = select_rasterizer(device)
    start, scale = plain_start(trajectory, points, generator)
    params = {name: torch.nn.Parameter(value.to(device).contiguous()) for name, value in {
        "means": start.means, "scales": start.log_scales, "quats": start.quats_wxyz,
        "opacities": start.opacity_logits, "sh0": start.sh[:, :1], "shN": start.sh[:, 1:]}.items()}
    rates = dict(fit_module.LEARNING_RATES, means=fit_module.LEARNING_RATES["means"] * scale)
    optimizers = {name: torch.optim.Adam([param], lr=rates[name], eps=1e-15) for name, param in params.items()}
    decay = torch.optim.lr_scheduler.ExponentialLR(optimizers["means"], gamma=0.01 ** (1.0 / steps))
    strategy = DefaultStrategy()
    state = strategy.initialize_state(scene_scale=scale)
    viewmats, intrinsics = (tensor.to(device) for tensor in camera_tensors(trajectory))
    heldout = [index for index in range(len(trajectory)) if index % 8 == 0]
    training = [index for index in range(len(trajectory)) if index % 8]
    targets = images.to(device)
    order: list[int] = []
    for step in range(steps):
        if not order:
            order = [training[i] for i in torch.randperm(len(training), generator=generator).tolist()]
        view = order.pop()
        colours = torch.cat([params["sh0"], params["shN"]], dim=1)
        image, _, meta = rasterizer.render(params["means"], params["quats"], params["scales"], params["opacities"],
                                           colours, viewmats[view:view + 1], intrinsics[view:view + 1],
                                           trajectory.width, trajectory.height, sh_degree=min(step // 1000, 3))
        strategy.step_pre_backward(params, optimizers, state, step, meta)
        render, target = image[0].permute(2, 0, 1)[None], targets[view].permute(2, 0, 1)[None]
        loss = (0.8 * (render - target).abs().mean()
                + 0.2 * (1.0 - kornia.metrics.ssim(render, target, 11, padding="valid").mean()))
        loss.backward()
        for optimizer in optimizers.values():
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        decay.step()
        strategy.step_post_backward(params, optimizers, state, step, meta, packed=False)
    with torch.no_grad():
        scene = Gaussians(means=params["means"].cpu(), log_scales=params["scales"].cpu(),
                          quats_wxyz=params["quats"].cpu(), opacity_logits=params["opacities"].cpu(),
                          sh=torch.cat([params["sh0"], params["shN"]], dim=1).cpu())
    scored = replace_views(trajectory, heldout)
    renders = render_views(scene, scored, rasterizer=rasterizer)
    return psnr(renders, images[heldout]), len(scene), time.perf_counter() - started


def replace_views(trajectory, views: list[int]):
    return replace(trajectory, c2w_opencv=trajectory.c2w_opencv[views], intrinsics=trajectory.intrinsics[views])


PACK = {"preset": "standard"}  # --preset: the pack's preset, stretched to --steps
PERTURBATION = {"degrees": 0.5, "shift": 0.01}  # --perturb: each perturbed camera's rotation and move (share of scale)


def perturbed(trajectory, seed: int):
    """`trajectory` with every camera but the held-out ones (every 8th, scored on their exact poses) and the first
    one the fit sees (which anchors the frame) turned by PERTURBATION degrees about a random axis and moved by its
    share of the scene scale in a random direction: a video that follows its planned path only roughly."""
    from scipy.spatial.transform import Rotation

    from dimx_core.recon.init import scene_scale

    rng = np.random.default_rng(seed)
    c2w = trajectory.c2w_opencv.copy()
    moved = [index for index in range(len(c2w)) if index % 8 and index != 1]
    axes = rng.normal(size=(len(moved), 3))
    turns = Rotation.from_rotvec(np.radians(PERTURBATION["degrees"]) * axes / np.linalg.norm(axes, axis=1,
                                                                                             keepdims=True))
    shifts = rng.normal(size=(len(moved), 3))
    shifts *= PERTURBATION["shift"] * scene_scale(trajectory) / np.linalg.norm(shifts, axis=1, keepdims=True)
    c2w[moved, :3, :3] = c2w[moved, :3, :3] @ turns.as_matrix()
    c2w[moved, :3, 3] += shifts
    return replace(trajectory, c2w_opencv=c2w)


def pack_fit_perturbed(images, trajectory, *, steps: int, points: int, seed: int, device: torch.device):
    return pack_fit(images, perturbed(trajectory, seed), steps=steps, points=points, seed=seed, device=device)


def pack_fit(images, trajectory, *, steps: int, points: int, seed: int, device: torch.device):
    result = reconstruct(images, trajectory, ReconstructOptions(
        preset=PACK["preset"], steps=steps, poses="trajectory", holdout_every=8, device=str(device), seed=seed,
        initial_points=points, confidence="none"))
    return result.report.heldout_psnr, result.report.gaussians, result.report.seconds


def _eager_correction():
    """The pose correction's kernels launched one by one (no CUDA graph)."""
    return patched(pose_refinement, "graphed_correction", lambda device: pose_refinement.corrected_world_to_camera)


def _gsplat_scene_scale():
    """The pack's scene scale as gsplat's trainer has it, 1.1 x the cameras' extent, without the pack's floor of half
    the scene depth (a 30-degree orbit's cameras span about half their distance to the scene)."""
    return patched(fit_module, "scene_scale", gsplat_scene_scale)


def _plain_start():
    """The pack's fit from the plain loop's starting Gaussians (a cube of 3 x the scene scale, random colours)."""
    def start(cameras, frames, *, count: int, sh_degree: int, seed: int, points=None, colours=None) -> Gaussians:
        return plain_start(cameras, count, torch.Generator().manual_seed(seed))[0]
    return patched(train_module, "initial_gaussians", start)


def _unscaled_grow():
    return patched(fit_module, "GROW_REFERENCE_HEIGHT", 0)


FITS = {
    "plain": ("the plain loop (simple_trainer's)", plain_fit, None),
    "pack": ("the pack: its preset (--preset) stretched to the steps, confidence none", pack_fit, None),
    "pack-fixed-poses": ("the pack, the exact poses not refined", pack_fit, _fixed_poses),
    "pack-perturbed": ("the pack, the training poses perturbed (--perturb), refined", pack_fit_perturbed, None),
    "pack-perturbed-fixed-poses": ("the pack, the training poses perturbed (--perturb), not refined",
                                   pack_fit_perturbed, _fixed_poses),
    "pack-eager-poses": ("the pack, the pose correction launched op by op (no CUDA graph)", pack_fit,
                         _eager_correction),
    "pack-perturbed-eager-poses": ("the pack, poses perturbed, refined op by op (no CUDA graph)",
                                   pack_fit_perturbed, _eager_correction),
    "pack-gsplat-scale": ("the pack, the exact poses not refined, gsplat's scene scale (no depth floor)", pack_fit,
                          _together(_fixed_poses, _gsplat_scene_scale)),
    "pack-plain-start": ("the pack, the exact poses not refined, from the plain loop's starting Gaussians", pack_fit,
                         _together(_fixed_poses, _plain_start)),
    "pack-unscaled-grow": ("the pack, gsplat's grow_grad2d not scaled by the frame height", pack_fit,
                           _unscaled_grow),
    "pack-plain-start-unscaled-grow": ("the pack, exact poses kept, the plain loop's start and grow_grad2d",
                                       pack_fit, _together(_fixed_poses, _plain_start, _unscaled_grow)),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fits", default="plain,pack", help=f"comma-separated: {', '.join(FITS)}")
    parser.add_argument("--scenes", default="ball,ground", help=f"comma-separated: {', '.join(SCENES)}")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--size", default="720x480")
    parser.add_argument("--frames", type=int, default=49)
    parser.add_argument("--steps", type=int, default=7000)
    parser.add_argument("--points", type=int, default=100_000, help="starting points of every fit")
    parser.add_argument("--scene-gaussians", type=int, default=60_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=tuple(PRESETS), default="standard",
                        help="the pack's preset in its fits (its schedules stretched to --steps)")
    parser.add_argument("--preset-change", default="", metavar="FIELD=VALUE,...",
                        help="fields of that preset replaced for this run, e.g. refine_stop=3000,sh_interval=1000")
    parser.add_argument("--perturb", default="0.5,0.01",
                        help="the perturbed fits' turn of each camera in degrees and its move as a share of the scene "
                             "scale")
    parser.add_argument("--pose-rate", type=float, default=None,
                        help="pose refinement's learning rate instead of gsplat's (pose_refinement.POSE_LEARNING_RATE)")
    parser.add_argument("--profile", type=int, default=0, metavar="ROWS",
                        help="profile each fit (torch.profiler) and add its ROWS operators of most host time: the fit "
                             "is bound by launching kernels. Keep --steps to a few hundred on the GPU (the table of "
                             "a 1500-step fit took over 90 s to build)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    PACK["preset"] = args.preset
    if args.preset_change:
        changes = dict(change.split("=") for change in args.preset_change.split(","))
        PRESETS[args.preset] = replace(PRESETS[args.preset], **{field: int(value) if value.isdigit() else value
                                                                  for field, value in changes.items()})
    PERTURBATION["degrees"], PERTURBATION["shift"] = (float(value) for value in args.perturb.split(","))
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.pose_rate is not None:
        pose_refinement.POSE_LEARNING_RATE = args.pose_rate
    device = torch.device(args.device)
    width, height = (int(value) for value in args.size.lower().split("x"))
    trajectory = orbit_rig(args.frames, 30.0, width, height)
    lines = ["", f"`python bench/recon_plain.py {' '.join(argv if argv is not None else sys.argv[1:])}` "
             f"({'load average %.1f / %.1f / %.1f' % os.getloadavg()})", "",
             "| scene | fit | steps | time s | held-out PSNR dB | Gaussians |", "| --- | --- | --- | --- | --- | --- |"]
    emit(lines, args.out)
    for scene_name in args.scenes.split(","):
        images = render_views(SCENES[scene_name](args.scene_gaussians), trajectory,
                              rasterizer=select_rasterizer(device))
        for fit_name in args.fits.split(","):
            description, run, patch = FITS[fit_name]
            with (patch() if patch else contextlib.nullcontext()), profiled(args.profile) as recorded:
                score, count, seconds = run(images, trajectory, steps=args.steps, points=args.points, seed=args.seed,
                                            device=device)
            emit([f"| {scene_name} | {fit_name}: {description} | {args.steps} | {seconds:.1f} | {score:.2f} | "
                  f"{count} |"], args.out)
            if recorded:
                table = recorded[0].key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profile,
                                                         max_name_column_width=60)
                emit(["", f"Profile of {fit_name} ({args.steps} steps, times under the profiler):", "```",
                      *table.splitlines(), "```", "", "| scene | fit | steps | time s | held-out PSNR dB | Gaussians |",
                      "| --- | --- | --- | --- | --- | --- |"], args.out)
    return 0


@contextlib.contextmanager
def profiled(rows: int):
    """[the profile] of what runs inside when `rows` > 0, else []."""
    if not rows:
        yield []
        return
    from torch.profiler import ProfilerActivity, profile

    recorded = []
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    with profile(activities=activities) as session:
        yield recorded
    recorded.append(session)


def emit(lines: list[str], out: Path | None) -> None:
    print("\n".join(lines), flush=True)
    if out:
        with out.open("a") as handle:
            handle.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
