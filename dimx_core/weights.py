"""Reading weight files users bring: .safetensors, or pickles only as weights (never running their code)."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from .optional import require
from .weight_files import is_pickle, safetensors_problem


def load_state_dict(path: str | Path, what: str = "weights file") -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata. A truncated, foreign or code-carrying file gets an error that names it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} '{path}' does not exist")
    if is_pickle(path):  # by content: a .pkl, or a pickle named .safetensors
        try:
            with path.open("rb") as handle:  # a handle, since torch.load picks a reader from a path's extension
                state = torch.load(handle, map_location="cpu", weights_only=True)
        except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError) as err:
            raise ValueError(f"{what} '{path.name}' could not be read as a weights-only PyTorch file ({err}). "
                             "Pickles that need code execution are refused; convert the file to .safetensors.") from err
        state = state.get("state_dict", state) if isinstance(state, dict) else state
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"{what} '{path.name}' does not hold a flat dictionary of tensors")
        return state, {}
    if (problem := safetensors_problem(path)) is not None:
        raise ValueError(f"{what} '{path.name}' cannot be loaded: {problem}.")
    safetensors = require("safetensors")
    safetensors_torch = require("safetensors.torch")
    try:
        with safetensors.safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        return safetensors_torch.load_file(str(path)), metadata
    except Exception as err:  # safetensors raises its own SafetensorError for truncated or foreign files
        raise ValueError(f"{what} '{path.name}' is not a readable .safetensors file ({err}); it may be truncated "
                         "or still downloading.") from err
