"""The director being trained: a PEFT LoRA adapter on every block's attention projections, and its file.

The adapter is named like any attached director (dimx_<fingerprint>), so the pack's own director machinery
(DirectorControl, merged directors) renders validation videos with it as it trains. Its weights are kept in
fp32 on a bf16 model, as diffusers' training scripts do (cast_training_params), and read as bf16 in the forward
pass (_compute_in), as mixed precision does.

The file is diffusers' LoRA layout (`transformer.<module>.lora_A/B.weight`) with diffusers' adapter metadata
(`lora_adapter_metadata`: r, lora_alpha, target modules): diffusers' `load_lora_weights` builds the adapter from
that metadata, so it applies alpha / rank without any manual scale, and the pack's reader takes the same alpha
from it (directors/formats.py), so strength 1.0 is the trained effect in both. Alpha tensors in the file would
break diffusers' loader (every key must contain 'lora'), hence metadata.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
from torch.nn.utils import parametrize

from ..directors.adapters import DirectorRef, activate, lora_layers
from ..directors.formats import DIRECTOR_METADATA_KEY
from ..files import atomic_path
from ..optional import require

TARGETS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0")
TRAINING_FINGERPRINT = "training"
TRAINING_ADAPTER = f"dimx_{TRAINING_FINGERPRINT}"


def target_modules(transformer: torch.nn.Module) -> list[str]:
    """Every block's attention projections (attn1 is CogVideoX's joint text-video self-attention)."""
    names = [f"transformer_blocks.{block}.{target}" for block in range(len(transformer.transformer_blocks))
             for target in TARGETS]
    modules = dict(transformer.named_modules())
    missing = [name for name in names if not isinstance(getattr(modules.get(name), "base_layer", modules.get(name)),
                                                        torch.nn.Linear)]
    if missing:
        raise ValueError(f"this transformer has no linear layer {missing[0]}; directors train on CogVideoX's "
                         "attention projections (attn1.to_q/to_k/to_v/to_out.0)")
    return names


def add_training_adapter(transformer: torch.nn.Module, rank: int, alpha: float, seed: int):
    """Inject the adapter (A random as PEFT initialises it, from `seed`; B zero, so training starts at the base
    model) and make it the only active one. Returns (its parameters in a fixed order, its LoraConfig)."""
    peft = require("peft")
    remove_training_adapter(transformer)
    config = peft.LoraConfig(r=rank, lora_alpha=alpha, target_modules=target_modules(transformer),
                             lora_dropout=0.0, init_lora_weights=True)
    with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")  # attached directors: expected
        torch.manual_seed(seed)
        peft.inject_adapter_in_model(config, transformer, adapter_name=TRAINING_ADAPTER)
    activate(transformer, {TRAINING_ADAPTER: 1.0})
    parameters = [parameter for name, parameter in transformer.named_parameters() if f".{TRAINING_ADAPTER}." in name]
    for parameter in parameters:
        parameter.data = parameter.data.float()
        parameter.requires_grad_(True)
    if transformer.dtype != torch.float32:
        _compute_in(transformer, transformer.dtype)
    return parameters, config


class _CastWeight(torch.nn.Module):
    """A weight read in another dtype (a parametrization's forward)."""

    def __init__(self, dtype: torch.dtype):
        super().__init__()
        self.dtype = dtype

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight.to(self.dtype)


def _compute_in(transformer: torch.nn.Module, dtype: torch.dtype) -> None:
    """The fp32 adapter weights are read as `dtype` copies in the forward pass (a parametrization: gradients reach
    the fp32 weights through the cast), as automatic mixed precision does. Else peft casts every layer's bf16 input
    up to the weights' fp32 and the sum back: at 17.8k tokens those casts and fp32 products took ~25% of a 5B
    training step on the H200. The weights stay the same fp32 Parameters, which the optimizer updates."""
    for layer in lora_layers(transformer):
        if TRAINING_ADAPTER in layer.lora_A:
            for module in (layer.lora_A[TRAINING_ADAPTER], layer.lora_B[TRAINING_ADAPTER]):
                parametrize.register_parametrization(module, "weight", _CastWeight(dtype), unsafe=True)  # dtype changes


def remove_training_adapter(transformer: torch.nn.Module) -> None:
    """Leave the shared transformer as it was before training (other directors stay attached)."""
    activate(transformer, {})
    for layer in lora_layers(transformer):
        if TRAINING_ADAPTER in layer.lora_A:
            layer.delete_adapter(TRAINING_ADAPTER)
    getattr(transformer, "peft_config", {}).pop(TRAINING_ADAPTER, None)


def training_director(role: str) -> DirectorRef:
    """The adapter in training as a request names a director (validation videos), at strength 1.0."""
    return DirectorRef(name="training", role=role, strength=1.0, path="(director in training)",
                       fingerprint=TRAINING_FINGERPRINT)


def adapter_state(transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter's tensors under diffusers' file keys (`transformer.<module>.lora_A.weight`)."""
    peft_utils = require("peft.utils")
    state = peft_utils.get_peft_model_state_dict(transformer, adapter_name=TRAINING_ADAPTER)
    cast = f".{TRAINING_ADAPTER}.parametrizations.weight.original"  # a weight under _compute_in's cast: its original
    return {f"transformer.{key.replace(cast, '.weight')}": value.detach() for key, value in state.items()}


def save_director(path: str | Path, transformer: torch.nn.Module, config, info: dict, dtype: torch.dtype) -> Path:
    """The trained director as a .safetensors file in `dtype`, with the metadata both loaders read."""
    safetensors_torch = require("safetensors.torch", "writing LoRA files")
    lora_base = require("diffusers.loaders.lora_base")
    adapter = {f"transformer.{key}": (sorted(value) if isinstance(value, set) else value)
               for key, value in config.to_dict().items()}
    metadata = {"format": "pt", lora_base.LORA_ADAPTER_METADATA_KEY: json.dumps(adapter, sort_keys=True),
                DIRECTOR_METADATA_KEY: json.dumps(info, sort_keys=True, default=str)}
    tensors = {key: value.to("cpu", dtype).contiguous() for key, value in adapter_state(transformer).items()}
    with atomic_path(path) as part:
        safetensors_torch.save_file(tensors, str(part), metadata=metadata)
    return Path(path)
