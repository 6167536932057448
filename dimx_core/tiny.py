"""Tiny CogVideoX image-to-video models and director LoRAs, built in code.

No weights can be downloaded for tests or demos, so this module builds a model with the same architecture
and the same folder layout as CogVideoX-5b-I2V (learned positional embeddings *and* RoPE, a real
AutoencoderKLCogVideoX, a T5 encoder, a SentencePiece tokenizer, the DDIM scheduler config), only small.
Everything loads through the same code as the real 5B folder. The weights are random: the outputs are
noise-like videos, useful to check plumbing, shapes, numerics and speed, never quality.
"""
from __future__ import annotations

import io
import json
from pathlib import Path

import torch

from .optional import require
from .cogvideox.spec import COGVIDEOX_5B_I2V_SCHEDULER, COGVIDEOX_5B_I2V_TRANSFORMER, T5_XXL_ENCODER

TINY_TEXT_DIM = 32
TINY_TRANSFORMER = dict(COGVIDEOX_5B_I2V_TRANSFORMER, num_attention_heads=2, attention_head_dim=16, num_layers=2,
                        text_embed_dim=TINY_TEXT_DIM, time_embed_dim=32, sample_height=12, sample_width=18,
                        sample_frames=17)  # odd latent count (5), as the VAE's frame batching needs
# CogVideoX 1.5 differences: temporal patches, `ofs` embedding, no learned positions, inverted latent scale.
TINY_TRANSFORMER_15 = dict(TINY_TRANSFORMER, patch_size_t=2, ofs_embed_dim=32, patch_bias=False,
                           use_learned_positional_embeddings=False)
# DimensionX's 360-degree orbit model: 145 frames (37 latent frames); 48x32 instead of 480x320 keeps it fast
TINY_TRANSFORMER_145 = dict(TINY_TRANSFORMER, sample_frames=145, sample_height=4, sample_width=6)
# 1.0 as ComfyUI's native CogVideoX can load it: its loader assumes 64-wide heads and a width divisible by 3
TINY_TRANSFORMER_CORE = dict(TINY_TRANSFORMER, num_attention_heads=3, attention_head_dim=64)
# CogVideoX-Fun's start/end-frame ("InP") models: noisy latents + a one-channel frame mask + masked-video latents
# (33 channels), or the 48-channel layout whose mask is VAE-encoded (cogvideox/layouts.py); Fun 1.5 has no `ofs`
TINY_TRANSFORMER_INP = dict(TINY_TRANSFORMER, in_channels=33)
TINY_TRANSFORMER_15_INP = dict(TINY_TRANSFORMER_15, in_channels=33, ofs_embed_dim=None)
TINY_TRANSFORMER_INP48 = dict(TINY_TRANSFORMER, in_channels=48)
I2V_PIPELINE, FUN_PIPELINE = "CogVideoXImageToVideoPipeline", "CogVideoXPipeline"  # Fun folders name the T2V class
FUN_CONFIG = {"add_noise_in_inpaint_model": True}  # what the published Fun InP transformer configs add
# version -> (transformer config, whether the VAE inverts its latent scale, model_index class, extra config keys)
TINY_VERSIONS = {"1.0": (TINY_TRANSFORMER, False, I2V_PIPELINE, {}),
                 "1.5": (TINY_TRANSFORMER_15, True, I2V_PIPELINE, {}),
                 "1.0-145": (TINY_TRANSFORMER_145, False, I2V_PIPELINE, {}),
                 "1.0-core": (TINY_TRANSFORMER_CORE, False, I2V_PIPELINE, {}),
                 "1.0-inp": (TINY_TRANSFORMER_INP, False, FUN_PIPELINE, FUN_CONFIG),
                 "1.5-inp": (TINY_TRANSFORMER_15_INP, True, FUN_PIPELINE, FUN_CONFIG),
                 "1.0-inp48": (TINY_TRANSFORMER_INP48, False, FUN_PIPELINE, FUN_CONFIG)}
TINY_VAE = dict(in_channels=3, out_channels=3, down_block_types=["CogVideoXDownBlock3D"] * 4,
                up_block_types=["CogVideoXUpBlock3D"] * 4, block_out_channels=[8, 8, 16, 16], latent_channels=16,
                layers_per_block=1, act_fn="silu", norm_eps=1e-6, norm_num_groups=8, temporal_compression_ratio=4,
                sample_height=96, sample_width=144, scaling_factor=0.7, force_upcast=True, use_quant_conv=False,
                use_post_quant_conv=False, invert_scale_latents=False)
TINY_T5 = dict(d_model=TINY_TEXT_DIM, d_kv=8, d_ff=64, num_layers=2, num_heads=4, relative_attention_num_buckets=8,
               feed_forward_proj="gated-gelu", dropout_rate=0.0,
               layer_norm_epsilon=1e-6, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
T5_EXTRA_IDS = 100  # like the published T5 tokenizer: <extra_id_0..99> after the SentencePiece pieces

MODEL_INDEX = {
    "_class_name": "CogVideoXImageToVideoPipeline",
    "scheduler": ["diffusers", "CogVideoXDDIMScheduler"],
    "text_encoder": ["transformers", "T5EncoderModel"],
    "tokenizer": ["transformers", "T5Tokenizer"],
    "transformer": ["diffusers", "CogVideoXTransformer3DModel"],
    "vae": ["diffusers", "AutoencoderKLCogVideoX"],
}

# A small English corpus the tokenizer is trained on, so prompts split into real word pieces.
_WORDS = ("a an the of on in with and at under over through around camera orbit left right up down zoom pan "
          "tilt roll moves slowly quickly scene light shadow water tree house car person dog cat bird astronaut "
          "moon sky space egg hatching surface mountain river city street forest flower ocean wave cloud sun "
          "night day red green blue white black bright dark walking running flying sitting standing smiling "
          "wind snow rain fire glass stone wood metal photo realistic cinematic detail high quality shot view").split()

TINY_LORA_RANK = 8


def _spiece_model(vocab_size: int = 320) -> bytes:
    spm = require("sentencepiece", "building the tiny tokenizer")
    sentences = [" ".join(_WORDS[(i * 7 + j * 11) % len(_WORDS)] for j in range(16)) for i in range(600)]
    buffer = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences), model_writer=buffer, vocab_size=vocab_size, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, character_coverage=1.0, num_threads=1, minloglevel=2,
        hard_vocab_limit=False, seed_sentencepiece_size=100000, shuffle_input_sentence=False)
    return buffer.getvalue()


def _write_tokenizer(folder: Path, max_length: int) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    model = _spiece_model()
    (folder / "spiece.model").write_bytes(model)
    extra = [f"<extra_id_{i}>" for i in range(T5_EXTRA_IDS)]
    config = {"tokenizer_class": "T5Tokenizer", "model_max_length": max_length, "extra_ids": T5_EXTRA_IDS,
              "additional_special_tokens": extra, "eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>",
              "legacy": True, "clean_up_tokenization_spaces": True, "sp_model_kwargs": {}}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>", "additional_special_tokens": extra}))
    spm = require("sentencepiece")
    return spm.SentencePieceProcessor(model_proto=model).get_piece_size() + T5_EXTRA_IDS


def build_tiny_model(out: str | Path, seed: int = 0, version: str = "1.0") -> Path:
    """Write a tiny CogVideoX image-to-video diffusers folder to `out` (created; must be empty or absent).

    version "1.0" mirrors CogVideoX-5b-I2V (what DimensionX directors are made for); "1.5" mirrors
    CogVideoX1.5-5B-I2V, so the 1.5 conditioning paths can be tested too; "1.0-145" is 1.0 in the 145-frame layout
    of DimensionX's 360-degree orbit model; "1.0-core" is 1.0 with heads ComfyUI's native CogVideoX loads;
    "1.0-inp" and "1.5-inp" mirror CogVideoX-Fun V1.1-5b-InP and V1.5-5b-InP (start and end frame), "1.0-inp48"
    the 48-channel inpaint layout.
    """
    if version not in TINY_VERSIONS:
        raise ValueError(f"version must be one of {', '.join(map(repr, TINY_VERSIONS))}, got {version!r}")
    transformer_config, inverts_scale, pipeline, extra_config = TINY_VERSIONS[version]
    diffusers = require("diffusers")
    transformers = require("transformers")
    out, vocab = new_model_folder(out)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        transformer = diffusers.CogVideoXTransformer3DModel(**transformer_config)
        vae = diffusers.AutoencoderKLCogVideoX(**dict(TINY_VAE, invert_scale_latents=inverts_scale))
        text_encoder = transformers.T5EncoderModel(transformers.T5Config(vocab_size=vocab, **TINY_T5))
    return write_model_folder(
        out, transformer, vae, text_encoder, pipeline, extra_config,
        f"Tiny CogVideoX {version} image-to-video model with random weights, built by `dimx tiny-model` for tests "
        f"and demos (seed {seed}). Same layout and architecture as the 5B model; outputs are noise.\n")


def new_model_folder(out: str | Path) -> tuple[Path, int]:
    """`out` created (empty or absent before) with the tiny SentencePiece tokenizer in it; its vocabulary size."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"'{out}' exists and is not empty; choose a new folder for the model.")
    out.mkdir(parents=True, exist_ok=True)
    return out, _write_tokenizer(out / "tokenizer", TINY_TRANSFORMER["max_text_seq_length"])


def write_model_folder(out: Path, transformer, vae, text_encoder, pipeline: str = I2V_PIPELINE,
                       extra_config: dict | None = None, readme: str = "") -> Path:
    """Save built modules into a folder from new_model_folder as a diffusers image-to-video folder (DDIM scheduler,
    model_index) that loads through the same code as the published ones; benchmarks write full-size random ones."""
    diffusers = require("diffusers")
    transformer.save_pretrained(out / "transformer", safe_serialization=True)
    if extra_config:  # keys diffusers' class does not know, written into the config as the published folders do
        config_path = out / "transformer" / "config.json"
        config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **extra_config}, indent=2))
    vae.save_pretrained(out / "vae", safe_serialization=True)
    text_encoder.save_pretrained(out / "text_encoder", safe_serialization=True)
    diffusers.CogVideoXDDIMScheduler(**COGVIDEOX_5B_I2V_SCHEDULER).save_pretrained(out / "scheduler")
    index = dict(MODEL_INDEX, _class_name=pipeline, _diffusers_version=diffusers.__version__)
    (out / "model_index.json").write_text(json.dumps(index, indent=2))
    (out / "README.md").write_text(readme or "CogVideoX image-to-video folder with random weights (benchmarks).\n")
    return out


def build_tiny_t5_file(out: str | Path, seed: int = 0, vocab_size: int = T5_XXL_ENCODER["vocab_size"]) -> Path:
    """Write a tiny T5 encoder as one .safetensors file (ComfyUI's models/text_encoders layout) with T5-XXL's
    vocabulary size, so that it pairs with the T5 tokenizer ComfyUI ships, as a real T5-XXL file does."""
    transformers, safetensors_torch = require("transformers"), require("safetensors.torch", "writing weights")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        encoder = transformers.T5EncoderModel(transformers.T5Config(vocab_size=vocab_size, **TINY_T5))
    tensors = {key: value.contiguous() for key, value in encoder.state_dict().items()
               if key != "encoder.embed_tokens.weight"}  # tied to shared.weight, as published files store it
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    safetensors_torch.save_file(tensors, str(out), metadata={"format": "pt"})
    return out


def director_lora_tensors(transformer_config: dict, kind: str, seed: int = 0,
                          rank: int = TINY_LORA_RANK) -> dict[str, torch.Tensor]:
    """Random director LoRA tensors in the DimensionX release layout (attention only, no alpha).

    B·A is scaled so that the trained effect, W + (1/rank)·B·A, changes each weight by about half its size.
    """
    if kind not in ("s", "t"):
        raise ValueError(f"kind must be 's' (camera, S-Director) or 't' (motion, T-Director), got {kind!r}")
    inner = transformer_config["num_attention_heads"] * transformer_config["attention_head_dim"]
    generator = torch.Generator().manual_seed(seed * 2 + (kind == "t"))
    gain = 0.5 * (rank / 3) ** 0.5
    tensors = {}
    for block in range(transformer_config["num_layers"]):
        for target in ("to_q", "to_k", "to_v", "to_out.0"):
            prefix = f"transformer.transformer_blocks.{block}.attn1.{target}"
            lora_a = torch.randn(rank, inner, generator=generator) / inner ** 0.5
            lora_b = torch.randn(inner, rank, generator=generator) * gain
            tensors[f"{prefix}.lora_A.weight"] = lora_a.to(torch.bfloat16)
            tensors[f"{prefix}.lora_B.weight"] = lora_b.to(torch.bfloat16)
    return tensors


def build_tiny_lora(model: str | Path, out: str | Path, kind: str, seed: int = 0) -> Path:
    """Write a tiny director LoRA for the tiny model in `model` to the .safetensors file `out`."""
    safetensors_torch = require("safetensors.torch", "writing LoRA files")
    config_path = Path(model) / "transformer" / "config.json"
    if not config_path.is_file():
        raise FileNotFoundError(f"'{model}' has no transformer/config.json; pass the folder `dimx tiny-model` wrote.")
    config = json.loads(config_path.read_text())
    tensors = director_lora_tensors(config, kind, seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    safetensors_torch.save_file(tensors, str(out), metadata={
        "format": "pt", "dimx_tiny": f"{kind.upper()}-Director test LoRA with random weights (seed {seed})"})
    return out
