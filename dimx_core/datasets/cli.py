"""`dimx dataset spatial` and `dimx dataset temporal`: dimension-variant datasets from the shell."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..camera import patterns
from ..camera.planner import EASINGS
from .settings import OccupancySettings, SpatialSettings, StillCameraTest, TemporalSettings

SPATIAL_DEFAULTS, OCCUPANCY_DEFAULTS = SpatialSettings(patterns=("orbit_left",)), OccupancySettings()
TEMPORAL_DEFAULTS, TEST_DEFAULTS = TemporalSettings(), StillCameraTest()


def _geometry(args):
    from ..video.components import read_spec
    from ..video.sampling import FPS
    from .layout import ClipGeometry

    if args.model is not None:
        spec = read_spec(args.model)
        return ClipGeometry(spec.width, spec.height, spec.frames, float(FPS))
    return ClipGeometry(args.width, args.height, args.frames, float(FPS))


def _progress(label: str):
    def progress(step: int, total: int, preview) -> None:
        print(f"{label}: {step}/{total}", file=sys.stderr, flush=True)

    return progress


def _text_or_file(value: str) -> str:
    path = Path(value)
    return path.read_text(encoding="utf-8") if value and path.is_file() else value


def _finish(summary, folder: Path) -> None:
    print(summary.report, file=sys.stderr)
    print(f"{summary.describe()}: {folder}")


def _spatial(args) -> None:
    import torch

    from ..files import atomic_folder
    from ..hooks import Hooks
    from ..recon.files import load_scene
    from ..recon.raster import select_rasterizer
    from .spatial import Scene, build_spatial_dataset

    occupancy = OccupancySettings(opacity_threshold=args.opacity_threshold, clearance=args.clearance,
                                  box_margin=args.box_margin)
    settings = SpatialSettings(patterns=tuple(p.strip() for p in args.patterns.split(",") if p.strip()),
                               clips_per_pattern=args.clips, angle_deg=args.angle,
                               distance_fraction=args.distance_fraction, easing=args.easing,
                               attempts=args.attempts, seed=args.seed, templates=_text_or_file(args.captions),
                               occupancy=occupancy)
    scenes = [Scene(path.stem, load_scene(path)) for path in args.scene]
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    rasterizer = select_rasterizer(torch.device(device))
    with atomic_folder(args.out) as folder:
        summary = build_spatial_dataset(folder, scenes, _geometry(args), settings, rasterizer=rasterizer,
                                        hooks=Hooks(progress=_progress("clips")))
    _finish(summary, args.out)


def _temporal(args) -> None:
    from ..files import atomic_folder
    from ..hooks import Hooks
    from .temporal import curate_temporal_dataset, find_videos

    test = StillCameraTest(still_px=args.still_px, min_static_share=args.min_static_share,
                           max_background_flow=args.max_background_flow, min_texture_share=args.min_texture_share)
    settings = TemporalSettings(test=test, frame_stride=args.frame_stride,
                                max_clips_per_video=args.max_clips_per_video, template=args.caption)
    videos = find_videos(args.videos)
    with atomic_folder(args.out) as folder:
        summary = curate_temporal_dataset(folder, videos, _geometry(args), settings,
                                          hooks=Hooks(progress=_progress("videos")))
    _finish(summary, args.out)


def _add_geometry(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, default=None,
                        help="the model the dataset is for: clips get its size and frame count (read from its "
                             "configs; no weights are loaded). Without it: --width/--height/--frames")
    parser.add_argument("--width", type=int, default=720, help="clip width without --model (default 720)")
    parser.add_argument("--height", type=int, default=480, help="clip height without --model (default 480)")
    parser.add_argument("--frames", type=int, default=49, help="frames per clip without --model (default 49)")
    parser.add_argument("--out", type=Path, required=True, help="dataset folder to create (must not exist)")


def register(commands) -> None:
    dataset = commands.add_parser("dataset", help="build a dimension-variant dataset (spatial or temporal)",
                                  description="Build the datasets directors are trained on (see "
                                              "dimx_core/datasets/layout.py for the folder layout).")
    kinds = dataset.add_subparsers(dest="dataset_kind", required=True, metavar="KIND")

    spatial = kinds.add_parser(
        "spatial", help="render clips of Gaussian scenes along S-Director camera paths",
        description="Spatial-variant clips: start poses drawn in the PCA box of each scene's cameras, the "
                    "pattern's path planned from there, paths that leave the covered region or come near a surface "
                    "(depth rendered from the Gaussians) refused, the rest rendered at the model's size.")
    spatial.add_argument("--scene", type=Path, action="append", required=True,
                         help="a .ply/.splat scene with its <name>.transforms.json beside it (repeatable)")
    spatial.add_argument("--patterns", required=True,
                         help="comma-separated camera motions: " + ", ".join(patterns.PATTERNS))
    spatial.add_argument("--clips", type=int, default=SPATIAL_DEFAULTS.clips_per_pattern,
                         help=f"clips per pattern, the scenes taken in turn (default "
                              f"{SPATIAL_DEFAULTS.clips_per_pattern})")
    spatial.add_argument("--angle", type=float, default=SPATIAL_DEFAULTS.angle_deg,
                         help=f"degrees of rotations and orbits (default {SPATIAL_DEFAULTS.angle_deg:g})")
    spatial.add_argument("--distance-fraction", type=float, default=SPATIAL_DEFAULTS.distance_fraction,
                         help="translations: this fraction of the start's distance to the scene's centre (default "
                              f"{SPATIAL_DEFAULTS.distance_fraction:g})")
    spatial.add_argument("--easing", choices=EASINGS, default=SPATIAL_DEFAULTS.easing, help="default linear")
    spatial.add_argument("--attempts", type=int, default=SPATIAL_DEFAULTS.attempts,
                         help=f"start poses tried per clip (default {SPATIAL_DEFAULTS.attempts})")
    spatial.add_argument("--seed", type=int, default=0, help="seed of the start poses (default 0)")
    spatial.add_argument("--captions", default="",
                         help="caption templates, 'pattern: text' per line or one text for all (or a file holding "
                              "them); placeholders {scene} {pattern} {motion} {magnitude}")
    spatial.add_argument("--opacity-threshold", type=float, default=OCCUPANCY_DEFAULTS.opacity_threshold,
                         help="accumulated opacity where rendered depth counts as surface (default "
                              f"{OCCUPANCY_DEFAULTS.opacity_threshold:g})")
    spatial.add_argument("--clearance", type=float, default=OCCUPANCY_DEFAULTS.clearance,
                         help="closest approach to a surface, x the scene distance (default "
                              f"{OCCUPANCY_DEFAULTS.clearance:g})")
    spatial.add_argument("--box-margin", type=float, default=OCCUPANCY_DEFAULTS.box_margin,
                         help="the camera box grown by this, x the scene distance (default "
                              f"{OCCUPANCY_DEFAULTS.box_margin:g})")
    spatial.add_argument("--device", choices=("cpu", "cuda"), default=None,
                         help="where to render (gsplat on cuda); default: cuda when available")
    _add_geometry(spatial)
    spatial.set_defaults(run=_spatial)

    temporal = kinds.add_parser(
        "temporal", help="cut videos into clips and keep those whose camera stands still",
        description="Temporal-variant clips: each video is cut into model-length clips at the model's size; "
                    "optical flow (OpenCV DIS) on textured pixels decides static vs moving camera. The report lists "
                    "every clip with its static share, background flow and verdict.")
    temporal.add_argument("--videos", type=Path, required=True,
                          help="folder of videos (subfolders included); a <video>.txt beside a video is its caption")
    temporal.add_argument("--frame-stride", type=int, default=0,
                          help="keep every n-th source frame (default 0: source fps / 8, the model's frame rate)")
    temporal.add_argument("--max-clips-per-video", type=int, default=0, help="default 0: all")
    temporal.add_argument("--still-px", type=float, default=TEST_DEFAULTS.still_px,
                          help=f"flow below this (px per frame) is still (default {TEST_DEFAULTS.still_px:g})")
    temporal.add_argument("--min-static-share", type=float, default=TEST_DEFAULTS.min_static_share,
                          help="share of textured pixels that must be still (default "
                               f"{TEST_DEFAULTS.min_static_share:g})")
    temporal.add_argument("--max-background-flow", type=float, default=TEST_DEFAULTS.max_background_flow,
                          help="largest median flow of the textured pixels, px per frame (default "
                               f"{TEST_DEFAULTS.max_background_flow:g})")
    temporal.add_argument("--min-texture-share", type=float, default=TEST_DEFAULTS.min_texture_share,
                          help="clips with less texture cannot be judged and are refused (default "
                               f"{TEST_DEFAULTS.min_texture_share:g})")
    temporal.add_argument("--caption", default="",
                          help="caption template; {caption} is the <video>.txt text or the file name, {video} the "
                               "file name (default '{caption}')")
    _add_geometry(temporal)
    temporal.set_defaults(run=_temporal)
