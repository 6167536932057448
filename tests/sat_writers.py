"""Tiny checkpoints in the SAT layout, and a reference forward computed straight from their SAT tensors.

Key names follow the public SAT model: SATVideoDiffusionEngine.model.diffusion_model is CogVideo's
`dit_video_concat.DiffusionTransformer` (SwissArmyTransformer's BaseTransformer: `transformer.layers.N.attention.
query_key_value`, `.dense`, `.mlp.dense_h_to_4h`, ...; mixins `pos_embed` (Rotary3DPositionEmbeddingMixin with a
learned table), `patch_embed`, `adaln_layer`, `final_layer`, and `lora` (lora2.LoraMixin, which puts the base weight
under `.original` and matrix_A.i / matrix_B.i per output partition). Files are written in both forms SAT produces:
`{"module": state}` (its inference save, as CogVideoX's SAT weights were released) and DeepSpeed's full record with
SAT's client state (rng states, lr scheduler), in a folder with `latest` naming the iteration subfolder.
"""
import math
import random
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

PREFIX = "model.diffusion_model."
TEXT_TOKENS = 226


def sat_rope_tables(head_dim: int, frames: int, rows: int, cols: int, theta: float = 10000.0):
    """freqs_sin / freqs_cos as Rotary3DPositionEmbeddingMixin builds them: a quarter of each head for time, 3/8
    each for height and width, every frequency repeated for its (real, imaginary) pair."""
    def axis(dim, length):
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2)[: dim // 2].float() / dim)
        return torch.repeat_interleave(torch.arange(length).float()[:, None] * freqs[None], 2, dim=-1)

    t, h, w = axis(head_dim // 4, frames), axis(head_dim // 8 * 3, rows), axis(head_dim // 8 * 3, cols)
    grid = torch.cat([t[:, None, None].expand(frames, rows, cols, -1), h[None, :, None].expand(frames, rows, cols, -1),
                      w[None, None].expand(frames, rows, cols, -1)], dim=-1).reshape(frames * rows * cols, head_dim)
    return grid.sin(), grid.cos()


def sat_transformer_state(*, layers=2, heads=2, head_dim=16, text_dim=32, time_dim=32, latent_frames=5,
                          latent_height=12, latent_width=18, in_channels=32, out_channels=16, lora_rank=None,
                          qk_norm=True, seed=0, dtype=torch.float32, prefix=PREFIX,
                          device="cpu") -> dict[str, torch.Tensor]:
    """Random weights of a tiny SAT DiffusionTransformer as DimensionX's 145-frame config builds it (learned
    positions + 3D RoPE + adaLN with q/k LayerNorms), optionally with the LoRA mixin of rank `lora_rank`.
    device="meta" gives shapes only, so the released model's full-size layout can be checked without its weights."""
    generator = torch.Generator().manual_seed(seed)
    hidden, patch = heads * head_dim, 2
    tokens = latent_frames * (latent_height // patch) * (latent_width // patch)

    def randn(*shape):
        return torch.empty(shape, device="meta") if device == "meta" else torch.randn(*shape, generator=generator)

    def linear(out_features, in_features, gain=1.0):
        return randn(out_features, in_features) * gain / math.sqrt(in_features), randn(out_features) * 0.02

    def norm(size):
        return 1 + 0.1 * randn(size), 0.05 * randn(size)

    state = {}

    def put(name, pair):
        state[f"{name}.weight"], state[f"{name}.bias"] = pair

    put("time_embed.0", linear(time_dim, hidden))
    put("time_embed.2", linear(time_dim, time_dim))
    proj = randn(hidden, in_channels, patch, patch) / math.sqrt(in_channels * patch ** 2)
    put("mixins.patch_embed.proj", (proj, randn(hidden) * 0.02))
    put("mixins.patch_embed.text_proj", linear(hidden, text_dim))
    state["mixins.pos_embed.pos_embedding"] = 0.1 * randn(1, TEXT_TOKENS + tokens, hidden)
    state["mixins.pos_embed.freqs_sin"], state["mixins.pos_embed.freqs_cos"] = (
        (randn(tokens, head_dim), randn(tokens, head_dim)) if device == "meta"
        else sat_rope_tables(head_dim, latent_frames, latent_height // patch, latent_width // patch))
    for i in range(layers):
        layer = f"transformer.layers.{i}"
        put(f"{layer}.input_layernorm", norm(hidden))
        put(f"{layer}.post_attention_layernorm", norm(hidden))
        for name, out_features, partitions in (("query_key_value", 3 * hidden, 3), ("dense", hidden, 1)):
            module = f"{layer}.attention.{name}"
            if lora_rank is None:
                put(module, linear(out_features, hidden))
                continue
            put(f"{module}.original", linear(out_features, hidden))
            for p in range(partitions):  # trained LoRA: B is not zero; W + B·A/r moves W by about half its size
                state[f"{module}.matrix_A.{p}"] = randn(lora_rank, hidden) / math.sqrt(hidden)
                state[f"{module}.matrix_B.{p}"] = (randn(out_features // partitions, lora_rank)
                                                   * 0.5 * math.sqrt(lora_rank))
        put(f"{layer}.mlp.dense_h_to_4h", linear(4 * hidden, hidden))
        put(f"{layer}.mlp.dense_4h_to_h", linear(hidden, 4 * hidden))
        put(f"mixins.adaln_layer.adaLN_modulations.{i}.1", linear(12 * hidden, time_dim, gain=0.3))
        if qk_norm:
            put(f"mixins.adaln_layer.query_layernorm_list.{i}", norm(head_dim))
            put(f"mixins.adaln_layer.key_layernorm_list.{i}", norm(head_dim))
    state["transformer.position_embeddings.weight"] = randn(64, hidden)  # BaseTransformer's unused table (max 64)
    put("transformer.final_layernorm", norm(hidden))
    put("mixins.final_layer.norm_final", norm(hidden))
    put("mixins.final_layer.linear", linear(patch * patch * out_channels, hidden))
    put("mixins.final_layer.adaLN_modulation.1", linear(2 * hidden, time_dim, gain=0.3))
    return {prefix + key: value.to(dtype) for key, value in state.items()}


def non_transformer_tensors() -> dict[str, torch.Tensor]:
    """A few of what a full training checkpoint also holds: the VAE, the T5 conditioner, the denoiser's sigmas."""
    return {"first_stage_model.encoder.conv_in.conv.weight": torch.zeros(8, 3, 3, 3, 3),
            "conditioner.embedders.0.transformer.shared.weight": torch.zeros(10, 4),
            "denoiser.sigmas": torch.linspace(0.01, 10, 1000)}


def deepspeed_record(module: dict[str, torch.Tensor], iteration: int = 3000) -> dict:
    """What DeepSpeed's engine `_save_checkpoint` writes (ZeRO-2, bf16) plus SAT's client state."""
    state = OrderedDict(module)
    state._metadata = OrderedDict({"": {"version": 1}})  # as nn.Module.state_dict leaves it
    return dict(
        module=state, buffer_names=[k for k in module if "freqs_" in k], optimizer=None,
        param_shapes=[OrderedDict((k, v.shape) for k, v in module.items() if "matrix_" in k)],
        frozen_param_shapes=None, shared_params={}, frozen_param_fragments=None, lr_scheduler=None,
        data_sampler=None, random_ltd=None, sparse_tensor_module_names=set(), skipped_steps=0,
        global_steps=iteration, global_samples=iteration * 16, dp_world_size=8, mp_world_size=1,
        ds_config={"train_micro_batch_size_per_gpu": 1, "gradient_accumulation_steps": 2, "gradient_clipping": 0.1,
                   "zero_optimization": {"stage": 2, "reduce_bucket_size": 1000000000},
                   "bf16": {"enabled": True}, "fp16": {"enabled": False},
                   "optimizer": {"type": "sat.ops.FusedEmaAdam",
                                 "params": {"lr": 0.001, "betas": [0.9, 0.95], "eps": "1e-8"}}},
        ds_version="0.14.4", iteration=iteration,
        client_lr_scheduler={"start_lr": 0.001, "warmup_iter": 100, "num_iters": 3000, "decay_style": "linear",
                             "end_iter": 3000, "decay_ratio": 0.1},
        random_rng_state=random.Random(0).getstate(), np_rng_state=np.random.RandomState(0).get_state(),
        torch_rng_state=torch.get_rng_state(), cuda_rng_state=torch.get_rng_state())


def write_sat_folder(root: Path, record: dict, tag: str = "1") -> Path:
    """`root/latest` naming `root/<tag>/mp_rank_00_model_states.pt`, as SAT saves (and DimensionX releases) it."""
    (root / tag).mkdir(parents=True, exist_ok=True)
    torch.save(record, root / tag / "mp_rank_00_model_states.pt")
    (root / "latest").write_text(tag)
    return root


def build_tiny_360_model(out: Path, base: Path, seed: int = 0) -> Path:
    """A tiny model folder in the layout of DimensionX's 360-degree model (145 frames, 37 latent frames), made the
    way a user makes the real one: a SAT checkpoint as DeepSpeed saves it (bf16, LoRA r = 4, SAT's client state,
    `latest`) converted by the pack's SAT converter, with `base`'s VAE, T5, tokenizer and scheduler linked."""
    from dimx_core.tiny import TINY_TRANSFORMER_145
    from dimx_core.video.sat_convert import convert_sat_checkpoint

    state = sat_transformer_state(latent_frames=37, latent_height=TINY_TRANSFORMER_145["sample_height"],
                                  latent_width=TINY_TRANSFORMER_145["sample_width"], lora_rank=4, seed=seed,
                                  dtype=torch.bfloat16)
    with tempfile.TemporaryDirectory(prefix="dimx-sat-") as scratch:
        folder = write_sat_folder(Path(scratch) / "DimensionX_360orbit", deepspeed_record(state))
        return convert_sat_checkpoint(folder, out, base=base).folder


# --- the reference: DiffusionTransformer.forward computed from the SAT tensors ---------------------------------------

def _layer_norm(x, state, name, eps):
    return F.layer_norm(x, x.shape[-1:], state[f"{name}.weight"], state[f"{name}.bias"], eps)


def _linear(x, state, name):
    return F.linear(x, state[f"{name}.weight"], state[f"{name}.bias"])


def _lora_linear(x, state, name, alpha=1.0):
    """LoraLinear.forward: original(x) plus, per output partition i, (alpha / r)·B_i·A_i·x."""
    if f"{name}.weight" in state:
        return _linear(x, state, name)
    count = sum(1 for k in state if k.startswith(f"{name}.matrix_A."))
    parts = [(x @ state[f"{name}.matrix_A.{i}"].T) @ state[f"{name}.matrix_B.{i}"].T for i in range(count)]
    rank = state[f"{name}.matrix_A.0"].shape[0]
    return _linear(x, state, f"{name}.original") + torch.cat(parts, dim=-1) * (alpha / rank)


def _rope(x, text_length, cos, sin):
    """Rotary3DPositionEmbeddingMixin.rotary on the video tokens: pairs (x1, x2) -> (-x2, x1)."""
    video = x[:, :, text_length:]
    pairs = video.reshape(*video.shape[:-1], -1, 2)
    rotated = torch.stack((-pairs[..., 1], pairs[..., 0]), dim=-1).flatten(-2)
    n = video.shape[2]
    return torch.cat([x[:, :, :text_length], video * cos[:n] + rotated * sin[:n]], dim=2)


def _modulate(value, shift, scale):
    return value * (1 + scale[:, None]) + shift[:, None]


def sat_reference_forward(state: dict[str, torch.Tensor], x: torch.Tensor, timesteps: torch.Tensor,
                          context: torch.Tensor, heads: int, layernorm_eps: float = 1e-5,
                          final_eps: float = 1e-6) -> torch.Tensor:
    """x (B, T, 32, h, w): noisy latents with the image latents concatenated on channels; context (B, 226, text_dim).
    Returns the prediction (B, T, 16, h, w), as SAT's DiffusionTransformer computes it. SAT's layers normalise with
    eps 1e-5 (BaseTransformer's layernorm_epsilon), its final layer with 1e-6 (FinalLayerMixin)."""
    s = {k[len(PREFIX):] if k.startswith(PREFIX) else k: v.float() for k, v in state.items()}
    hidden = s["mixins.patch_embed.proj.weight"].shape[0]
    head_dim, text_length, patch = hidden // heads, context.shape[1], s["mixins.patch_embed.proj.weight"].shape[-1]
    half = hidden // 2  # sgm's timestep_embedding: cos then sin
    angles = timesteps[:, None].float() * torch.exp(-math.log(10000) * torch.arange(half).float() / half)[None]
    emb = _linear(F.silu(_linear(torch.cat([angles.cos(), angles.sin()], -1), s, "time_embed.0")), s, "time_embed.2")
    b, t, c, h, w = x.shape
    patches = F.conv2d(x.reshape(b * t, c, h, w), s["mixins.patch_embed.proj.weight"],
                       s["mixins.patch_embed.proj.bias"], stride=patch)
    patches = patches.reshape(b, t, hidden, -1).transpose(2, 3).reshape(b, -1, hidden)
    states = torch.cat([_linear(context, s, "mixins.patch_embed.text_proj"), patches], 1)
    states = states + s["mixins.pos_embed.pos_embedding"][:, : states.shape[1]]
    cos, sin = s["mixins.pos_embed.freqs_cos"], s["mixins.pos_embed.freqs_sin"]

    layer_count = 1 + max(int(k.split(".")[2]) for k in s if k.startswith("transformer.layers."))
    for i in range(layer_count):
        layer = f"transformer.layers.{i}"
        # video (shift, scale, gate) for attention, then for the MLP; then the same six for the text tokens
        mods = _linear(F.silu(emb), s, f"mixins.adaln_layer.adaLN_modulations.{i}.1").chunk(12, dim=1)
        text_h, image_h = states[:, :text_length], states[:, text_length:]

        def pre_norm(name, text_at, video_at):  # LayerNorm, then each side's own shift and scale
            text_in = _modulate(_layer_norm(text_h, s, f"{layer}.{name}", layernorm_eps), *mods[text_at:text_at + 2])
            video_in = _modulate(_layer_norm(image_h, s, f"{layer}.{name}", layernorm_eps),
                                 *mods[video_at:video_at + 2])
            return torch.cat([text_in, video_in], 1)

        qkv = _lora_linear(pre_norm("input_layernorm", 6, 0), s, f"{layer}.attention.query_key_value")
        q, k, v = (part.reshape(b, -1, heads, head_dim).transpose(1, 2) for part in qkv.chunk(3, -1))
        q = _rope(_layer_norm(q, s, f"mixins.adaln_layer.query_layernorm_list.{i}", 1e-6), text_length, cos, sin)
        k = _rope(_layer_norm(k, s, f"mixins.adaln_layer.key_layernorm_list.{i}", 1e-6), text_length, cos, sin)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(head_dim), dim=-1)
        attention = _lora_linear((weights @ v).transpose(1, 2).reshape(b, -1, hidden), s, f"{layer}.attention.dense")
        text_h = text_h + mods[8][:, None] * attention[:, :text_length]
        image_h = image_h + mods[2][:, None] * attention[:, text_length:]
        mlp = _linear(F.gelu(_linear(pre_norm("post_attention_layernorm", 9, 3), s, f"{layer}.mlp.dense_h_to_4h"),
                             approximate="tanh"), s, f"{layer}.mlp.dense_4h_to_h")
        text_h = text_h + mods[11][:, None] * mlp[:, :text_length]
        image_h = image_h + mods[5][:, None] * mlp[:, text_length:]
        states = torch.cat([text_h, image_h], 1)
    image = _layer_norm(states, s, "transformer.final_layernorm", layernorm_eps)[:, text_length:]
    shift, scale = _linear(F.silu(emb), s, "mixins.final_layer.adaLN_modulation.1").chunk(2, dim=1)
    image = _linear(_modulate(_layer_norm(image, s, "mixins.final_layer.norm_final", final_eps), shift, scale), s,
                    "mixins.final_layer.linear")
    rows, cols, channels = h // patch, w // patch, image.shape[-1] // patch ** 2
    image = image.reshape(b, t, rows, cols, channels, patch, patch)
    return image.permute(0, 1, 4, 2, 5, 3, 6).reshape(b, t, channels, h, w)
