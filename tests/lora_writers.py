"""Write one director LoRA (DimensionX release layout) in every key format seen in the wild.

Each writer keeps the trained effect W + (alpha / rank) * B @ A unchanged, so every format must load into
the same effective weights.
"""
import re

import torch
from safetensors.torch import save_file

NATIVE = {"attn1.to_q": "q", "attn1.to_k": "k", "attn1.to_v": "v", "attn1.to_out.0": "attn_out"}
SAT = {"attn1.to_q": ("query_key_value", 0), "attn1.to_k": ("query_key_value", 1),
       "attn1.to_v": ("query_key_value", 2), "attn1.to_out.0": ("dense", 0)}


def canonical_pairs(release: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    pairs = {}
    for key, tensor in release.items():
        module, which = re.match(r"transformer\.(.+)\.lora_([AB])\.weight$", key).groups()
        pairs.setdefault(module, [None, None])["AB".index(which)] = tensor
    return {module: tuple(pair) for module, pair in pairs.items()}


def diffusers(release, prefix=True, alpha=None):
    rank = next(iter(release.values())).shape[0]
    out = {}
    for module, (a, b) in canonical_pairs(release).items():
        base = f"transformer.{module}" if prefix else module
        scale = 1.0 if alpha is None else alpha
        out[f"{base}.lora_A.weight"], out[f"{base}.lora_B.weight"] = a.float(), b.float() / scale  # same trained effect
        if alpha is not None:
            out[f"{base}.alpha"] = torch.tensor(float(alpha))
    assert rank
    return out


def kohya(release, alpha=1.0):
    out = {}
    for module, (a, b) in canonical_pairs(release).items():
        flat = "lora_unet_" + module.replace(".", "_")
        out[f"{flat}.lora_down.weight"], out[f"{flat}.lora_up.weight"] = a.float(), b.float() / alpha
        out[f"{flat}.alpha"] = torch.tensor(float(alpha))
    return out


def comfy_native(release):
    out = {}
    for module, (a, b) in canonical_pairs(release).items():
        block, inner = re.match(r"transformer_blocks\.(\d+)\.(.+)$", module).groups()
        base = f"diffusion_model.blocks.{block}.{NATIVE[inner]}"
        out[f"{base}.lora_down.weight"], out[f"{base}.lora_up.weight"] = a, b
    return out


def sat(release):
    out = {}
    for module, (a, b) in canonical_pairs(release).items():
        block, inner = re.match(r"transformer_blocks\.(\d+)\.(.+)$", module).groups()
        layer, index = SAT[inner]
        base = f"model.diffusion_model.transformer.layers.{block}.attention.{layer}"
        out[f"{base}.matrix_A.{index}"], out[f"{base}.matrix_B.{index}"] = a, b
    return out


def write(path, tensors):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path
