"""The SAT -> diffusers conversion checked against the real SAT model (issue 12, item 4), on the CPU in float32.

Builds DimensionX's SAT `DiffusionTransformer` (CogVideo's dit_video_concat.py on SwissArmyTransformer) with the
modules of `configs/cogvideox_5b_i2v_lora_145.yaml` (learned positional table + 3D RoPE, patch embedding with text
projection, adaLN with q/k LayerNorms, final layer, lora2.LoraMixin) at a tiny width but the 145-frame layout
(37 latent frames), gives every parameter random values (the LoRA's B and the positional table included, which SAT
initialises to zero), runs it on fixed inputs, saves its state as SAT saves it for inference ({'module': ...} in
<iteration>/mp_rank_00_model_states.pt with `latest`), converts that with `dimx_core.video.sat_convert`, runs the
converted diffusers transformer on the same inputs and reports the relative error.

It needs an environment with swissarmytransformer and DimensionX's SAT code, kept outside this repository; see
bench/RESULTS-sat-parity.md for the exact commands. Run:
    python bench/sat_parity.py --sat-code DIMENSIONX/cogvideo --base TINY_MODEL_DIR [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from argparse import Namespace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
TINY = dict(hidden_size=64, num_attention_heads=2, num_layers=2, time_embed_dim=32, text_hidden_size=32, lora_r=8,
            num_frames=145, latent_height=8, latent_width=12)


def build_sat_model(sizes: dict):
    """The network_config of cogvideox_5b_i2v_lora_145.yaml, with tiny widths."""
    from dit_video_concat import DiffusionTransformer

    transformer_args = Namespace(checkpoint_activations=False, vocab_size=1, max_sequence_length=64,
                                 layernorm_order="pre", skip_init=False, model_parallel_size=1, is_decoder=False)
    modules = {
        "pos_embed_config": {"target": "dit_video_concat.Rotary3DPositionEmbeddingMixin",
                             "params": {"learnable_pos_embed": True,
                                        "hidden_size_head": sizes["hidden_size"] // sizes["num_attention_heads"],
                                        "text_length": 226}},
        "lora_config": {"target": "sat.model.finetune.lora2.LoraMixin", "params": {"r": sizes["lora_r"]}},
        "patch_embed_config": {"target": "dit_video_concat.ImagePatchEmbeddingMixin",
                               "params": {"text_hidden_size": sizes["text_hidden_size"]}},
        "adaln_layer_config": {"target": "dit_video_concat.AdaLNMixin", "params": {"qk_ln": True}},
        "final_layer_config": {"target": "dit_video_concat.FinalLayerMixin"},
    }
    return DiffusionTransformer(
        transformer_args=transformer_args, num_frames=sizes["num_frames"], time_compressed_rate=4,
        latent_width=sizes["latent_width"], latent_height=sizes["latent_height"], patch_size=2, in_channels=32,
        out_channels=16, hidden_size=sizes["hidden_size"], num_layers=sizes["num_layers"],
        num_attention_heads=sizes["num_attention_heads"], elementwise_affine=True,
        time_embed_dim=sizes["time_embed_dim"], adm_in_channels=256, modules=modules, dtype="fp32").eval()


@torch.no_grad()
def randomise(model: torch.nn.Module, seed: int) -> None:
    """Trained-looking values for every parameter: SAT zero-initialises the LoRA's B, the adaLN projections and
    the learned positional table, which would hide mistakes in their conversion. Buffers (RoPE tables) are kept."""
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        noise = torch.randn(parameter.shape, generator=generator)
        if "layernorm" in name or "norm_final" in name:
            value = (1.0 if name.endswith("weight") else 0.0) + 0.1 * noise
        elif parameter.ndim == 1:
            value = 0.02 * noise
        elif "pos_embedding" in name:
            value = 0.1 * noise
        elif "matrix_B" in name:
            value = noise * 0.5 * parameter.shape[1] ** 0.5  # W + B·A/r moves W by about half its size
        else:
            fan_in = parameter[0].numel()
            value = noise / fan_in ** 0.5 * (0.3 if "adaLN" in name else 1.0)
        parameter.copy_(value)


def writer_layout_matches(sat_model: torch.nn.Module, sizes: dict) -> dict:
    """Whether the tests' tiny SAT writer (tests/sat_writers.py) has exactly the real model's keys and shapes."""
    sys.path.insert(0, str(REPO / "tests"))
    from sat_writers import PREFIX, sat_transformer_state

    written = sat_transformer_state(
        layers=sizes["num_layers"], heads=sizes["num_attention_heads"],
        head_dim=sizes["hidden_size"] // sizes["num_attention_heads"], text_dim=sizes["text_hidden_size"],
        time_dim=sizes["time_embed_dim"], latent_frames=(sizes["num_frames"] - 1) // 4 + 1,
        latent_height=sizes["latent_height"], latent_width=sizes["latent_width"], lora_rank=sizes["lora_r"])
    ours = {key[len(PREFIX):]: tuple(value.shape) for key, value in written.items()}
    real = {key: tuple(value.shape) for key, value in sat_model.state_dict().items()}
    return {"only_in_sat": sorted(set(real) - set(ours)), "only_in_writer": sorted(set(ours) - set(real)),
            "shape_mismatches": sorted(k for k in real if k in ours and real[k] != ours[k])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sat-code", type=Path, required=True, help="DimensionX's cogvideo/ folder (SAT model code)")
    parser.add_argument("--base", type=Path, required=True, help="a tiny diffusers model folder (dimx tiny-model)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    args = parser.parse_args()
    sys.path[:0] = [str(args.sat_code), str(REPO)]
    for variable in ("RANK", "LOCAL_RANK"):  # SAT's model-only mode: one process
        os.environ.setdefault(variable, "0")
    os.environ.setdefault("WORLD_SIZE", "1")
    from dimx_core.video.components import load_diffusers_folder
    from dimx_core.video.sampling import rotary_embeddings
    from dimx_core.video.sat_convert import convert_sat_checkpoint

    torch.manual_seed(args.seed)
    sat_model = build_sat_model(TINY)
    randomise(sat_model, args.seed)
    latent_frames = (TINY["num_frames"] - 1) // 4 + 1
    generator = torch.Generator().manual_seed(args.seed + 1)
    x = torch.randn(2, latent_frames, 32, TINY["latent_height"], TINY["latent_width"], generator=generator)
    context = torch.randn(2, 226, TINY["text_hidden_size"], generator=generator)
    timesteps = torch.tensor([999, 321])
    with torch.no_grad():
        reference = sat_model(x.clone(), timesteps=timesteps, context=context.clone())

    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = Path(scratch) / "checkpoints"
        (checkpoint / "1").mkdir(parents=True)
        state = {f"model.diffusion_model.{k}": v for k, v in sat_model.state_dict().items()}
        torch.save({"module": state}, checkpoint / "1" / "mp_rank_00_model_states.pt")
        (checkpoint / "latest").write_text("1")
        conversion = convert_sat_checkpoint(checkpoint, Path(scratch) / "converted", base=args.base,
                                            dtype=torch.float32, announce=print)
        parts = load_diffusers_folder(conversion.folder, torch.float32)
        rotary = rotary_embeddings(parts.transformer.config, (2, latent_frames, 16, *x.shape[-2:]), torch.device("cpu"))
        with torch.no_grad():
            ours = parts.transformer(hidden_states=x, encoder_hidden_states=context, timestep=timesteps,
                                     image_rotary_emb=rotary, return_dict=False)[0]
            # diffusers normalises its final layer with norm_eps (1e-5), SAT's FinalLayerMixin with 1e-6
            sat_model.mixins.final_layer.norm_final.eps = 1e-5
            reference_eps = sat_model(x.clone(), timesteps=timesteps, context=context.clone())
            for name, parameter in sat_model.named_parameters():  # how much the LoRA changes SAT's output
                if "matrix_B" in name:
                    parameter.zero_()
            without_lora = sat_model(x.clone(), timesteps=timesteps, context=context.clone())
    result = {
        "sat_keys": len(state), "notes": conversion.notes,
        "tokens": 226 + latent_frames * (TINY["latent_height"] // 2) * (TINY["latent_width"] // 2),
        "config": {k: conversion.config[k] for k in ("sample_frames", "sample_height", "sample_width", "num_layers",
                                                     "num_attention_heads", "attention_head_dim")},
        "spec": parts.spec.describe(),
        "relative_error": float((ours - reference).norm() / reference.norm()),
        "max_abs_error": float((ours - reference).abs().max()), "reference_rms": float(reference.pow(2).mean().sqrt()),
        "relative_error_same_final_eps": float((ours - reference_eps).norm() / reference_eps.norm()),
        "lora_effect_on_sat_output": float((reference_eps - without_lora).norm() / reference_eps.norm()),
        "tests_writer_vs_sat_layout": writer_layout_matches(sat_model, TINY),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
