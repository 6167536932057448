"""ComfyUI's own CogVideoX objects built from the pack's tiny weights, for tests on hosts with native CogVideoX:
the MODEL (native module names, through core's detection and model classes) and a CLIP holding a small T5."""
from __future__ import annotations

from pathlib import Path

import torch

from dimx_core.cogvideox import native_keys
from dimx_core.weights import load_state_dict


def native_state(model_dir: Path) -> dict[str, torch.Tensor]:
    """The tiny diffusers transformer's tensors under ComfyUI's native names."""
    state, _ = load_state_dict(model_dir / "transformer" / "diffusion_pytorch_model.safetensors", "transformer")
    renamed = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        renamed[f"{native_keys.to_native(module)}.{leaf}"] = value
    return renamed


def core_cogvideox_model(model_dir: Path, sample: tuple[int, int, int] = (12, 18, 17)):
    """A ComfyUI MODEL (ModelPatcher) of the tiny weights, as core's diffusion-model loader builds it; `sample`
    (height, width, frames in latent pixels / frames) is what its loader would assume for the 5B model."""
    import comfy.model_detection
    import comfy.model_management as mm
    import comfy.model_patcher

    state = native_state(model_dir)
    config = comfy.model_detection.model_config_from_unet(state, "")
    config.unet_config.update(sample_height=sample[0], sample_width=sample[1], sample_frames=sample[2])
    config.set_inference_dtype(torch.float32, None)
    model = config.get_model(state, "")
    model.load_model_weights(state, "")
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                            offload_device=mm.unet_offload_device())
