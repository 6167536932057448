"""Load the parts of a CogVideoX image-to-video model: one loader for the real 5B folder and the tiny one."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from ..cogvideox.spec import ModelSpec, spec_from_configs
from ..optional import require
from ..weight_files import check_safetensors_files
from .release import ReleaseDefaults, read_release_defaults

# CogVideoX-5b-I2V's pipeline; CogVideoX-Fun's InP folders name the text-to-video one. The transformer's input
# channels decide what the model is (cogvideox/layouts.py): a text-to-video folder is refused there.
PIPELINES = ("CogVideoXImageToVideoPipeline", "CogVideoXPipeline")
EXPECTED_CLASSES = {
    "transformer": "CogVideoXTransformer3DModel",
    "vae": "AutoencoderKLCogVideoX",
    "text_encoder": "T5EncoderModel",
    "tokenizer": ("T5Tokenizer", "T5TokenizerFast"),
    "scheduler": ("CogVideoXDDIMScheduler", "CogVideoXDPMScheduler"),
}


DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


@dataclass(frozen=True)
class ModelSource:
    """Where a model's weights were read from, as plain data: another process (a worker) loads the same model from
    it. `folder`: a diffusers folder; or `files`: transformer, VAE and T5 files and a T5 tokenizer folder."""
    dtype: str
    folder: str | None = None
    files: tuple[str, str, str, str] | None = None

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES or (self.folder is None) == (self.files is None):
            raise ValueError(f"a model source is one folder or four files in one of {sorted(DTYPES)}, got {self}")

    def load(self) -> "VideoComponents":
        if self.folder is not None:
            return load_diffusers_folder(self.folder, DTYPES[self.dtype])
        from .single_file import load_single_files  # it builds on this module

        return load_single_files(*self.files, DTYPES[self.dtype])


def dtype_name(dtype: torch.dtype) -> str:
    return next(name for name, value in DTYPES.items() if value == dtype)


@dataclass
class VideoComponents:
    transformer: torch.nn.Module
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    tokenizer: object
    scheduler_config: dict
    spec: ModelSpec
    source: str
    release: ReleaseDefaults = ReleaseDefaults()  # what the "auto" sampler settings resolve to
    origin: ModelSource | None = None  # how to load the same model elsewhere; None: built in code

    @property
    def identity(self) -> str:
        """What a content key needs of the model: where it came from, what it is and how "auto" samples it."""
        return f"{self.source} | {self.spec.describe()} | {self.release.describe()}"


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
    if pipeline not in PIPELINES:
        raise ValueError(
            f"'{folder}' holds a '{pipeline or 'unknown'}' model, but DimensionX needs an image-to-video CogVideoX "
            "model (CogVideoXImageToVideoPipeline), such as CogVideoX-5b-I2V, or a start/end-frame CogVideoX-Fun InP "
            "folder.")
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


def load_diffusers_folder(folder: str | Path, dtype: torch.dtype = torch.bfloat16,
                          given: dict[str, torch.nn.Module] | None = None) -> VideoComponents:
    """Load every part on the CPU in `dtype`; the host decides when each part goes to the accelerator. `given`
    parts ("transformer", "vae", "text_encoder"; the host's own, bound) are used instead and not read from the
    folder."""
    folder, given = Path(folder), dict(given or {})
    index = read_model_index(folder)
    release = read_release_defaults(folder, index)  # a bad file fails before the long load
    transformer_config = _config_file(folder, "transformer")  # with the keys diffusers' class drops
    spec_from_configs(transformer_config, _config_file(folder, "vae"))  # a text-to-video layout is refused here
    check_safetensors_files(folder, "model")  # a truncated file would fail deep in from_pretrained, cause unsaid
    diffusers = require("diffusers")
    transformers = require("transformers")
    as_dtype = {_dtype_kwarg(diffusers): dtype}
    loaders = {
        "transformer": lambda: diffusers.CogVideoXTransformer3DModel.from_pretrained(folder, subfolder="transformer",
                                                                                    **as_dtype),
        "vae": lambda: diffusers.AutoencoderKLCogVideoX.from_pretrained(folder, subfolder="vae", **as_dtype),
        "text_encoder": lambda: transformers.T5EncoderModel.from_pretrained(folder, subfolder="text_encoder",
                                                                            **{_dtype_kwarg(transformers): dtype}),
    }
    loaded = {part: load().eval().requires_grad_(False) for part, load in loaders.items() if part not in given}
    parts = {**loaded, **given}
    tokenizer = transformers.T5Tokenizer.from_pretrained(folder, subfolder="tokenizer")
    scheduler_config = json.loads((folder / "scheduler" / "scheduler_config.json").read_text(encoding="utf-8"))
    spec = spec_from_configs({**transformer_config, **parts["transformer"].config}, dict(parts["vae"].config))
    # host-bound parts carry the host's patches, which a worker loading the folder would not have
    origin = None if given else ModelSource(dtype_name(dtype), folder=str(folder))
    return VideoComponents(parts["transformer"], parts["vae"], parts["text_encoder"], tokenizer, scheduler_config,
                           spec, str(folder), release, origin=origin)


def _config_file(folder: Path, part: str) -> dict:
    """A part's config.json as written, keys diffusers' class does not know included."""
    path = folder / part / "config.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"'{path}' is not a readable config ({err})") from err


def read_spec(folder: str | Path) -> ModelSpec:
    """What a diffusers folder's model makes (size, frames), from its configs alone: no weights are read."""
    folder = Path(folder)
    read_model_index(folder)
    return spec_from_configs(_config_file(folder, "transformer"), _config_file(folder, "vae"))
