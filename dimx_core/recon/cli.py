"""`dimx reconstruct`, `dimx render` and `dimx convert-scene`: the reconstruction stage without ComfyUI."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff"}


def read_frames(source: Path) -> tuple[np.ndarray, list[str]]:
    """(N, H, W, 3) floats in 0..1 from a folder of images (sorted by name) or a video file, and their names."""
    if source.is_dir():
        from PIL import Image

        paths = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise ValueError(f"--frames: '{source}' holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        frames = [np.asarray(Image.open(p).convert("RGB"), dtype=np.float32) / 255.0 for p in paths]
        sizes = {f.shape for f in frames}
        if len(sizes) != 1:
            raise ValueError(f"--frames: the images in '{source}' differ in size ({sorted(sizes)})")
        return np.stack(frames), [p.name for p in paths]
    if not source.is_file():
        raise FileNotFoundError(f"--frames: '{source}' is neither a folder of images nor a video file")
    import imageio.v3 as iio

    try:
        frames = np.stack([np.asarray(f)[..., :3] for f in iio.imiter(source)]).astype(np.float32) / 255.0
    except Exception as err:  # noqa: BLE001 - any decoder failure means: not a readable video
        raise ValueError(f"--frames: '{source}' is not a readable video ({type(err).__name__}: {err})") from err
    return frames, [f"{source.stem}#{i}" for i in range(len(frames))]


def _progress_printer(label: str):
    last = [-1]

    def progress(step: int, total: int, preview) -> None:
        tenth = 10 * step // max(total, 1)
        if tenth != last[0]:
            last[0] = tenth
            print(f"{label}: {step}/{total}", file=sys.stderr, flush=True)

    return progress


def _device(choice: str | None) -> str:
    """The --device given, else CUDA when there is one."""
    if choice:
        return choice
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _reconstruct(args) -> None:
    from ..camera.formats import read_transforms_json
    from ..hooks import Hooks
    from .files import format_for, save_scene
    from .train import ReconstructOptions, reconstruct

    format_for(args.out)  # refuse an --out the writers cannot write before fitting
    frames, names = read_frames(args.frames)
    trajectory, _ = read_transforms_json(args.trajectory)
    options = ReconstructOptions(preset=args.preset, steps=args.steps, seed=args.seed, poses=args.poses,
                                 confidence=args.confidence, device=_device(args.device),
                                 holdout_every=args.holdout_every, lpips_weight=args.lpips_weight,
                                 lpips_weights=args.lpips_vgg and str(args.lpips_vgg),
                                 initial_points=args.initial_points)
    print(f"{len(frames)} frames ({names[0]} ... {names[-1]}) paired in order with {len(trajectory)} poses",
          file=sys.stderr)
    result = reconstruct(frames, trajectory, options, hooks=Hooks(progress=_progress_printer("reconstruct")))
    for path in save_scene(args.out, result.gaussians):
        print(path)
    print(result.report.as_text(), file=sys.stderr)


def _two_views(args) -> None:
    import torch

    from ..directors.adapters import Director, attach
    from ..directors.formats import read_lora
    from ..hooks import Hooks
    from ..images import read_rgb
    from ..video.cli import device_and_dtype, load_model, write_video
    from ..video.request import SamplerSettings, VideoRequest
    from ..video.runtime import Runtime
    from .files import format_for, save_scene
    from .train import ReconstructOptions
    from .two_views import two_views_to_3d

    format_for(args.out)  # refuse an --out the writers cannot write before generating
    device, dtype = device_and_dtype(args)
    parts = load_model(args, dtype)
    view_a, view_b = (torch.from_numpy(read_rgb(path, f"--images {which}")).float() / 255
                      for path, which in zip(args.images, "AB"))
    directors = [Director(name, "S", 1.0, read_lora(path)) for name, path in args.director]
    settings = SamplerSettings(steps=args.steps, guidance=args.guidance, seed=args.seed)
    request = VideoRequest(view_a, args.prompt, settings=settings, end_image=view_b,
                           directors=attach(parts.transformer, directors, parts.spec.describe()))
    runtime = Runtime.on_device(device, hooks=Hooks(progress=_progress_printer("video")), preview_every=0)
    options = ReconstructOptions(preset=args.preset, steps=args.recon_steps, seed=args.seed, poses="trajectory",
                                 confidence=args.confidence, device=str(device), initial_points=args.initial_points)
    result = two_views_to_3d(parts, request, runtime, options, fov_deg=args.fov)
    print(result.estimate.describe(), file=sys.stderr)
    print(f"director: {result.director.pattern} (score {result.director.score:.3f})", file=sys.stderr)
    for note in result.video.notes:
        print(note, file=sys.stderr)
    print(write_video(result.video.frames, args.out.with_suffix(".mp4"), result.video.fps))
    for path in save_scene(args.out, result.reconstruction.gaussians):
        print(path)
    print(result.reconstruction.report.as_text(), file=sys.stderr)


def _named_file(text: str) -> tuple[str, Path]:
    name, _, path = text.partition("=")
    if not name or not path:
        raise argparse.ArgumentTypeError(f"'{text}' is not NAME=FILE (e.g. orbit_left=orbit_left.safetensors)")
    return name, Path(path)


def _render(args) -> None:
    import torch
    from PIL import Image

    from ..camera.formats import frame_name, read_transforms_json
    from ..files import atomic_path
    from ..hooks import Hooks
    from .files import load_scene
    from .raster import select_rasterizer
    from .render import render_views

    scene = load_scene(args.scene)
    trajectory, _ = read_transforms_json(args.trajectory)
    rasterizer = select_rasterizer(torch.device(_device(args.device)))
    images = render_views(scene, trajectory, rasterizer=rasterizer, background=args.background,
                          hooks=Hooks(progress=_progress_printer("render")))
    args.out.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        with atomic_path(args.out / frame_name(index)) as part:
            Image.fromarray((image.numpy() * 255).round().astype(np.uint8)).save(part, format="PNG")
    print(f"{len(images)} frames in {args.out}")


def _convert(args) -> None:
    from .files import format_for, load_scene, save_scene

    target = format_for(args.out)
    scene = load_scene(args.scene)
    if scene.sh_degree > 0 and not target.keeps_sh:
        print(f"note: {target.extension} keeps no view-dependent colour; SH degree {scene.sh_degree} is reduced to "
              "its base colour", file=sys.stderr)
    for path in save_scene(args.out, scene):
        print(path)
    print(f"{len(scene)} Gaussians, {target.description}", file=sys.stderr)


def add_fit_options(parser: argparse.ArgumentParser, *, holdout_help: str) -> None:
    """The optimiser's options, the same for the 3D and the 4D fit."""
    from .loss import LPIPS_FILE

    parser.add_argument("--steps", type=int, default=None, help="override the preset's number of steps")
    parser.add_argument("--device", default=None,
                        help="cpu or cuda (gsplat when it can run); default: cuda when available")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--confidence", choices=("flow", "residual", "none"), default="flow",
                        help="per-pixel confidence of the loss (default: optical-flow consistency along the video)")
    parser.add_argument("--holdout-every", type=int, default=0, help=holdout_help)
    parser.add_argument("--initial-points", type=int, default=None,
                        help="random starting points when SfM gives none, drawn in a cube about the scene; those no "
                             "camera sees are dropped (default: the preset's)")
    parser.add_argument("--lpips-weight", type=float, default=0.0,
                        help="weight of the LPIPS term of the loss (default 0: off); needs --lpips-vgg")
    parser.add_argument("--lpips-vgg", type=Path, default=None,
                        help=f"torchvision's VGG16 ImageNet weights ({LPIPS_FILE}) that LPIPS is built on; "
                             "never downloaded")


def register(commands: argparse._SubParsersAction) -> None:
    from .files import SCENE_EXTENSIONS, SCENE_FORMATS
    from .poses import POSE_MODES
    from .train import PRESETS

    recon = commands.add_parser(
        "reconstruct", help="fit 3D Gaussian splats to generated frames and the trajectory they followed",
        description="Fit a 3D Gaussian-splat scene to video frames and the camera trajectory they were generated "
                    "along (frames sorted by name pair with the trajectory's frames in order). Writes the scene "
                    "(.ply, .spz or .splat, by --out's extension) and the fitted cameras as <name>.transforms.json "
                    "beside it.")
    recon.add_argument("--frames", type=Path, required=True, help="folder of images or a video file")
    recon.add_argument("--trajectory", type=Path, required=True, help="transforms.json of the requested path")
    recon.add_argument("--out", type=Path, required=True,
                       help=f"scene file to write; its extension picks the format ({', '.join(SCENE_EXTENSIONS)})")
    recon.add_argument("--poses", choices=POSE_MODES, default="auto",
                       help="camera poses: SfM checked against the trajectory, else the trajectory as given (auto, "
                            "default), the trajectory refined with the scene (trajectory), the trajectory as given "
                            "(fixed), or SfM only")
    recon.add_argument("--preset", choices=tuple(PRESETS), default="standard",
                       help="fast (3k steps), standard (7k, default) or high (30k)")
    add_fit_options(recon, holdout_help="keep every k-th frame out of the fit and report its PSNR (default 0: "
                                        "use all)")
    recon.set_defaults(run=_reconstruct)

    from ..video.cli import add_device_arguments, add_model_arguments

    two = commands.add_parser(
        "two-views", help="two photos to a 3D scene: chosen S-Director, start/end-frame video, Gaussian fit",
        description="The sparse-view path: the S-Director whose motion best matches the two views' pose "
                    "difference, a video from view A to view B with a start/end-frame (CogVideoX-Fun InP) model, "
                    "and a Gaussian fit with both views weighted as known frames. Writes the scene (--out) and the "
                    "video beside it (.mp4).")
    add_model_arguments(two)
    two.add_argument("--images", type=Path, nargs=2, required=True, metavar=("A", "B"),
                     help="the two views, of one size (A starts the video, B ends it)")
    two.add_argument("--prompt", default="", help="what the scene shows")
    two.add_argument("--director", type=_named_file, action="append", default=[], metavar="MOTION=FILE",
                     help="an S-Director named after its motion (orbit_left=FILE; repeatable): the best match is "
                          "used; none: the base model alone, the best motion only reported")
    two.add_argument("--fov", type=float, default=60.0, help="horizontal field of view of the views (default 60)")
    two.add_argument("--steps", type=int, default=50, help="denoising steps (default 50)")
    two.add_argument("--guidance", type=float, default=6.0, help="classifier-free guidance (default 6)")
    two.add_argument("--seed", type=int, default=0, help="seed of the video and the fit (default 0)")
    two.add_argument("--preset", choices=tuple(PRESETS), default="standard", help="the fit's preset")
    two.add_argument("--recon-steps", type=int, default=None, help="override the fit preset's steps")
    two.add_argument("--initial-points", type=int, default=None,
                     help="random starting points of the fit (default: the preset's)")
    two.add_argument("--confidence", choices=("flow", "residual", "none"), default="flow",
                     help="per-pixel confidence of the generated frames (default flow)")
    add_device_arguments(two)
    two.add_argument("--out", type=Path, required=True,
                     help=f"scene file to write; its extension picks the format ({', '.join(SCENE_EXTENSIONS)})")
    two.set_defaults(run=_two_views)

    render = commands.add_parser(
        "render", help="render a scene along a trajectory, one PNG per pose",
        description="Render a Gaussian-splat scene (.ply, .spz or .splat) at every pose of a transforms.json.")
    render.add_argument("--scene", type=Path, required=True, help=".ply, .spz or .splat scene")
    render.add_argument("--trajectory", type=Path, required=True, help="transforms.json with the poses")
    render.add_argument("--out", type=Path, required=True, help="folder for frame_00000.png ...")
    render.add_argument("--device", default=None, help="cpu or cuda; default: cuda when available")
    render.add_argument("--background", type=float, nargs=3, default=(0.0, 0.0, 0.0), metavar=("R", "G", "B"),
                        help="background colour in 0..1 (default black)")
    render.set_defaults(run=_render)

    convert = commands.add_parser(
        "convert-scene", help="convert a scene between .ply, .spz and .splat",
        description="Read a Gaussian-splat scene in any supported format (detected from its content) and write it "
                    "in the format OUT's extension names; its cameras (<name>.transforms.json) travel along. "
                    + " ".join(f"{kind.extension}: {kind.description}." for kind in SCENE_FORMATS.values()))
    convert.add_argument("scene", type=Path, help="the scene to read")
    convert.add_argument("out", type=Path, help="the scene to write (.ply, .spz or .splat)")
    convert.set_defaults(run=_convert)
