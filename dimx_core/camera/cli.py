"""`dimx trajectory`, `dimx articulate`, `dimx director`, `dimx camera-bounds`: camera paths from the shell."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from . import patterns
from .paths import DEFAULT_AZIMUTH_RANGE, GENXD_HELP, PATH_PATTERNS
from .planner import DEFAULT_FOV_DEG, DEFAULT_FRAMES, DEFAULT_RADIUS, DEFAULT_SIZE, EASINGS

FORMATS = ("transforms", "colmap")


def _add_camera_options(parser: argparse.ArgumentParser, easing: bool = True) -> None:
    parser.add_argument("--radius", type=float, default=DEFAULT_RADIUS,
                        help=f"pivot distance / orbit radius in scene units (default {DEFAULT_RADIUS:g})")
    parser.add_argument("--elevation", type=float, default=0.0,
                        help="degrees the first camera looks down at the pivot; horizontal orbits keep it (default 0)")
    parser.add_argument("--fov", type=float, default=DEFAULT_FOV_DEG,
                        help=f"horizontal field of view in degrees (default {DEFAULT_FOV_DEG:g})")
    parser.add_argument("--focal", type=float, default=None, help="focal length in pixels (overrides --fov)")
    parser.add_argument("--width", type=int, default=DEFAULT_SIZE[0], help=f"image width (default {DEFAULT_SIZE[0]})")
    parser.add_argument("--height", type=int, default=DEFAULT_SIZE[1],
                        help=f"image height (default {DEFAULT_SIZE[1]})")
    if easing:
        parser.add_argument("--easing", choices=EASINGS, default="linear",
                            help="linear: constant speed; ease: start and stop gently (default linear)")
    parser.add_argument("--format", choices=FORMATS, default="transforms",
                        help="transforms: nerfstudio transforms.json (--out is the file); colmap: cameras.txt, "
                             "images.txt and an empty points3D.txt (--out is a folder)")


def _camera_options(args) -> dict:
    options = dict(radius=args.radius, elevation=args.elevation, fov_deg=args.fov, focal_px=args.focal,
                   width=args.width, height=args.height)
    if hasattr(args, "easing"):
        options["easing"] = args.easing
    return options


def _write(trajectory, out: Path, form: str) -> Path:
    from .formats import write_colmap_text, write_transforms_json

    return write_colmap_text(out, trajectory) if form == "colmap" else write_transforms_json(out, trajectory)


def _trajectory(args) -> None:
    from .paths import plan_path

    path = plan_path(args.pattern, args.frames, args.magnitude, azimuth_range=tuple(args.azimuth),
                     **_camera_options(args))
    print(f"{_write(path, args.out, args.format)}  ({len(path)} frames, director {path.director or 'none'})")


def _articulate(args) -> None:
    from .articulated import split_motion

    long_path = split_motion(args.pattern, args.total, args.max_clip, args.frames_per_clip, **_camera_options(args))
    out = _write(long_path.combined(), args.out / ("transforms.json" if args.format == "transforms" else "combined"),
                 args.format)
    for index, clip in enumerate(long_path.clips):
        name = f"clip_{index:03d}" + (".json" if args.format == "transforms" else "")
        _write(clip, args.out / "clips" / name, args.format)
    print(f"{out}  ({len(long_path.clips)} clips of {long_path.clips[0].meta['magnitude']:g} "
          f"{patterns.get(long_path.clips[0].pattern).unit}, director {long_path.clips[0].director}; "
          f"each clip in its own start frame under {args.out / 'clips'})")


def _first_and_last_pose(path: Path) -> np.ndarray:
    """Relative pose from a file: a 4x4/3x4 matrix as text or JSON, or the first and last camera of a
    transforms.json or a COLMAP text folder."""
    from .director_choice import parse_pose_text
    from .formats import read_camera_file

    if path.is_file() and '"frames"' not in path.read_text(encoding="utf-8"):
        return parse_pose_text(path.read_text(encoding="utf-8"))
    trajectory, _ = read_camera_file(path)
    if len(trajectory) < 2:
        raise ValueError(f"'{path}' holds {len(trajectory)} camera; the director choice needs two views")
    return np.linalg.inv(trajectory.c2w_opencv[0]) @ trajectory.c2w_opencv[-1]


def _director(args) -> None:
    from ..images import read_rgb
    from .director_choice import RelativeMotion, choose_director, parse_candidates, score_table
    from .estimate import estimate_relative_motion

    if args.pose is not None:
        motion = RelativeMotion.from_pose(_first_and_last_pose(args.pose))
    else:
        first, second = read_rgb(args.images[0], "--images A"), read_rgb(args.images[1], "--images B")
        estimate = estimate_relative_motion(first, second, args.fov)
        motion = estimate.motion
        print(estimate.describe())
    best, scores = choose_director(motion, parse_candidates(args.candidates))
    print(score_table(best, scores))


def _camera_bounds(args) -> None:
    from .bounds import camera_bounds
    from .formats import read_camera_file

    trajectory, _ = read_camera_file(args.path)
    print(camera_bounds(trajectory.positions).as_text())


def register(commands) -> None:
    """Add the camera commands to the `dimx` sub-command parser."""
    trajectory = commands.add_parser(
        "trajectory", help="plan an S-Director camera path and write it as transforms.json or COLMAP text",
        description="Plan the camera path one DimensionX S-Director produces (one pose per generated frame; the "
                    "first camera is the input image's, at the origin) and write it for other tools. Motions: "
                    + "; ".join(f"{p.name}: {p.description}" for p in patterns.TABLE) + ".")
    trajectory.add_argument("--pattern", required=True, choices=PATH_PATTERNS, metavar="NAME",
                            help="camera motion: " + ", ".join(PATH_PATTERNS) + ". " + GENXD_HELP)
    trajectory.add_argument("--frames", type=int, default=DEFAULT_FRAMES,
                            help=f"number of frames: the video model's (default {DEFAULT_FRAMES}, CogVideoX-5b-I2V's; "
                                 "145 for DimensionX's 360-degree model)")
    trajectory.add_argument("--magnitude", type=float, default=None,
                            help="total motion: degrees for rotations and orbits (default 30), scene units for "
                                 "translations (default a quarter of --radius); not used by the loops orbit_360 and "
                                 "orbit_360_right, nor by the GenXD modes")
    trajectory.add_argument("--azimuth", type=float, nargs=2, default=DEFAULT_AZIMUTH_RANGE, metavar=("A1", "A2"),
                            help="GenXD modes only: the azimuth range in degrees (default 0 30); --focal (pixels) "
                                 "or --fov gives GenXD's focal, normalised by --width")
    _add_camera_options(trajectory)
    trajectory.add_argument("--out", type=Path, required=True, help="transforms.json file, or folder for COLMAP")
    trajectory.set_defaults(run=_trajectory)

    articulate = commands.add_parser(
        "articulate", help="split a large motion into chained clips of small motion (LiftImage3D)",
        description="Cut a large camera motion (a 120-degree orbit, a 360-degree loop) into equal clips of at most "
                    "--max-clip each; every clip starts at the previous clip's last frame. Writes the whole path "
                    "and, under clips/, every clip in its own start frame (its start pose is in its metadata).")
    articulate.add_argument("--pattern", required=True, choices=patterns.PATTERNS, metavar="NAME",
                            help="camera motion of every clip: " + ", ".join(patterns.TWO_VIEW_PATTERNS)
                                 + " (the loops: orbit_360 a full orbit_left loop, orbit_360_right orbit_right)")
    articulate.add_argument("--total", type=float, required=True,
                            help="total motion, degrees or scene units (ignored for the loops)")
    articulate.add_argument("--max-clip", type=float, default=30.0, help="largest motion of one clip (default 30)")
    articulate.add_argument("--frames-per-clip", type=int, default=DEFAULT_FRAMES,
                            help=f"frames of each clip, including its shared first frame (default {DEFAULT_FRAMES})")
    _add_camera_options(articulate, easing=False)
    articulate.add_argument("--out", type=Path, required=True, help="folder to write into")
    articulate.set_defaults(run=_articulate)

    director = commands.add_parser(
        "director", help="choose the S-Director that moves the camera from one view to another",
        description="Score every S-Director motion against the relative pose of two views and print the best "
                    "with a table of all scores (1 = the motion is reproduced exactly; scale-free).")
    source = director.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", type=Path, nargs=2, metavar=("A", "B"),
                        help="two photos of the same scene; their pose is estimated with SIFT + essential matrix")
    source.add_argument("--pose", type=Path,
                        help="B's camera-to-world pose in A's camera frame (OpenCV axes) as 16 or 12 numbers, or a "
                             "transforms.json / COLMAP text folder (its first and last camera)")
    director.add_argument("--fov", type=float, default=DEFAULT_FOV_DEG,
                          help=f"horizontal field of view of the photos in degrees (default {DEFAULT_FOV_DEG:g})")
    director.add_argument("--candidates", default="all",
                          help="'all', 'released' (every basic move and orbit: all are published) or a comma list "
                               "of directors (default all)")
    director.set_defaults(run=_director)

    bounds = commands.add_parser(
        "camera-bounds", help="principal axes and extents of a set of camera positions (PCA box)",
        description="Print the PCA bounding box of the camera positions in a transforms.json or COLMAP text folder.")
    bounds.add_argument("path", type=Path, help="transforms.json file or COLMAP text folder")
    bounds.set_defaults(run=_camera_bounds)
