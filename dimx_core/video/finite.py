"""Refusing to report success for garbage: NaN or infinity in the denoised latents or the decoded frames.

Non-finite latents decode to an all-black video. The check runs once, where the denoising loop ends (one host
sync, none inside the loop); only when it fails are the usual causes looked for, so a good run pays nothing for
the diagnosis: damaged weights, damaged conditioning, or fp16, whose range CogVideoX's activations overflow.
"""
from __future__ import annotations

import torch


def non_finite_parameters(module: torch.nn.Module) -> list[str]:
    return [name for name, tensor in (*module.named_parameters(), *module.named_buffers())
            if tensor.is_floating_point() and not torch.isfinite(tensor).all()]


def _count(tensor: torch.Tensor) -> str:
    return f"{int((~torch.isfinite(tensor)).sum())} of {tensor.numel()} values"


def _weights_cause(module: torch.nn.Module, what: str) -> str | None:
    damaged = non_finite_parameters(module)
    if not damaged:
        return None
    adapters = [name for name in damaged if ".lora_" in name]
    where = "a director LoRA attached to it" if adapters else "its model file (damaged or incompletely downloaded)"
    return (f"the {what}'s weights hold NaN or infinity in {len(damaged)} tensors (first: '{damaged[0]}'), from "
            f"{where}")


def _precision_cause(dtype: torch.dtype, what: str) -> str:
    if dtype == torch.float16:
        return (f"fp16 overflow: the {what}'s activations exceed fp16's range (65504); load the model in bf16, the "
                "precision CogVideoX-5b was trained in (or fp32)")
    return f"the {what} produced NaN or infinity from finite weights and inputs in {str(dtype).split('.')[-1]}"


def check_denoised(latents: torch.Tensor, transformer: torch.nn.Module,
                   inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """`latents` if they are all finite; else an error naming the likely cause. `inputs`: the conditioning the
    loop used, by what to call it (prompt states, image latents)."""
    if torch.isfinite(latents).all():
        return latents
    damaged_inputs = [f"the {name} ({_count(value)} non-finite)" for name, value in inputs.items()
                      if value.is_floating_point() and not torch.isfinite(value).all()]
    cause = (("the conditioning is already broken: " + ", ".join(damaged_inputs)) if damaged_inputs else
             _weights_cause(transformer, "transformer") or _precision_cause(latents.dtype, "transformer"))
    raise ValueError(f"denoising produced NaN or infinity ({_count(latents)} of the latents), which would decode to "
                     f"a black video. Cause: {cause}.")


def check_decoded(frames: torch.Tensor, vae: torch.nn.Module) -> torch.Tensor:
    """Decoded frames if finite; else an error naming the VAE (the latents were checked before)."""
    if torch.isfinite(frames).all():
        return frames
    cause = _weights_cause(vae, "VAE") or _precision_cause(next(vae.parameters()).dtype, "VAE")
    raise ValueError(f"decoding produced NaN or infinity ({_count(frames)} of the pixels), which would show as black. "
                     f"Cause: {cause}.")
