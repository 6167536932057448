"""`dimx image-to-4d` (the whole 4D graph) and `dimx multiview` (the grid alone), in one process or on Ray workers."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import torch

from ..distributed.cli import VIDEOS

PRECISIONS = ("bf16", "fp16", "fp32")


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _setting_up(args):
    """(model parts, runtime here, workers or None, device) from the shared arguments."""
    from ..hooks import Hooks
    from ..recon.cli import _device, _progress_printer
    from ..video.components import ModelSource, dtype_name
    from ..video.runtime import Runtime

    device = torch.device(_device(args.device))
    precision = args.precision or ("bf16" if device.type == "cuda" else "fp32")
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]
    parts = ModelSource(dtype_name(dtype), folder=str(args.model)).load()
    runtime = Runtime.on_device(device, hooks=Hooks(progress=_progress_printer(args.command)), preview_every=0)
    return parts, runtime, VIDEOS.pool(args, _say), device


def _director(path: Path, name: str, role: str):
    from ..directors.adapters import Director
    from ..directors.formats import read_lora

    return Director(name, role, 1.0, read_lora(path))


def _image_to_4d(args) -> None:
    from ..images import read_rgb
    from .image_to_4d import ImageTo4DOptions, image_to_4d

    parts, runtime, workers, device = _setting_up(args)
    image = torch.from_numpy(read_rgb(args.image, "--image")).float() / 255
    options = ImageTo4DOptions(times=args.times, views=args.views, steps=args.steps, guidance=args.guidance,
                               seed=args.seed, pattern=args.pattern, preset=args.preset, poses=args.poses,
                               fit_steps=args.fit_steps, initial_points=args.initial_points, scene_format=args.format)
    cache = args.cache or args.out.with_name(args.out.name + ".cache")
    manifest = image_to_4d(parts, image, args.prompt, _director(args.s_director, args.pattern, "S"),
                           _director(args.t_director, "motion", "T"), options, args.out, cache, runtime,
                           device=device.type, workers=workers, say=_say)
    print(manifest)


def _multiview(args) -> None:
    from ..directors import schedule
    from ..directors.adapters import attach
    from ..identity.latents import build_guide, encode_video
    from ..identity.multiview import VideoCache, evenly_spaced_views, generate_multiview, per_camera, per_frame_requests
    from ..recon.cli import read_frames
    from ..video.cli import write_video
    from ..video.request import SamplerSettings, VideoRequest

    parts, runtime, workers, _ = _setting_up(args)
    frames = torch.from_numpy(read_frames(args.frames)[0])
    (director,) = attach(parts.transformer, [_director(args.s_director, "camera", "S")], parts.spec.describe())
    request = VideoRequest(None, args.prompt, settings=SamplerSettings(steps=args.steps, guidance=args.guidance,
                                                                       seed=args.seed),
                           directors=(director,), schedule=schedule.constant([director.name], args.steps))
    if args.reference_video:
        reference = torch.from_numpy(read_frames(args.reference_video)[0])
        guide = build_guide(encode_video(parts, reference, runtime.place), 0.9, 0.5, 0, 10, 0)
        request = dataclasses.replace(request, start=guide.start, blend=guide.blend)
    cache = VideoCache(args.cache or args.out.with_name(args.out.name + ".cache"))
    grid = generate_multiview(parts, per_frame_requests(frames, request), runtime, cache=cache, workers=workers,
                              views=evenly_spaced_views(args.views, parts.spec.frames))
    for index, video in enumerate(per_camera(grid)):
        print(write_video(video, args.out / f"camera_{index:03d}", 8))


def _shared_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, required=True, help="a CogVideoX-5b-I2V diffusers folder")
    parser.add_argument("--prompt", required=True, help="what the scene shows (every stage uses it)")
    parser.add_argument("--s-director", type=Path, required=True, help="the S-Director LoRA (camera path)")
    parser.add_argument("--views", type=int, required=True, help="K: cameras kept from each video, evenly spaced")
    parser.add_argument("--out", type=Path, required=True, help="folder to write")
    parser.add_argument("--cache", type=Path,
                        help="where finished videos are kept so a killed run resumes (default: OUT.cache)")
    parser.add_argument("--steps", type=int, default=50, help="denoising steps of every video (default 50)")
    parser.add_argument("--guidance", type=float, default=6.0, help="classifier-free guidance (default 6)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the videos (default 7, as the workflow)")
    parser.add_argument("--device", choices=("cpu", "cuda"), help="where this process runs (default: cuda if any)")
    parser.add_argument("--precision", choices=PRECISIONS, help="default: bf16 on cuda, fp32 on cpu")
    VIDEOS.add(parser)


def register(commands) -> None:
    from ..camera.patterns import PATTERNS
    from ..recon.files import SCENE_FORMATS
    from ..recon.poses import POSE_MODES
    from ..recon.train4d import PRESETS_4D

    four_d = commands.add_parser(
        "image-to-4d", help="one image to a 4D scene: the whole graph of workflows/image_to_4d.json",
        description="Temporal video (T-Director), reference frame, reference video (S-Director), identity guide, "
                    "multi-view grid (one video per time), appearance refinement, 4D fit and the scene folder, with "
                    "the example workflow's defaults. Every video is kept in --cache as it is made: run the same "
                    "command again after a kill and it goes on where it stopped.")
    _shared_arguments(four_d)
    four_d.add_argument("--image", type=Path, required=True, help="the input image")
    four_d.add_argument("--t-director", type=Path, required=True, help="the T-Director LoRA (motion)")
    four_d.add_argument("--times", type=int, required=True, help="N: the first N frames of the temporal video")
    four_d.add_argument("--pattern", choices=tuple(PATTERNS), default="orbit_left",
                        help="the S-Director's camera motion, for the 4D fit's poses (default orbit_left)")
    four_d.add_argument("--preset", choices=tuple(PRESETS_4D), default="fast", help="4D fit preset (default fast)")
    four_d.add_argument("--poses", choices=POSE_MODES, default="auto", help="camera poses of the fit (default auto)")
    four_d.add_argument("--fit-steps", type=int, help="4D fit steps (default: the preset's)")
    four_d.add_argument("--initial-points", type=int, help="starting Gaussians (default: the preset's)")
    four_d.add_argument("--format", choices=tuple(SCENE_FORMATS), default="ply", help="scene files (default ply)")
    four_d.set_defaults(run=_image_to_4d)

    grid = commands.add_parser(
        "multiview", help="the multi-view grid alone: one S-Director video per temporal frame, K cameras each",
        description="For every frame in --frames, the S-Director video that starts from it (same path, same seed, "
                    "the identity guide of --reference-video if given), regrouped into K per-camera videos written "
                    "as PNG folders OUT/camera_000, ... Resumable from --cache.")
    _shared_arguments(grid)
    grid.add_argument("--frames", type=Path, required=True, help="the temporal frames: a folder of images or a video")
    grid.add_argument("--reference-video", type=Path, help="v_ref (the model's size and length) for the identity guide")
    grid.set_defaults(run=_multiview)
