"""Everything that touches ComfyUI itself: model folders, feature detection (and, as nodes need them, the
model manager, progress and interrupts). dimx_core receives these as plain values and callbacks."""
from __future__ import annotations

import importlib
import importlib.util
import os

import folder_paths
from comfy_api.latest import io

MODEL_FOLDER = "dimensionx"  # CogVideoX image-to-video diffusers folders


def register_model_folders() -> None:
    """Add models/dimensionx, keeping any path an extra_model_paths.yaml already gave that folder name."""
    folder_paths.add_model_folder_path(MODEL_FOLDER, os.path.join(folder_paths.models_dir, MODEL_FOLDER))


def model_folder_paths() -> list[str]:
    return folder_paths.get_folder_paths(MODEL_FOLDER)


def host_features() -> dict[str, str | bool]:
    """What this ComfyUI offers, detected rather than assumed from a version number."""
    try:
        version = importlib.import_module("comfyui_version").__version__
    except ImportError:
        version = "unknown"
    return {
        "comfyui": version,
        "core_splat_type": hasattr(io, "Splat"),
        "native_cogvideox": importlib.util.find_spec("comfy.ldm.cogvideo") is not None,
    }
