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


# --- result files --------------------------------------------------------------------------------------------------

def result_path(filename_prefix: str, extension: str, *, temp: bool = False) -> tuple[str, str, str]:
    """(full path, subfolder, file name) of a new numbered result file under ComfyUI's output (or temp)
    folder, as SaveImage names them: <prefix>_00001_.<extension>. Refuses prefixes that leave the folder."""
    folder = folder_paths.get_temp_directory() if temp else folder_paths.get_output_directory()
    full_folder, name, counter, subfolder, _ = folder_paths.get_save_image_path(filename_prefix, folder)
    filename = f"{name}_{counter:05}_.{extension}"
    return os.path.join(full_folder, filename), subfolder, filename


def input_or_output_files(extensions: tuple[str, ...]) -> list[str]:
    """Files with these extensions in ComfyUI's input folder (plain names), then in its output folder
    (annotated ' [output]', the form ComfyUI's own loaders resolve), each sorted."""
    found = []
    for folder, note in ((folder_paths.get_input_directory(), ""), (folder_paths.get_output_directory(), " [output]")):
        names = []
        for root, _, files in os.walk(folder):
            names += [os.path.relpath(os.path.join(root, name), folder).replace(os.sep, "/") + note
                      for name in files if name.lower().endswith(extensions)]
        found += sorted(names)
    return found


def annotated_path(name: str) -> str:
    return folder_paths.get_annotated_filepath(name)


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


def make_room(bytes_needed: int) -> None:
    """Ask ComfyUI's memory manager to unload models until `bytes_needed` are free on the compute device
    (a reconstruction's tensors are not models it manages)."""
    device = compute_device()
    if device.type != "cpu":
        model_management.free_memory(bytes_needed, device)


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
