"""`dimx reconstruct-4d`: the 4D reconstruction stage without ComfyUI."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli import _device, _progress_printer, add_fit_options, read_frames


def _reconstruct_4d(args) -> None:
    from ..camera.formats import read_transforms_json
    from ..hooks import Hooks
    from .files4d import save_scene_4d
    from .train4d import Reconstruct4DOptions, kept_cameras, reconstruct_4d

    frames, names = read_frames(args.frames)
    path, _ = read_transforms_json(args.trajectory)
    cameras = kept_cameras(path, args.views)
    options = Reconstruct4DOptions(preset=args.preset, steps=args.steps, reference_time=args.reference_time,
                                   seed=args.seed, poses=args.poses, confidence=args.confidence,
                                   initial_points=args.initial_points, holdout_every=args.holdout_every,
                                   lpips_weight=args.lpips_weight, lpips_weights=args.lpips_vgg and str(args.lpips_vgg),
                                   device=_device(args.device))
    print(f"{len(frames)} frames ({names[0]} ... {names[-1]}) as {args.views} cameras x {args.times} times, camera "
          f"after camera; cameras: {len(cameras)} of the {len(path)} poses in {args.trajectory.name}", file=sys.stderr)
    result = reconstruct_4d(frames, args.views, args.times, cameras, options,
                            hooks=Hooks(progress=_progress_printer("reconstruct-4d")))
    print(save_scene_4d(args.out, result.gaussians, scene_format=args.format))
    print(result.report.as_text(), file=sys.stderr)


def register(commands: argparse._SubParsersAction) -> None:
    from .files import SCENE_FORMATS
    from .poses import POSE_MODES
    from .train4d import PRESETS_4D

    recon = commands.add_parser(
        "reconstruct-4d", help="fit a deformable (4D) Gaussian-splat scene to multi-view videos",
        description="Fit canonical Gaussians and a deformation field to K per-camera videos of N frames (frames "
                    "sorted by name, camera after camera: frame j*N+i is camera j at time i), seen from the cameras "
                    "kept from the S-Director path in --trajectory (the same evenly spaced poses Multi-View Generate "
                    "keeps). Writes a 4D scene folder: one scene file per time, the canonical scene, the field and "
                    "a scene.dimx4d.json manifest (printed).")
    recon.add_argument("--frames", type=Path, required=True, help="folder of images or a video file")
    recon.add_argument("--views", type=int, required=True, help="K, the number of cameras")
    recon.add_argument("--times", type=int, required=True, help="N, the frames of each camera video")
    recon.add_argument("--trajectory", type=Path, required=True,
                       help="transforms.json of the S-Director path (all its poses, or exactly the K kept ones)")
    recon.add_argument("--out", type=Path, required=True, help="folder to write the 4D scene into")
    recon.add_argument("--reference-time", type=int, default=0,
                       help="time index the warm-up fits and the canonical scene shows (default 0)")
    recon.add_argument("--poses", choices=POSE_MODES, default="auto",
                       help="camera poses from the reference time's views: SfM checked against the trajectory "
                            "else the trajectory as given (auto, default), the trajectory refined with the scene "
                            "(trajectory), the trajectory as given (fixed), or SfM only")
    recon.add_argument("--preset", choices=tuple(PRESETS_4D), default="fast",
                       help="fast (6k steps, default), standard (14k) or high (30k)")
    add_fit_options(recon, holdout_help="score frames on every k-th diagonal of the camera x time grid, kept out "
                                        "of the fit (default 0: use all)")
    recon.add_argument("--format", choices=tuple(SCENE_FORMATS), default="ply",
                       help="format of the canonical and per-time scene files (default ply)")
    recon.set_defaults(run=_reconstruct_4d)
