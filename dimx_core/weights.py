"""Reading weight files users bring: .safetensors, or pickles only as weights (never running their code)."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from .optional import require

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin")


def load_state_dict(path: str | Path, what: str = "weights file") -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata. A truncated, foreign or code-carrying file gets an error that names it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} '{path}' does not exist")
    if path.suffix.lower() in PICKLE_SUFFIXES:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as err:
            raise ValueError(f"{what} '{path.name}' could not be read as a weights-only PyTorch file ({err}). "
                             "Pickles that need code execution are refused; convert the file to .safetensors.") from err
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{what} '{path.name}' does not hold a flat dictionary of tensors")
        return state, {}
    safetensors = require("safetensors")
    safetensors_torch = require("safetensors.torch")
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        return safetensors_torch.load_file(str(path)), metadata
    except Exception as err:  # safetensors raises its own SafetensorError for truncated or foreign files
        raise ValueError(f"{what} '{path.name}' is not a readable .safetensors file ({err}); it may be truncated "
                         "or still downloading.") from err
