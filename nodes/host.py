"""Everything that touches ComfyUI itself: model folders, output paths, the memory manager, progress and
interrupts, feature detection. dimx_core receives these as plain values and callbacks (dimx_core.hooks)."""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import comfy.model_management as model_management
import comfy.utils
import folder_paths
from comfy_api.latest import io

from ..dimx_core.camera.formats import find_camera_files
from ..dimx_core.hooks import Hooks, Interrupted

MODEL_FOLDER = "dimensionx"  # CogVideoX image-to-video diffusers folders


# --- folders -------------------------------------------------------------------------------------------------------

def register_model_folders() -> None:
    """Add models/dimensionx, keeping any path an extra_model_paths.yaml already gave that folder name."""
    folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))


def model_folder_paths() -> list[str]:
    return folder_paths.get_folder_paths(MODEL_FOLDER)


def write_output_folder(filename_prefix: str, write: Callable[[Path], None]) -> Path:
    """Let `write` fill a new numbered folder under ComfyUI's output directory, `<prefix>_00001_/` as ComfyUI
    numbers its files; the folder appears only once `write` has finished (it fills a hidden sibling first)."""
    output_dir = folder_paths.get_output_directory()
    folder, name, counter, _, _ = folder_paths.get_save_image_path(filename_prefix, output_dir)
    final = Path(folder) / f"{name}_{counter:05d}_"
    if os.path.commonpath([os.path.abspath(output_dir), os.path.abspath(final)]) != os.path.abspath(output_dir):
        raise ValueError(f"filename_prefix {filename_prefix!r} points outside ComfyUI's output folder")
    partial = Path(tempfile.mkdtemp(prefix=f".{final.name}", suffix=".part", dir=folder))
    try:
        write(partial)
        os.replace(partial, final)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
    return final


def input_camera_files() -> list[str]:
    """transforms.json files and COLMAP text folders in ComfyUI's input directory, relative to it."""
    return find_camera_files(folder_paths.get_input_directory())


def input_path(relative: str) -> Path:
    """`relative` inside ComfyUI's input directory; anything that leads outside it is refused."""
    root = os.path.abspath(folder_paths.get_input_directory())
    path = os.path.abspath(os.path.join(root, relative))
    if os.path.commonpath([root, path]) != root:
        raise ValueError(f"{relative!r} is outside ComfyUI's input folder")
    if not os.path.exists(path):
        raise ValueError(f"{relative!r} does not exist in ComfyUI's input folder ({root})")
    return Path(path)


# --- progress and interrupts ---------------------------------------------------------------------------------------

def hooks(total: int) -> Hooks:
    """Hooks for dimx_core that drive this node's progress bar (with a preview image) and honour Cancel."""
    bar = comfy.utils.ProgressBar(total)

    def progress(step: int, steps: int, preview) -> None:
        bar.update_absolute(step, steps, _preview_tuple(preview) if preview is not None else None)

    return Hooks(progress=progress, should_stop=model_management.processing_interrupted)


def _preview_tuple(image) -> tuple:
    import numpy as np
    from PIL import Image

    array = np.asarray(image.detach().float().cpu() if hasattr(image, "detach") else image)
    return "JPEG", Image.fromarray((array.clip(0, 1) * 255).round().astype("uint8")), 512


@contextlib.contextmanager
def comfy_interrupts():
    """Turn the library's Interrupted into ComfyUI's own interrupt, so the queue shows 'interrupted'."""
    try:
        yield
    except Interrupted:
        raise model_management.InterruptProcessingException()


# --- devices -------------------------------------------------------------------------------------------------------

def compute_device():
    return model_management.get_torch_device()


def intermediate_device():
    return model_management.intermediate_device()


# --- what this ComfyUI offers --------------------------------------------------------------------------------------

def host_features() -> dict[str, str | bool]:
    """Detected rather than assumed from a version number."""
    try:
        version = importlib.import_module("comfyui_version").__version__
    except ImportError:
        version = "unknown"
    return {
        "comfyui": version,
        "core_splat_type": hasattr(io, "Splat"),
        "native_cogvideox": importlib.util.find_spec("comfy.ldm.cogvideo") is not None,
        "load3d_camera": hasattr(io, "Load3DCamera"),
    }
