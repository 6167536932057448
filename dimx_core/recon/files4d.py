"""4D scene files: a folder any 3DGS tool can read frame by frame, plus what rebuilds the deformable scene.

    scene.dimx4d.json            the manifest (below); LoadGaussians reads a 4D scene back from it
    canonical.ply                the canonical Gaussians (= the scene at the reference time), standard 3DGS PLY
    canonical.transforms.json    the fitted cameras (nerfstudio, OpenGL convention), when the scene has them
    time_0000.ply ...            the scene evaluated at each fitted time, standard 3DGS PLY (what viewers play)
(the scene files in any format of files.SCENE_FORMATS: .ply by default, or .spz / .splat throughout)
    deformation.safetensors      the deformation field's tensors
    deformation.json             its config (box, time range, plane sizes, MLP shape) and the fitted times

The manifest: {"kind": "dimx-4d", "version": 1, "times": [t0, t1, ...], "reference_time": t,
"frames": [{"filename", "subfolder", "type"}, ...] (one per time, in order), "canonical": {...}, "cameras": {...}
| null, "field": {"weights": {...}, "config": {...}}, "gaussians": count, "format": "ply" | "spz" | "splat"}. Entries carry the subfolder and type
ComfyUI's /view route needs (the viewer fetches the frames with them); readers only use the file names, which are
relative to the manifest's own folder, so a moved folder still loads.
"""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

from ..files import atomic_path
from ..hooks import NO_HOOKS, Hooks
from .deform import gaussians_at, load_field, save_field
from .files import SCENE_FORMATS, cameras_path, load_scene, save_scene
from .gaussians import Gaussians

MANIFEST_KIND = "dimx-4d"
MANIFEST_SUFFIX = ".dimx4d.json"
MANIFEST_NAME = "scene" + MANIFEST_SUFFIX
CANONICAL_STEM = "canonical"
FIELD_WEIGHTS, FIELD_CONFIG = "deformation.safetensors", "deformation.json"


def frame_name(index: int, extension: str = ".ply") -> str:
    return f"time_{index:04d}{extension}"


def is_manifest(path: str | Path) -> bool:
    return str(path).lower().endswith(MANIFEST_SUFFIX)


def save_scene_4d(folder: str | Path, gaussians: Gaussians, *, subfolder: str = "", kind: str = "output",
                  scene_format: str = "ply", hooks: Hooks = NO_HOOKS) -> Path:
    """Write a deformable scene into `folder` (created if needed) and return its manifest's path, its scene files
    in `scene_format` (a key of SCENE_FORMATS). `subfolder` and `kind` go into the manifest's file entries
    (ComfyUI's /view parameters). Every file is written whole; the manifest comes last, so a manifest always
    describes complete files."""
    deformation = gaussians.deformation
    if deformation is None:
        raise ValueError("this scene has no deformation field; a static scene is saved as a single PLY")
    if scene_format not in SCENE_FORMATS:
        raise ValueError(f"format must be one of {', '.join(SCENE_FORMATS)}, got {scene_format!r}")
    scene_kind = SCENE_FORMATS[scene_format]
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    entry = lambda name: {"filename": name, "subfolder": subfolder, "type": kind}  # noqa: E731
    canonical = CANONICAL_STEM + scene_kind.extension
    save_scene(folder / canonical, replace(gaussians, deformation=None))
    for index, t in enumerate(deformation.times):
        scene_kind.write(folder / frame_name(index, scene_kind.extension), gaussians_at(gaussians, t))
        hooks.step(index + 1, len(deformation.times))
    save_field(folder / FIELD_WEIGHTS, folder / FIELD_CONFIG, deformation)
    cameras = cameras_path(folder / canonical).name if gaussians.cameras is not None else None
    manifest = {"kind": MANIFEST_KIND, "version": 1, "times": list(deformation.times),
                "reference_time": deformation.reference_time,
                "frames": [entry(frame_name(index, scene_kind.extension)) for index in range(len(deformation.times))],
                "canonical": entry(canonical), "cameras": entry(cameras) if cameras else None,
                "field": {"weights": entry(FIELD_WEIGHTS), "config": entry(FIELD_CONFIG)},
                "gaussians": len(gaussians), "format": scene_format}
    path = folder / MANIFEST_NAME
    with atomic_path(path) as part:
        part.write_text(json.dumps(manifest, indent=1))
    return path


def _check_manifest(manifest: dict, path: Path) -> None:
    """Every entry the reader uses is there and has the right type; a damaged manifest names what it lacks."""
    def is_entry(value) -> bool:
        return isinstance(value, dict) and isinstance(value.get("filename"), str) and bool(value["filename"])

    problems = []
    if not isinstance(manifest.get("times"), list) or not manifest["times"] or not all(
            isinstance(t, (int, float)) and not isinstance(t, bool) for t in manifest["times"]):
        problems.append("'times' (a non-empty list of numbers)")
    if not is_entry(manifest.get("canonical")):
        problems.append("'canonical' (a {\"filename\": ...} entry for the canonical PLY)")
    field = manifest.get("field")
    if not isinstance(field, dict) or not is_entry(field.get("weights")) or not is_entry(field.get("config")):
        problems.append("'field' (with 'weights' and 'config' entries)")
    if problems:
        raise ValueError(f"'{path}' is a damaged 4D scene manifest: it lacks or garbles {', '.join(problems)}. "
                         "Load the scene.dimx4d.json that Save Gaussians wrote, unedited")


def load_scene_4d(path: str | Path) -> Gaussians:
    """The deformable scene a manifest describes: canonical Gaussians (with their cameras) and the field."""
    path = Path(path)
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"'{path}' is not a readable 4D scene manifest ({type(err).__name__}: {err})") from err
    if not isinstance(manifest, dict) or manifest.get("kind") != MANIFEST_KIND:
        raise ValueError(f"'{path}' is not a DimensionX 4D scene manifest (expected \"kind\": \"{MANIFEST_KIND}\")")
    folder = path.parent
    _check_manifest(manifest, path)

    def member(entry: dict, what: str) -> Path:
        file = folder / Path(entry["filename"]).name
        if not file.is_file():
            raise FileNotFoundError(f"the 4D scene '{path}' names its {what} '{file.name}', which is missing beside it")
        return file

    scene = load_scene(member(manifest["canonical"], "canonical scene"))
    field = manifest["field"]
    deformation = load_field(member(field["weights"], "deformation field"), member(field["config"], "field config"))
    if [round(t, 9) for t in deformation.times] != [round(float(t), 9) for t in manifest["times"]]:
        raise ValueError(f"'{path}': the manifest's times {manifest['times']} differ from the field's "
                         f"{list(deformation.times)}; the folder mixes files of different scenes")
    scene.deformation = deformation
    return scene
