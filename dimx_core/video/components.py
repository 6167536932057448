"""Load the parts of a CogVideoX image-to-video model: one loader for the real 5B folder and the tiny one."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..cogvideox.spec import ModelSpec, spec_from_configs
from ..optional import require
from ..weight_files import check_safetensors_files

EXPECTED_CLASSES = {
    "transformer": "CogVideoXTransformer3DModel",
    "vae": "AutoencoderKLCogVideoX",
    "text_encoder": "T5EncoderModel",
    "tokenizer": ("T5Tokenizer", "T5TokenizerFast"),
    "scheduler": ("CogVideoXDDIMScheduler", "CogVideoXDPMScheduler"),
}


@dataclass
class VideoComponents:
    transformer: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler_config: dict
    spec: ModelSpec
    source: str

    @property
    def identity(self) -> str:
        """What a content key needs of the model: where it came from and what it is."""
        return f"{self.source} | {self.spec.describe()}"


def read_model_index(folder: Path) -> dict:
    """Check that `folder` is a diffusers CogVideoX image-to-video folder; say precisely what is wrong if not."""
    folder = Path(folder)
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise FileNotFoundError(
            f"'{folder}' is not a diffusers model folder: it has no model_index.json. Choose the folder that holds "
            "model_index.json, transformer/, vae/, text_encoder/, tokenizer/ and scheduler/ (as published for "
            "CogVideoX-5b-I2V).")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"'{index_path}' is not valid JSON ({err}); the download may be incomplete.") from err
    pipeline = index.get("_class_name", "")
    if pipeline != "CogVideoXImageToVideoPipeline":
        raise ValueError(
            f"'{folder}' holds a '{pipeline or 'unknown'}' model, but DimensionX needs an image-to-video CogVideoX "
            "model (CogVideoXImageToVideoPipeline), such as CogVideoX-5b-I2V.")
    for part, expected in EXPECTED_CLASSES.items():
        entry = index.get(part)
        names = (expected,) if isinstance(expected, str) else expected
        if not entry or entry[1] not in names:
            raise ValueError(f"'{index_path}' lists {part} as {entry}, expected one of {names}.")
        if not (folder / part).is_dir():
            raise FileNotFoundError(f"'{folder}' lacks the '{part}/' subfolder named in model_index.json.")
    return index


def _dtype_kwarg(library) -> str:
    """diffusers 0.42 and transformers 4.56 renamed `torch_dtype` to `dtype` and warn on the old name."""
    from packaging.version import Version

    renamed_in = {"diffusers": "0.42.0", "transformers": "4.56.0"}[library.__name__]
    return "dtype" if Version(library.__version__) >= Version(renamed_in) else "torch_dtype"


def load_diffusers_folder(folder: str | Path, dtype: torch.dtype = torch.bfloat16) -> VideoComponents:
    """Load every part on the CPU in `dtype`; the host decides when each part goes to the accelerator."""
    folder = Path(folder)
    read_model_index(folder)
    check_safetensors_files(folder, "model")  # a truncated file would fail deep in from_pretrained, cause unsaid
    diffusers = require("diffusers")
    transformers = require("transformers")
    as_dtype = {_dtype_kwarg(diffusers): dtype}
    transformer = diffusers.CogVideoXTransformer3DModel.from_pretrained(folder, subfolder="transformer", **as_dtype)
    vae = diffusers.AutoencoderKLCogVideoX.from_pretrained(folder, subfolder="vae", **as_dtype)
    text_encoder = transformers.T5EncoderModel.from_pretrained(folder, subfolder="text_encoder",
                                                               **{_dtype_kwarg(transformers): dtype})
    tokenizer = transformers.T5Tokenizer.from_pretrained(folder, subfolder="tokenizer")
    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    spec = spec_from_configs(dict(transformer.config), dict(vae.config))
    for module in (transformer, vae, text_encoder):
        module.eval().requires_grad_(False)
    return VideoComponents(transformer, vae, text_encoder, tokenizer, scheduler_config, spec, str(folder))


def read_spec(folder: str | Path) -> ModelSpec:
    """What a diffusers folder's model makes (size, frames), from its configs alone: no weights are read."""
    folder = Path(folder)
    read_model_index(folder)
    configs = []
    for part in ("transformer", "vae"):
        path = folder / part / "config.json"
        try:
            configs.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"'{path}' is not a readable config ({err})") from err
    return spec_from_configs(*configs)
