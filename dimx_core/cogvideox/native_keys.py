"""ComfyUI's native CogVideoX module names and their diffusers equivalents.

Newer ComfyUI has its own CogVideoX transformer whose layers are named `blocks.N.q`, `blocks.N.attn_out`, ...;
weights and LoRAs saved from it use those names. The pack runs the diffusers model, so names are mapped once.
"""
from __future__ import annotations

import re

BLOCK = {"q": "attn1.to_q", "k": "attn1.to_k", "v": "attn1.to_v", "attn_out": "attn1.to_out.0",
         "norm_q": "attn1.norm_q", "norm_k": "attn1.norm_k", "ff_proj": "ff.net.0.proj", "ff_out": "ff.net.2",
         "norm1.linear": "norm1.linear", "norm1.norm": "norm1.norm", "norm2.linear": "norm2.linear",
         "norm2.norm": "norm2.norm"}
TOP = {"time_embedding_linear_1": "time_embedding.linear_1", "time_embedding_linear_2": "time_embedding.linear_2",
       "ofs_embedding_linear_1": "ofs_embedding.linear_1", "ofs_embedding_linear_2": "ofs_embedding.linear_2"}


def is_native(names) -> bool:
    return any(re.match(r"blocks\.\d+\.", name) for name in names)


def to_diffusers(module: str) -> str:
    """Module path in ComfyUI's model -> module path in diffusers' CogVideoXTransformer3DModel."""
    if match := re.match(r"blocks\.(\d+)\.(.+)$", module):
        inner = BLOCK.get(match[2])
        if inner is None:
            raise ValueError(f"unknown ComfyUI CogVideoX layer 'blocks.{match[1]}.{match[2]}'")
        return f"transformer_blocks.{match[1]}.{inner}"
    return TOP.get(module, module)


def to_native(module: str) -> str:
    """Module path in diffusers' CogVideoXTransformer3DModel -> module path in ComfyUI's model (to_diffusers'
    inverse)."""
    if match := re.match(r"transformer_blocks\.(\d+)\.(.+)$", module):
        native = next((name for name, inner in BLOCK.items() if inner == match[2]), None)
        if native is None:
            raise ValueError(f"diffusers layer '{module}' has no ComfyUI CogVideoX counterpart")
        return f"blocks.{match[1]}.{native}"
    return next((name for name, inner in TOP.items() if inner == module), module)


def tensor_to_diffusers(key: str) -> str:
    """A parameter or buffer name in ComfyUI's model (`blocks.3.q.weight`) -> its name in diffusers' model."""
    module, _, leaf = key.rpartition(".")
    return f"{to_diffusers(module)}.{leaf}" if module else key


def flat_to_diffusers_flat(flat: str) -> str:
    """The same for kohya-style names, where every dot became an underscore."""
    if match := re.match(r"blocks_(\d+)_(.+)$", flat):
        for native, diffusers_name in BLOCK.items():
            if match[2] == native.replace(".", "_"):
                return f"transformer_blocks_{match[1]}_{diffusers_name.replace('.', '_')}"
    return flat


BLOCK_LINEARS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "ff.net.0.proj", "ff.net.2",
                 "norm1.linear", "norm2.linear")
TOP_LINEARS = ("patch_embed.text_proj", "time_embedding.linear_1", "time_embedding.linear_2", "ofs_embedding.linear_1",
               "ofs_embedding.linear_2", "norm_out.linear", "proj_out")


def linear_names(max_blocks: int = 64) -> list[str]:
    """Every linear layer a diffusers CogVideoX transformer of up to `max_blocks` blocks can have."""
    return [f"transformer_blocks.{i}.{inner}" for i in range(max_blocks) for inner in BLOCK_LINEARS] + list(TOP_LINEARS)
