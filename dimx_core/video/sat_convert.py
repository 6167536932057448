"""Convert a SAT CogVideoX-5B-I2V transformer, such as DimensionX's 145-frame 360-degree orbit model, to a
diffusers folder the pack loads like any other.

The key map, read from the public SAT model (CogVideo / DimensionX `dit_video_concat.py`: DiffusionTransformer and
its mixins; SwissArmyTransformer's BaseTransformer and `finetune/lora2.py`) against diffusers'
CogVideoXTransformer3DModel, is the table RULES below. Three entries are more than renames:
- `attention.query_key_value` holds q, k and v as thirds of its rows: split into to_q, to_k, to_v;
- `mixins.adaln_layer.adaLN_modulations.i.1` makes 12 chunks (shift, scale, gate of attention then of the MLP, for
  the video tokens, then the same for the text tokens); diffusers' norm1 takes chunks 0-2 and 6-8, norm2 3-5, 9-11;
- `mixins.pos_embed.pos_embedding`, the learned table of 226 text rows then T x h x w video rows, is carried whole;
  its row count gives the geometry (145 frames at 480x320: 226 + 37 x 20 x 30 = 22,426 rows). SAT's RoPE tables
  (`freqs_sin`/`freqs_cos`) are dropped: the sampler builds the same ones from the config.
LoRA layers (lora2.LoraMixin) keep the base weight under `<layer>.original` and, per output partition i (3 for
query_key_value, 1 for dense), matrix_A.i (r x in) and matrix_B.i (out/n x r). SAT adds (lora_alpha / r)·B_i·A_i·x
to partition i with lora_alpha = 1 (LoraMixin's default; DimensionX's configs set only r = 256); they are merged the
way SAT's own merge_linear_lora does, in float32.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ..files import atomic_folder
from ..hooks import NO_HOOKS, Hooks
from ..optional import require
from ..sat_checkpoint import read_sat_checkpoint
from .components import read_model_index
from .release import RELEASE_FILE, SAT_RELEASE, write_release_defaults
from .single_file import build_from_state, transformer_config
from ..cogvideox.spec import spec_from_configs

SAT_PREFIX = "model.diffusion_model."  # SATVideoDiffusionEngine.model (the OpenAI wrapper) .diffusion_model
SAT_LORA_ALPHA = 1.0
SAT_VAE_SCALE = 0.7  # `scale_factor` of DimensionX's cogvideox_5b_i2v_lora_145.yaml (and every 5B config)
BASE_PARTS = ("vae", "text_encoder", "tokenizer", "scheduler")  # taken from the base folder, never converted
SHARD_SIZE = "5GB"
STAGES = ("reading the checkpoint", "merging the LoRA layers", "mapping SAT names to diffusers",
          "writing the safetensors shards", "linking the base model's VAE, T5, tokenizer and scheduler")


def _to(template: str):
    return lambda match, tensor: {template.format(**match.groupdict()): tensor}


def _split_qkv(match, tensor):
    block, leaf = match["i"], match["leaf"]
    return {f"transformer_blocks.{block}.attn1.to_{name}.{leaf}": part
            for name, part in zip("qkv", tensor.chunk(3, dim=0))}


def _split_adaln(match, tensor):
    chunks = tensor.chunk(12, dim=0)
    block, leaf = match["i"], match["leaf"]
    return {f"transformer_blocks.{block}.norm1.linear.{leaf}": torch.cat(chunks[0:3] + chunks[6:9]),
            f"transformer_blocks.{block}.norm2.linear.{leaf}": torch.cat(chunks[3:6] + chunks[9:12])}


def _drop(match, tensor):
    return {}


_LAYER, _LEAF = r"transformer\.layers\.(?P<i>\d+)\.", r"\.(?P<leaf>weight|bias)"
RULES = [(re.compile(pattern + "$"), convert) for pattern, convert in [
    (r"time_embed\.0" + _LEAF, _to("time_embedding.linear_1.{leaf}")),
    (r"time_embed\.2" + _LEAF, _to("time_embedding.linear_2.{leaf}")),
    (r"mixins\.patch_embed\.(?P<layer>proj|text_proj)" + _LEAF, _to("patch_embed.{layer}.{leaf}")),
    (r"mixins\.pos_embed\.pos_embedding", _to("patch_embed.pos_embedding")),
    (_LAYER + "input_layernorm" + _LEAF, _to("transformer_blocks.{i}.norm1.norm.{leaf}")),
    (_LAYER + "post_attention_layernorm" + _LEAF, _to("transformer_blocks.{i}.norm2.norm.{leaf}")),
    (_LAYER + r"attention\.query_key_value" + _LEAF, _split_qkv),
    (_LAYER + r"attention\.dense" + _LEAF, _to("transformer_blocks.{i}.attn1.to_out.0.{leaf}")),
    (_LAYER + r"mlp\.dense_h_to_4h" + _LEAF, _to("transformer_blocks.{i}.ff.net.0.proj.{leaf}")),
    (_LAYER + r"mlp\.dense_4h_to_h" + _LEAF, _to("transformer_blocks.{i}.ff.net.2.{leaf}")),
    (r"mixins\.adaln_layer\.adaLN_modulations\.(?P<i>\d+)\.1" + _LEAF, _split_adaln),
    (r"mixins\.adaln_layer\.query_layernorm_list\.(?P<i>\d+)" + _LEAF,
     _to("transformer_blocks.{i}.attn1.norm_q.{leaf}")),
    (r"mixins\.adaln_layer\.key_layernorm_list\.(?P<i>\d+)" + _LEAF, _to("transformer_blocks.{i}.attn1.norm_k.{leaf}")),
    (r"transformer\.final_layernorm" + _LEAF, _to("norm_final.{leaf}")),
    (r"mixins\.final_layer\.norm_final" + _LEAF, _to("norm_out.norm.{leaf}")),
    (r"mixins\.final_layer\.linear" + _LEAF, _to("proj_out.{leaf}")),
    (r"mixins\.final_layer\.adaLN_modulation\.1" + _LEAF, _to("norm_out.linear.{leaf}")),
    # RoPE tables (rebuilt by the sampler) and SAT's placeholder tables, which the mixins replace
    (r"mixins\.pos_embed\.freqs_(sin|cos)|transformer\.(word|position)_embeddings\.weight", _drop),
]]


REQUIRED = ("patch_embed.proj.weight", "patch_embed.text_proj.weight", "time_embedding.linear_1.weight",
            "transformer_blocks.0.attn1.to_q.weight", "proj_out.weight")


@dataclass
class Conversion:
    folder: Path
    config: dict
    notes: list[str] = field(default_factory=list)


def transformer_part(state: dict[str, torch.Tensor], source: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The transformer's tensors under their SAT module names (`model.diffusion_model.` removed). The VAE, T5 and
    schedule buffers a training checkpoint also holds are left out (the base folder provides them)."""
    inside = {key[len(SAT_PREFIX):]: value for key, value in state.items() if key.startswith(SAT_PREFIX)}
    if not inside and any(key.startswith(("transformer.layers.", "mixins.")) for key in state):
        inside = dict(state)  # already stripped
    if not inside:
        raise ValueError(f"'{source}' holds no SAT CogVideoX transformer (no '{SAT_PREFIX}transformer.layers.*' "
                         f"tensors; its first keys are {sorted(state)[:3]})")
    left_out = len(state) - len(inside)
    return inside, [f"left out {left_out} tensors that are not the transformer (VAE, T5, ...)"] if left_out else []


def merge_lora(state: dict[str, torch.Tensor], dtype: torch.dtype = torch.float32,
               alpha: float = SAT_LORA_ALPHA) -> tuple[dict, list[str]]:
    """LoRA layers folded into plain weights: W_i + (alpha / r)·B_i·A_i for every output partition i, summed in
    float32 and rounded once to `dtype`."""
    layers = sorted({key.rsplit(".", 2)[0] for key in state if re.search(r"\.original\.(weight|bias)$", key)})
    lora_keys = [key for key in state if re.search(r"\.matrix_[AB]\.\d+$", key)]
    if lora_keys and not layers:
        raise ValueError("this checkpoint holds LoRA matrices but no base weights: it is a director LoRA, not a "
                         "whole model. Load it with Load Director LoRA (the SAT format is read there).")
    merged, ranks = dict(state), set()
    for layer in layers:
        count = sum(1 for key in state if re.fullmatch(re.escape(layer) + r"\.matrix_A\.\d+", key))
        downs = [merged.pop(f"{layer}.matrix_A.{i}", None) for i in range(count)]
        ups = [merged.pop(f"{layer}.matrix_B.{i}", None) for i in range(count)]
        weight = merged.pop(f"{layer}.original.weight")
        if not count or None in downs or None in ups:
            raise ValueError(f"LoRA layer '{layer}' lacks matrix_A/matrix_B for some of its {count} partitions")
        rank = downs[0].shape[0]
        if any(down.shape[0] != rank or up.shape[1] != rank for up, down in zip(ups, downs)):
            raise ValueError(f"LoRA layer '{layer}': its partitions have different ranks")
        delta = torch.cat([up.float() @ down.float() for up, down in zip(ups, downs)], dim=0)
        if delta.shape != weight.shape:
            raise ValueError(f"LoRA layer '{layer}': matrices give {tuple(delta.shape)}, the weight is "
                             f"{tuple(weight.shape)}")
        merged[f"{layer}.weight"] = (weight.float() + delta * (alpha / rank)).to(dtype)
        if f"{layer}.original.bias" in merged:
            merged[f"{layer}.bias"] = merged.pop(f"{layer}.original.bias")
        ranks.add(rank)
    strays = [key for key in merged if re.search(r"\.matrix_[AB]\.\d+$", key)]
    if strays:
        raise ValueError(f"LoRA matrices without a LoRA layer: {strays[:3]}")
    notes = [f"merged the LoRA of {len(layers)} layers (rank {', '.join(map(str, sorted(ranks)))}, each at "
             f"{alpha:g}/rank, as SAT applies it)"] if layers else []
    return merged, notes


def to_diffusers_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    converted = {}
    for key, tensor in state.items():
        for pattern, convert in RULES:
            if match := pattern.fullmatch(key):
                converted.update(convert(match, tensor))
                break
        else:
            raise ValueError(f"SAT tensor '{key}' is not part of a CogVideoX-5B-I2V transformer (DiffusionTransformer "
                             "with the rotary, patch, adaLN, final-layer and LoRA mixins)")
    return converted


def check_architecture(state: dict[str, torch.Tensor], source: str) -> dict:
    """The diffusers config of the converted tensors, or an error that says which model the checkpoint is."""
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise ValueError(f"'{source}' lacks the transformer's {', '.join(missing)}: the checkpoint is incomplete")
    if "transformer_blocks.0.attn1.norm_q.weight" not in state:
        raise ValueError(f"'{source}' has no query/key LayerNorms in its attention: it is a CogVideoX-2B-style "
                         "transformer. Only CogVideoX-5B image-to-video checkpoints (such as DimensionX's 360-degree "
                         "orbit model) can be converted.")
    proj = state["patch_embed.proj.weight"]
    if proj.ndim != 4:
        raise ValueError(f"'{source}' embeds space-time patches (a CogVideoX 1.5 layout); only 1.0-style 5B "
                         "image-to-video checkpoints are converted")
    if proj.shape[1] != 32:
        raise ValueError(f"'{source}' takes {proj.shape[1]} input channels; an image-to-video CogVideoX takes 32 "
                         "(16 video + 16 image latent channels). This looks like a text-to-video checkpoint.")
    if "patch_embed.pos_embedding" not in state:
        raise ValueError(f"'{source}' has no learned positional table (mixins.pos_embed.pos_embedding): it is not a "
                         "CogVideoX-5B image-to-video transformer, whose table gives its frame count and size")
    config = transformer_config(state)
    if config["out_channels"] != 16:
        raise ValueError(f"'{source}' predicts {config['out_channels']} latent channels; CogVideoX predicts 16")
    return config


def _check_rope_tables(state: dict[str, torch.Tensor], config: dict, source: str) -> None:
    tables = state.get("mixins.pos_embed.freqs_sin")
    if tables is None:
        return
    patch = config["patch_size"]
    latent_frames = (config["sample_frames"] - 1) // config["temporal_compression_ratio"] + 1
    tokens = latent_frames * (config["sample_height"] // patch) * (config["sample_width"] // patch)
    if tuple(tables.shape) != (tokens, config["attention_head_dim"]):
        raise ValueError(f"'{source}': the RoPE table has shape {tuple(tables.shape)}, but the positional table "
                         f"describes {tokens} video tokens of {config['attention_head_dim']} channels per head")


def check_base(base: Path, config: dict) -> dict:
    """`base`'s model_index, after checking that its VAE and T5 fit the converted transformer."""
    index = read_model_index(base)
    vae = json.loads((base / "vae" / "config.json").read_text(encoding="utf-8"))
    text = json.loads((base / "text_encoder" / "config.json").read_text(encoding="utf-8"))
    problems = []
    if 2 * vae.get("latent_channels", 16) != config["in_channels"]:
        problems.append(f"its VAE makes {vae.get('latent_channels')} latent channels, the transformer takes "
                        f"{config['in_channels']} (2 x 16)")
    if vae.get("invert_scale_latents", False):
        problems.append("its VAE inverts the latent scale (CogVideoX 1.5), the transformer is a 1.0-style 5B-I2V")
    if abs(float(vae.get("scaling_factor", 0)) - SAT_VAE_SCALE) > 1e-6:
        problems.append(f"its VAE scales latents by {vae.get('scaling_factor')}, the transformer was trained with "
                        f"{SAT_VAE_SCALE} (the CogVideoX-5B VAE)")
    if int(vae.get("temporal_compression_ratio", 4)) != config["temporal_compression_ratio"]:
        problems.append(f"its VAE compresses time by {vae.get('temporal_compression_ratio')}, the transformer "
                        f"expects {config['temporal_compression_ratio']}")
    if text.get("d_model") != config["text_embed_dim"]:
        problems.append(f"its text encoder makes states of width {text.get('d_model')}, the transformer reads "
                        f"{config['text_embed_dim']} (T5-XXL: 4096)")
    if problems:
        raise ValueError(f"base folder '{base}' does not fit this transformer: {'; '.join(problems)}. Use the "
                         "CogVideoX-5b-I2V diffusers folder as the base.")
    return index


def _link(source: Path, target: Path) -> str:
    """`target` refers to `source` by a relative symbolic link; where links are not allowed (Windows without
    developer mode), its files are hard links, or copies across drives."""
    try:
        os.symlink(os.path.relpath(source.resolve(), target.parent.resolve()), target, target_is_directory=True)
        return "linked"
    except OSError:
        def link_or_copy(src, dst):
            try:
                os.link(src, dst)
            except OSError:
                shutil.copy2(src, dst)
        shutil.copytree(source.resolve(), target, copy_function=link_or_copy)
        return "hard-linked or copied"


def _check_room(folder: Path, state: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    needed = sum(t.numel() for t in state.values()) * torch.empty((), dtype=dtype).element_size()
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise ValueError(f"the converted transformer needs {needed / 2**30:.1f} GiB but '{folder}' has only "
                      f"{free / 2**30:.1f} GiB free")


def convert_sat_checkpoint(checkpoint: str | Path, out: str | Path, base: str | Path | None = None,
                           dtype: torch.dtype = torch.bfloat16, hooks: Hooks = NO_HOOKS,
                           announce: Callable[[str], None] = lambda text: None) -> Conversion:
    """SAT checkpoint (file, iteration folder, or folder with `latest`) -> diffusers folder `out`.

    With `base` (a CogVideoX-5b-I2V diffusers folder whose VAE and T5 fit), `out` is a complete model folder whose
    transformer/ is the converted one and whose VAE, T5, tokenizer and scheduler are the base's (linked); without it,
    `out` holds transformer/ alone. `out` appears only once complete. `announce` gets one line per stage."""
    out, base = Path(out), Path(base) if base is not None else None
    if out.exists():
        raise FileExistsError(f"output folder '{out}' already exists; choose a new name (nothing was written)")
    if base is not None:
        read_model_index(base)  # a wrong base fails before the long read

    def stage(number: int) -> None:
        if number:
            hooks.step(number, len(STAGES))
        if number < len(STAGES):
            announce(f"[{number + 1}/{len(STAGES)}] {STAGES[number]}")

    stage(0)
    loaded = read_sat_checkpoint(checkpoint)
    source = str(loaded.file)
    state, notes = transformer_part(loaded.state, source)
    notes.insert(0, loaded.describe())
    stage(1)
    state, merged = merge_lora(state, dtype)
    notes += merged
    stage(2)
    converted = to_diffusers_names(state)
    config = check_architecture(converted, source)
    _check_rope_tables(state, config, source)
    index = check_base(base, config) if base is not None else None
    out.parent.mkdir(parents=True, exist_ok=True)
    _check_room(out.parent, converted, dtype)
    diffusers = require("diffusers")
    model = build_from_state(diffusers.CogVideoXTransformer3DModel, config, converted, dtype, "transformer")
    del state, converted
    stage(3)
    with atomic_folder(out) as partial:
        model.save_pretrained(partial / "transformer", safe_serialization=True, max_shard_size=SHARD_SIZE)
        del model
        stage(4)
        if base is not None:
            how = {part: _link(base / part, partial / part) for part in BASE_PARTS}
            (partial / "model_index.json").write_text(json.dumps(index, indent=2), encoding="utf-8")
            notes.append(f"VAE, T5, tokenizer and scheduler {', '.join(sorted(set(how.values())))} from '{base}'")
        write_release_defaults(partial, SAT_RELEASE)
        notes.append(f"{RELEASE_FILE}: {SAT_RELEASE.describe()}")
        (partial / "README.md").write_text(_readme(loaded.file, base, config, notes), encoding="utf-8")
    if base is not None:
        vae = json.loads((out / "vae" / "config.json").read_text(encoding="utf-8"))
        notes.append(spec_from_configs(config, vae).describe())
    stage(len(STAGES))
    return Conversion(folder=out, config=config, notes=notes)


def _readme(checkpoint: Path, base: Path | None, config: dict, notes: list[str]) -> str:
    latent_frames = (config["sample_frames"] - 1) // config["temporal_compression_ratio"] + 1
    lines = [f"Converted by `dimx convert-sat` from the SAT checkpoint `{checkpoint}`.", "",
             f"- {config['sample_frames']} frames ({latent_frames} latent frames), latent size "
             f"{config['sample_width']}x{config['sample_height']}, {config['num_layers']} layers, "
             f"{config['num_attention_heads']} heads", *[f"- {note}" for note in notes]]
    if base is None:
        lines += ["", "Only transformer/ is here. Convert again with `--base` (a CogVideoX-5b-I2V diffusers folder) "
                      "to get a complete model folder."]
    return "\n".join(lines) + "\n"
