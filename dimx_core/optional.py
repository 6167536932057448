"""Heavy or platform-specific dependencies, imported on first use.

The pack must load in ComfyUI even when gsplat (CUDA), pycolmap or OpenCV are missing; the node that needs
one then fails with a message that says what to install, instead of the whole pack failing to import.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
from types import ModuleType

# import name -> (distribution name, what it is used for)
KNOWN = {
    "diffusers": ("diffusers", "CogVideoX models and schedulers"),
    "transformers": ("transformers", "the T5 text encoder"),
    "peft": ("peft", "director LoRA adapters"),
    "safetensors": ("safetensors", "reading and writing weights"),
    "gsplat": ("gsplat", "fast Gaussian-splat rasterisation on CUDA"),
    "numba": ("numba", "the CPU rasterizer's and SSIM's compiled loops"),
    "pycolmap": ("pycolmap", "structure-from-motion camera poses"),
    "cv2": ("opencv-python-headless", "optical flow and image features"),
    "imageio": ("imageio", "reading and writing video files"),
    "bitsandbytes": ("bitsandbytes", "8-bit AdamW for director training"),
    "ray": ("ray", "workers on several GPUs or a Ray cluster"),
    "yunchang.comm.all_to_all": ("yunchang", "Ulysses sequence parallelism (one video's tokens across GPUs)"),
}


# optional extras that requirements.txt does not install (platform-specific wheels, one feature each)
EXTRAS = {"bitsandbytes", "ray", "yunchang.comm.all_to_all"}  # the last two: requirements-distributed.txt


class MissingDependency(ImportError):
    """An optional package is absent; the message names it and how to install it."""


def require(module: str, purpose: str | None = None) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError as err:
        dist, default_purpose = KNOWN.get(module, (module, "this feature"))
        also = "" if module in EXTRAS else " (or: python -m pip install -r requirements.txt in the DimensionX folder)"
        raise MissingDependency(
            f"{purpose or default_purpose} needs the Python package '{dist}', which could not be imported "
            f"({err}). Install it into the Python that runs ComfyUI: python -m pip install {dist}{also}.") from err


def is_installed(module: str) -> bool:
    """Whether `module` can be imported, without importing it (importing gsplat may start a CUDA build)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a dotted name whose parent package is absent (yunchang.comm.all_to_all)
        return False


def version_of(module: str) -> str | None:
    """Installed version without importing the module."""
    if not is_installed(module):
        return None
    dist = KNOWN.get(module, (module, ""))[0]
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown version"
