"""Build the model from single files users already have in ComfyUI's folders.

The transformer may be saved with diffusers names or with ComfyUI's native names (converted here); its
configuration is read from the tensor shapes, so 1.0 and 1.5 checkpoints (and the tiny test model) are told
apart by their weights, never by file names. The VAE and T5 files use the diffusers/transformers layouts.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..cogvideox import native_keys
from ..cogvideox.spec import (COGVIDEOX_5B_I2V_SCHEDULER, COGVIDEOX_5B_I2V_TRANSFORMER, conditioning_layout,
                              spec_from_configs)
from ..optional import require
from ..weights import load_state_dict
from .components import ModelSource, VideoComponents, dtype_name

PREFIXES = ("model.diffusion_model.", "diffusion_model.", "transformer.")
# CogVideoX 1.5 configs keep the RoPE base grid in sample_height/width; the published one is 300 x 300 latents.
COGVIDEOX_15_SAMPLE = dict(sample_height=300, sample_width=300, sample_frames=81)
PUBLISHED_VAE = dict(in_channels=3, out_channels=3, act_fn="silu", norm_eps=1e-6, temporal_compression_ratio=4,
                     sample_height=480, sample_width=720, scaling_factor=0.7, force_upcast=True,
                     use_quant_conv=False, use_post_quant_conv=False)


def _strip_prefix(state: dict) -> dict:
    for prefix in PREFIXES:
        if all(key.startswith(prefix) for key in state):
            return {key[len(prefix):]: value for key, value in state.items()}
    return state


def transformer_state(path: str | Path) -> dict[str, torch.Tensor]:
    state = _strip_prefix(load_state_dict(path, "transformer file")[0])
    if native_keys.is_native(state):
        state = {native_keys.tensor_to_diffusers(key): value for key, value in state.items()}
    if "patch_embed.proj.weight" not in state or "transformer_blocks.0.attn1.to_q.weight" not in state:
        raise ValueError(f"'{Path(path).name}' is not a CogVideoX transformer (no patch embedding or attention "
                         "weights found). Choose the diffusion-model file of CogVideoX-5b-I2V.")
    return state


def _count(state: dict, prefix: str) -> int:
    return 1 + max(int(key[len(prefix):].split(".")[0]) for key in state if key.startswith(prefix))


def _latent_grid(tokens: int) -> tuple[int, int, int]:
    """(latent frames, patch rows, patch columns) of a learned positional table, for the 3:2 images and
    4k+1 frames CogVideoX models are trained on."""
    for latent_frames in range(1, 64):
        per_frame = tokens / latent_frames
        rows = math.isqrt(int(per_frame / 1.5)) if per_frame == int(per_frame) else 0
        if rows and rows * round(rows * 1.5) == per_frame and latent_frames % 2 == 1 and latent_frames > 1:
            return latent_frames, rows, round(rows * 1.5)
    raise ValueError(f"a learned positional table of {tokens} video tokens matches no 3:2 CogVideoX geometry")


def transformer_config(state: dict) -> dict:
    proj = state["patch_embed.proj.weight"]
    inner = proj.shape[0]
    head_dim = state["transformer_blocks.0.attn1.norm_q.weight"].shape[0]
    text_tokens = COGVIDEOX_5B_I2V_TRANSFORMER["max_text_seq_length"]
    config = dict(COGVIDEOX_5B_I2V_TRANSFORMER, attention_head_dim=head_dim, num_attention_heads=inner // head_dim,
                  num_layers=_count(state, "transformer_blocks."),
                  text_embed_dim=state["patch_embed.text_proj.weight"].shape[1],
                  time_embed_dim=state["time_embedding.linear_1.weight"].shape[0])
    if proj.ndim == 4:  # 1.0: a convolution over 2x2 patches
        patch = proj.shape[2]
        config.update(in_channels=proj.shape[1], patch_size=patch,
                      out_channels=state["proj_out.weight"].shape[0] // patch ** 2)
        if "patch_embed.pos_embedding" in state:
            frames, rows, cols = _latent_grid(state["patch_embed.pos_embedding"].shape[1] - text_tokens)
            config.update(sample_frames=(frames - 1) * 4 + 1, sample_height=rows * patch, sample_width=cols * patch)
        else:
            config.update(use_learned_positional_embeddings=False)
    else:  # 1.5: a linear layer over 2x2x2 space-time patches
        config.update(in_channels=proj.shape[1] // 8, patch_size=2, patch_size_t=2, patch_bias="patch_embed.proj.bias"
                      in state, out_channels=state["proj_out.weight"].shape[0] // 8,
                      use_learned_positional_embeddings=False, **COGVIDEOX_15_SAMPLE)
    if "ofs_embedding.linear_1.weight" in state:
        config["ofs_embed_dim"] = state["ofs_embedding.linear_1.weight"].shape[1]
    return config


def vae_config(state: dict, invert_scale_latents: bool) -> dict:
    blocks = _count(state, "encoder.down_blocks.")
    channels = [state[f"encoder.down_blocks.{i}.resnets.0.conv2.conv.weight"].shape[0] for i in range(blocks)]
    groups = math.gcd(32, *channels)  # the published VAE uses 32 groups; smaller models the largest that fits
    return dict(PUBLISHED_VAE, down_block_types=["CogVideoXDownBlock3D"] * blocks,
                up_block_types=["CogVideoXUpBlock3D"] * blocks, block_out_channels=channels,
                latent_channels=state["encoder.conv_out.conv.weight"].shape[0] // 2,
                layers_per_block=_count(state, "encoder.down_blocks.0.resnets."), norm_num_groups=groups,
                invert_scale_latents=invert_scale_latents)


def t5_config(state: dict) -> dict:
    attention = state["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
    query = state["encoder.block.0.layer.0.SelfAttention.q.weight"]
    gated = "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in state
    ff = state["encoder.block.0.layer.1.DenseReluDense." + ("wi_0" if gated else "wi") + ".weight"]
    return dict(vocab_size=state["shared.weight"].shape[0], d_model=state["shared.weight"].shape[1],
                d_kv=query.shape[0] // attention.shape[1], num_heads=attention.shape[1], d_ff=ff.shape[0],
                num_layers=_count(state, "encoder.block."), relative_attention_num_buckets=attention.shape[0],
                feed_forward_proj="gated-gelu" if gated else "relu", dropout_rate=0.0, layer_norm_epsilon=1e-6,
                pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)


def build_from_state(cls, config, state: dict, dtype: torch.dtype, what: str, allowed_missing=()) -> torch.nn.Module:
    accelerate = require("accelerate")
    with accelerate.init_empty_weights():  # no full-size fp32 copy in memory before the weights arrive
        model = cls(**config) if not hasattr(cls, "from_config") else cls.from_config(config)
    state = {key: value.to(dtype) if value.is_floating_point() else value for key, value in state.items()}
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    missing = [key for key in missing if key not in allowed_missing]
    if missing or unexpected:
        raise ValueError(f"the {what} file does not match the architecture read from its own shapes: "
                         f"missing {missing[:3]}, unexpected {unexpected[:3]}")
    return model.eval().requires_grad_(False)


def load_single_files(transformer: str | Path, vae: str | Path, text_encoder: str | Path,
                      tokenizer_dir: str | Path, dtype: torch.dtype = torch.bfloat16) -> VideoComponents:
    """`tokenizer_dir`: a T5 tokenizer folder (ComfyUI ships one: comfy/text_encoders/t5_tokenizer)."""
    diffusers, transformers = require("diffusers"), require("transformers")
    state = transformer_state(transformer)
    config = transformer_config(state)
    try:
        layout = conditioning_layout(config["in_channels"])
    except ValueError as err:
        raise ValueError(f"'{Path(transformer).name}': {err}") from None
    built = build_from_state(diffusers.CogVideoXTransformer3DModel, config, state, dtype, "transformer")

    vae_state = _strip_prefix(load_state_dict(vae, "VAE file")[0])
    if "decoder.conv_in.conv.weight" not in vae_state:
        raise ValueError(f"'{Path(vae).name}' is not a CogVideoX VAE (no 3D causal decoder found)")
    vae_model = build_from_state(diffusers.AutoencoderKLCogVideoX,
                                 vae_config(vae_state, config.get("patch_size_t") is not None),
                                 vae_state, dtype, "VAE")

    t5_state = load_state_dict(text_encoder, "text encoder file")[0]
    if "shared.weight" not in t5_state or "encoder.block.0.layer.0.SelfAttention.q.weight" not in t5_state:
        raise ValueError(f"'{Path(text_encoder).name}' is not a T5 encoder. Choose the T5-XXL file "
                         "(t5xxl_fp16.safetensors or similar) from models/text_encoders.")
    if any(v.dtype in (torch.float8_e4m3fn, torch.float8_e5m2) for v in t5_state.values()):
        raise ValueError(f"'{Path(text_encoder).name}' stores T5 in fp8; choose the fp16 or bf16 T5-XXL file")
    t5_state.setdefault("encoder.embed_tokens.weight", t5_state["shared.weight"])
    encoder = build_from_state(lambda **kw: transformers.T5EncoderModel(transformers.T5Config(**kw)),
                               t5_config(t5_state), t5_state, dtype, "text encoder",
                               allowed_missing=("encoder.embed_tokens.weight",))
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if len(tokenizer) > encoder.config.vocab_size:
        raise ValueError(f"the tokenizer in '{tokenizer_dir}' has {len(tokenizer)} tokens but the text encoder only "
                         f"{encoder.config.vocab_size}: they do not belong together (T5-XXL has 32128)")
    if config["text_embed_dim"] != encoder.config.d_model:
        raise ValueError(f"the transformer reads text states of width {config['text_embed_dim']} but the text "
                         f"encoder makes {encoder.config.d_model}: choose the T5-XXL encoder")
    # a file carries no config: the published start/end-frame (Fun InP) models were trained with noise on the given
    # frames (their configs say add_noise_in_inpaint_model)
    spec = spec_from_configs(dict(config, add_noise_in_inpaint_model=layout.end_frame), dict(vae_model.config))
    files = (str(transformer), str(vae), str(text_encoder), str(tokenizer_dir))
    return VideoComponents(built, vae_model, encoder, tokenizer, dict(COGVIDEOX_5B_I2V_SCHEDULER), spec,
                           f"{transformer} + {vae} + {text_encoder}",
                           origin=ModelSource(dtype_name(dtype), files=files))

