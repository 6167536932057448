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


SMALL_T5 = dict(d_ff=64, d_kv=8, d_model=32, num_heads=4, num_layers=2, relative_attention_num_buckets=32,
                vocab_size=32128, layer_norm_epsilon=1e-6, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


def small_t5(seed: int = 0):
    """A small T5 v1.1 encoder (gated GELU) with the published T5-XXL vocabulary, as transformers builds it."""
    import transformers

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        config = transformers.T5Config(feed_forward_proj="gated-gelu", dropout_rate=0.0, **SMALL_T5)
        return transformers.T5EncoderModel(config).eval()


def core_t5_clip(encoder, folder: Path, pad_to: int):
    """A ComfyUI CLIP holding `encoder`'s weights in core's own T5 (comfy.text_encoders.t5), with core's T5-XXL
    tokenizer padding to `pad_to` tokens: 77 as its SD3-style T5 loaders, 226 as its 'cogvideox' type."""
    import functools
    import json

    import comfy.sd
    import comfy.sd1_clip
    import comfy.text_encoders.t5
    from comfy.supported_models_base import ClipTarget
    from comfy.text_encoders.sd3_clip import T5XXLTokenizer

    config = folder / "small_t5.json"
    config.write_text(json.dumps(dict(SMALL_T5, dense_act_fn="gelu_pytorch_tanh", is_gated_act=True,
                                      model_type="t5")))

    class SmallT5(comfy.sd1_clip.SDClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            super().__init__(device=device, textmodel_json_config=str(config), dtype=dtype,
                             special_tokens={"end": 1, "pad": 0}, model_class=comfy.text_encoders.t5.T5,
                             enable_attention_masks=False, return_attention_masks=False, model_options=model_options)

    class Model(comfy.sd1_clip.SD1ClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            super().__init__(device=device, dtype=dtype, name="t5xxl", clip_model=SmallT5, model_options=model_options)

    class Tokenizer(comfy.sd1_clip.SD1Tokenizer):
        def __init__(self, embedding_directory=None, tokenizer_data={}):
            super().__init__(embedding_directory=embedding_directory, tokenizer_data=tokenizer_data, clip_name="t5xxl",
                             tokenizer=functools.partial(T5XXLTokenizer, min_length=pad_to))

    clip = comfy.sd.CLIP(ClipTarget(Tokenizer, Model), model_options={"dtype": torch.float32})
    clip.load_sd(encoder.state_dict())  # 0.3.75's CLIP takes no state_dict argument
    return clip
