"""Which base model a director LoRA was made for, told from more than its layer shapes.

The attention layers of CogVideoX 1.0 and 1.5 (5B) have the same widths, so a LoRA trained on one fits the other
by shape and silently steers it wrong. What still tells them apart: the base model a file's metadata names
(training tools write it), layers only one version has (1.5's `ofs_embedding`, 1.0's learned positional table
`patch_embed.pos_embedding`), the layout of a positional table a file carries, and how many blocks it covers.
"""
from __future__ import annotations

import re

import torch

from .formats import LoraFile

# version -> how metadata names it; 1.5 is tried first ("CogVideoX1.5-5B" must not read as "CogVideoX ... 5B")
METADATA_NAMES = (("1.5", re.compile(r"cogvideox[\s_-]*v?1\.5", re.IGNORECASE)),
                  ("1.0", re.compile(r"cogvideox[\s_-]*(?:v?1\.0[\s_-]*)?[25]b", re.IGNORECASE)))
# layers only one version has: (pattern on a tensor's name, version, what to call them)
VERSION_LAYERS = ((re.compile(r"(^|\.)ofs_embedding\."), "1.5", "ofs_embedding"),
                  (re.compile(r"(^|\.)patch_embed\.pos_embedding$"), "1.0", "learned positional-table"))
POSITIONAL_TABLE = re.compile(r"(^|\.)patch_embed\.pos_embedding$")


def model_version(transformer: torch.nn.Module) -> str:
    return "1.5" if getattr(transformer.config, "patch_size_t", None) else "1.0"


def made_for(lora: LoraFile) -> tuple[str, str] | None:
    """(CogVideoX version, the evidence) when the file says which base model it was made for, else None."""
    for key, value in sorted(lora.metadata.items()):
        for version, pattern in METADATA_NAMES:
            if match := pattern.search(str(value)):
                return version, f"its metadata '{key}' names {match.group(0)}"
    names = [*lora.targets, *lora.other_tensors]
    for pattern, version, what in VERSION_LAYERS:
        if any(pattern.search(name) for name in names):
            return version, f"it carries {what} tensors, which only CogVideoX {version} has"
    return None


def _blocks(lora: LoraFile) -> set[int]:
    return {int(m.group(1)) for name in lora.targets if (m := re.match(r"transformer_blocks\.(\d+)\.", name))}


def compatibility(lora: LoraFile, transformer: torch.nn.Module) -> tuple[list[str], list[str]]:
    """(reasons to refuse, warnings) for attaching `lora` to `transformer`, beyond the shapes of its layers."""
    refusals, warnings = [], []
    version = model_version(transformer)
    found = made_for(lora)
    if found is not None and found[0] != version:
        refusals.append(f"it was made for CogVideoX {found[0]} ({found[1]}), and this model is CogVideoX {version}")
    table = getattr(getattr(transformer, "patch_embed", None), "pos_embedding", None)
    for name, shape in lora.other_tensors.items():
        if POSITIONAL_TABLE.search(name) and table is not None and tuple(table.shape) != shape:
            refusals.append(f"its positional table '{name}' has the layout {shape}, this model's is "
                            f"{tuple(table.shape)} (another frame count or image size)")
    blocks, layers = _blocks(lora), transformer.config.num_layers
    if blocks and max(blocks) < layers - 1 and blocks == set(range(max(blocks) + 1)):
        warnings.append(f"it covers blocks 0-{max(blocks)} only, of this model's {layers}: it may have been made "
                        "for a smaller model; its effect will be partial")
    return refusals, warnings
