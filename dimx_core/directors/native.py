"""A director as weight patches for ComfyUI's native CogVideoX: the LoRA's targets under core's layer names, in
the lora_up / lora_down / alpha layout core's own LoRA loader reads, so core's model patcher applies it (its memory
manager, model cloning and other LoRAs keep working). alpha is the file's own, or 1 for DimensionX's alpha-less
files, so strength 1.0 applies W + (1 / rank) B A: the effect as trained.
"""
from __future__ import annotations

import torch

from ..cogvideox import native_keys
from .formats import LoraFile

PATCH_NAME = "dimx_director"


def native_patch_tensors(lora: LoraFile, weight_shapes: dict[str, torch.Size], model_label: str,
                         prefix: str = "diffusion_model.") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(tensors, key map) for core's `comfy.lora.load_lora(tensors, key_map)`. weight_shapes: the model's weight
    shapes by key ("diffusion_model.blocks.0.q.weight"); a LoRA whose layers are not there, or do not fit them,
    is refused naming the first of them."""
    tensors, key_map, problems = {}, {}, []
    for index, (module, target) in enumerate(sorted(lora.targets.items())):
        try:
            key = f"{prefix}{native_keys.to_native(module)}.weight"
        except ValueError as err:
            problems.append(str(err))
            continue
        shape = weight_shapes.get(key)
        if shape is None or len(shape) != 2:
            problems.append(f"{module}: the model has no linear layer {key}")
        elif (target.up.shape[0], target.down.shape[1]) != tuple(shape):
            problems.append(f"{module}: LoRA maps {target.down.shape[1]}->{target.up.shape[0]}, the layer is "
                            f"{shape[1]}->{shape[0]}")
        else:
            name = f"{PATCH_NAME}.{index}"
            tensors[f"{name}.lora_up.weight"] = target.up
            tensors[f"{name}.lora_down.weight"] = target.down
            tensors[f"{name}.alpha"] = torch.tensor(lora.effective_alpha(target))
            key_map[name] = key
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise ValueError(f"LoRA '{lora.path}' does not fit {model_label}: {shown}. It was made for another base "
                         "model (DimensionX directors are made for CogVideoX-5b-I2V).")
    return tensors, key_map
