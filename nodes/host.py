"""Everything that touches ComfyUI itself: model folders, output paths, the memory manager, progress and
interrupts, feature detection. dimx_core receives these as plain values and callbacks (dimx_core.hooks)."""
from __future__ import annotations

import contextlib
import importlib
import importlib.util
import os

import comfy.model_management as model_management
import comfy.utils
import folder_paths
from comfy_api.latest import io

from ..dimx_core.hooks import Hooks, Interrupted

MODEL_FOLDER = "dimensionx"  # CogVideoX image-to-video diffusers folders


# --- folders -------------------------------------------------------------------------------------------------------

def register_model_folders() -> None:
    """Add models/dimensionx, keeping any path an extra_model_paths.yaml already gave that folder name."""
    folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))


def model_folder_paths() -> list[str]:
    return folder_paths.get_folder_paths(MODEL_FOLDER)


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
    }
