"""SAT -> diffusers conversion of the CogVideoX-5B-I2V transformer (DimensionX's 145-frame 360-degree orbit model):
key by key, numerically against a forward computed from the SAT tensors, the 145-frame layout, the converted folder
loading and sampling through the pack's normal path, and every bad input leaving no folder behind."""
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from dimx_core import cli
from dimx_core.hooks import Hooks, Interrupted
from dimx_core.tiny import TINY_TRANSFORMER_145, build_tiny_model
from dimx_core.video.components import load_diffusers_folder
from dimx_core.video.release import SAT_RELEASE
from dimx_core.video.request import VideoRequest
from dimx_core.video.runtime import Runtime
from dimx_core.video.sampling import SamplerSettings, generate, rotary_embeddings
from dimx_core.video.sat_convert import (STAGES, check_architecture, convert_sat_checkpoint, merge_lora,
                                         to_diffusers_names, transformer_part)
from dimx_core.cogvideox.spec import COGVIDEOX_5B_I2V_VAE, spec_from_configs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sat_writers import (PREFIX, deepspeed_record, non_transformer_tensors, sat_reference_forward,  # noqa: E402
                         sat_transformer_state, write_sat_folder)

CPU = torch.device("cpu")
LAYOUT_145 = dict(latent_frames=37, latent_height=TINY_TRANSFORMER_145["sample_height"],
                  latent_width=TINY_TRANSFORMER_145["sample_width"])


def sat_folder(root: Path, **state_options) -> Path:
    state = sat_transformer_state(**state_options) | non_transformer_tensors()
    return write_sat_folder(root, deepspeed_record(state))


def nothing_left(folder: Path) -> bool:
    """No output and no hidden partial folder beside it."""
    return not folder.exists() and not any(p.name.startswith(f".{folder.name}.") for p in folder.parent.iterdir())


def stripped(state):
    return {k[len(PREFIX):]: v for k, v in state.items()}


def test_every_sat_key_lands_on_its_diffusers_tensor():
    sat = stripped(sat_transformer_state(layers=2))
    ours = to_diffusers_names(sat)
    q, k, v = sat["transformer.layers.1.attention.query_key_value.weight"].chunk(3)
    adaln = sat["mixins.adaln_layer.adaLN_modulations.1.1.weight"].chunk(12)
    expected = {
        "time_embedding.linear_1.weight": sat["time_embed.0.weight"],
        "time_embedding.linear_2.bias": sat["time_embed.2.bias"],
        "patch_embed.proj.weight": sat["mixins.patch_embed.proj.weight"],
        "patch_embed.text_proj.bias": sat["mixins.patch_embed.text_proj.bias"],
        "patch_embed.pos_embedding": sat["mixins.pos_embed.pos_embedding"],
        "transformer_blocks.1.norm1.norm.weight": sat["transformer.layers.1.input_layernorm.weight"],
        "transformer_blocks.1.norm2.norm.bias": sat["transformer.layers.1.post_attention_layernorm.bias"],
        "transformer_blocks.1.attn1.to_q.weight": q, "transformer_blocks.1.attn1.to_k.weight": k,
        "transformer_blocks.1.attn1.to_v.weight": v,
        "transformer_blocks.1.attn1.to_v.bias": sat["transformer.layers.1.attention.query_key_value.bias"][64:],
        "transformer_blocks.1.attn1.to_out.0.weight": sat["transformer.layers.1.attention.dense.weight"],
        "transformer_blocks.1.attn1.norm_q.weight": sat["mixins.adaln_layer.query_layernorm_list.1.weight"],
        "transformer_blocks.1.attn1.norm_k.bias": sat["mixins.adaln_layer.key_layernorm_list.1.bias"],
        "transformer_blocks.1.ff.net.0.proj.weight": sat["transformer.layers.1.mlp.dense_h_to_4h.weight"],
        "transformer_blocks.1.ff.net.2.bias": sat["transformer.layers.1.mlp.dense_4h_to_h.bias"],
        # video (shift, scale, gate) then text (shift, scale, gate), for attention (norm1) and the MLP (norm2)
        "transformer_blocks.1.norm1.linear.weight": torch.cat([*adaln[0:3], *adaln[6:9]]),
        "transformer_blocks.1.norm2.linear.weight": torch.cat([*adaln[3:6], *adaln[9:12]]),
        "norm_final.weight": sat["transformer.final_layernorm.weight"],
        "norm_out.norm.bias": sat["mixins.final_layer.norm_final.bias"],
        "norm_out.linear.weight": sat["mixins.final_layer.adaLN_modulation.1.weight"],
        "proj_out.weight": sat["mixins.final_layer.linear.weight"],
    }
    for name, tensor in expected.items():
        assert torch.equal(ours[name], tensor), name
    from diffusers import CogVideoXTransformer3DModel

    reference = CogVideoXTransformer3DModel(**check_architecture(ours, "tiny")).state_dict()
    assert set(ours) == set(reference)  # one to one: nothing missing, nothing extra (RoPE tables dropped)
    assert all(ours[name].shape == reference[name].shape for name in ours)


def test_lora_is_merged_per_partition_at_one_over_rank():
    sat = stripped(sat_transformer_state(layers=1, lora_rank=4))
    merged, notes = merge_lora(sat)
    layer = "transformer.layers.0.attention.query_key_value"
    deltas = [sat[f"{layer}.matrix_B.{i}"] @ sat[f"{layer}.matrix_A.{i}"] for i in range(3)]
    expected = sat[f"{layer}.original.weight"] + torch.cat(deltas) / 4
    torch.testing.assert_close(merged[f"{layer}.weight"], expected, rtol=0, atol=1e-6)
    base = sat[f"{layer}.original.weight"]
    assert (expected - base).abs().mean() > 0.2 * base.abs().mean()  # a LoRA that matters
    assert torch.equal(merged[f"{layer}.bias"], sat[f"{layer}.original.bias"])
    assert not any("matrix_" in key or ".original." in key for key in merged)
    assert notes == ["merged the LoRA of 2 layers (rank 4, each at 1/rank, as SAT applies it)"]


@pytest.mark.parametrize("lora_rank", [None, 4], ids=["plain", "lora"])
def test_converted_transformer_matches_the_sat_forward(tmp_path, tiny_model_dir, lora_rank):
    state = sat_transformer_state(lora_rank=lora_rank, **LAYOUT_145)
    folder = write_sat_folder(tmp_path / "checkpoints", {"module": state})
    converted = convert_sat_checkpoint(folder, tmp_path / "out", base=tiny_model_dir, dtype=torch.float32).folder
    transformer = load_diffusers_folder(converted, torch.float32).transformer
    generator = torch.Generator().manual_seed(3)
    x = torch.randn(2, 37, 32, 4, 6, generator=generator)
    context = torch.randn(2, 226, 32, generator=generator)
    timesteps = torch.tensor([999, 250])
    rotary = rotary_embeddings(transformer.config, (2, 37, 16, 4, 6), CPU)
    with torch.no_grad():
        ours = transformer(hidden_states=x, encoder_hidden_states=context, timestep=timesteps,
                           image_rotary_emb=rotary, return_dict=False)[0]
    reference = sat_reference_forward(state, x, timesteps, context, heads=2)
    assert ((ours - reference).norm() / reference.norm()) < 2e-5
    # what remains is diffusers' final-layer LayerNorm eps (its norm_eps, 1e-5; SAT's FinalLayerMixin: 1e-6)
    same_eps = sat_reference_forward(state, x, timesteps, context, heads=2, final_eps=1e-5)
    assert ((ours - same_eps).norm() / same_eps.norm()) < 1e-6


def test_released_layout_gives_145_frames_at_480x320():
    """The 360-degree model's shapes at full size (no weights: meta tensors): 42 layers, 48 heads, LoRA r=256,
    a positional table of 226 + 37 x 20 x 30 = 22,426 rows."""
    sat = stripped(sat_transformer_state(layers=42, heads=48, head_dim=64, text_dim=4096, time_dim=512,
                                         latent_frames=37, latent_height=40, latent_width=60, lora_rank=256,
                                         device="meta"))
    assert sat["mixins.pos_embed.pos_embedding"].shape == (1, 22426, 3072)
    merged, notes = merge_lora(sat)
    config = check_architecture(to_diffusers_names(merged), "released layout")
    assert (config["sample_frames"], config["sample_height"], config["sample_width"]) == (145, 40, 60)
    assert (config["num_layers"], config["num_attention_heads"], config["attention_head_dim"]) == (42, 48, 64)
    assert config["in_channels"] == 32 and config["use_learned_positional_embeddings"]
    spec = spec_from_configs(config, COGVIDEOX_5B_I2V_VAE)
    assert (spec.frames, spec.width, spec.height, spec.latent_frames) == (145, 480, 320, 37)
    assert notes[0].startswith("merged the LoRA of 84 layers (rank 256")


def test_converted_145_frame_folder_loads_and_samples_a_video(tmp_path, tiny_model_dir):
    folder = sat_folder(tmp_path / "DimensionX_360orbit", lora_rank=4, dtype=torch.bfloat16, **LAYOUT_145)
    lines = []
    result = convert_sat_checkpoint(folder, tmp_path / "DimensionX-360", base=tiny_model_dir, announce=lines.append)
    assert lines == [f"[{i + 1}/5] {stage}" for i, stage in enumerate(STAGES)]
    assert "CogVideoX 1.0 image-to-video, 48x32, 145 frames (fixed size)" in result.notes
    assert "left out 3 tensors that are not the transformer (VAE, T5, ...)" in result.notes
    config = json.loads((result.folder / "transformer" / "config.json").read_text())
    assert (config["sample_frames"], config["sample_height"], config["sample_width"]) == (145, 4, 6)
    for part in ("vae", "text_encoder", "tokenizer", "scheduler"):
        assert (result.folder / part).is_symlink()
        assert (result.folder / part).resolve() == (tiny_model_dir / part).resolve()
    parts = load_diffusers_folder(result.folder, torch.float32)
    assert (parts.spec.frames, parts.spec.width, parts.spec.height, parts.spec.latent_frames) == (145, 48, 32, 37)
    assert parts.release == SAT_RELEASE  # the converter says the checkpoint samples with SAT's sampler
    image = torch.rand(40, 60, 3, generator=torch.Generator().manual_seed(0))
    video = generate(parts, VideoRequest(image, "an orbit around a house", settings=SamplerSettings(steps=2, seed=1)),
                     Runtime(place=lambda module: CPU, preview_every=0))
    assert video.frames.shape == (145, 32, 48, 3) and video.latents.shape == (1, 37, 16, 4, 6)
    assert torch.isfinite(video.frames).all() and video.frames.std() > 0


def test_without_base_only_the_transformer_is_written(tmp_path):
    folder = sat_folder(tmp_path / "checkpoints")
    out = convert_sat_checkpoint(folder, tmp_path / "out", dtype=torch.float16).folder
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "dimensionx_sampling.json", "transformer"]
    assert "Convert again with `--base`" in (out / "README.md").read_text()
    from safetensors import safe_open

    shard = next((out / "transformer").glob("*.safetensors"))
    with safe_open(str(shard), "pt") as handle:
        assert handle.get_tensor("patch_embed.pos_embedding").dtype == torch.float16


def test_cli_converts_with_a_line_per_stage(tmp_path, tiny_model_dir, capsys):
    folder = sat_folder(tmp_path / "checkpoints", **LAYOUT_145)
    out = tmp_path / "360"
    assert cli.main(["convert-sat", "--checkpoint", str(folder), "--out", str(out), "--base", str(tiny_model_dir),
                     "--dtype", "fp32"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[:5] == [f"[{i + 1}/5] {stage}" for i, stage in enumerate(STAGES)] and printed[-1] == str(out)
    assert load_diffusers_folder(out, torch.float32).spec.frames == 145
    assert cli.main(["convert-sat", "--checkpoint", str(folder), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize("options, message", [
    (dict(qk_norm=False), "no query/key LayerNorms.*CogVideoX-2B"),
    (dict(in_channels=16), "takes 16 input channels.*text-to-video"),
], ids=["2b-style", "text-to-video"])
def test_checkpoints_of_other_models_are_refused(tmp_path, options, message):
    folder = sat_folder(tmp_path / "checkpoints", **options)
    with pytest.raises(ValueError, match=message):
        convert_sat_checkpoint(folder, tmp_path / "out")
    assert nothing_left(tmp_path / "out")


def test_unreadable_or_code_carrying_checkpoints_leave_nothing(tmp_path):
    folder = sat_folder(tmp_path / "checkpoints")
    file = folder / "1" / "mp_rank_00_model_states.pt"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) - 200])
    with pytest.raises(ValueError, match="truncated"):
        convert_sat_checkpoint(folder, tmp_path / "out")
    assert nothing_left(tmp_path / "out")
    torch.save({"module": {"x": torch.zeros(1)}, "hook": _Payload(tmp_path / "ran")}, file)
    with pytest.raises(ValueError, match=r"needs os\.makedirs"):
        convert_sat_checkpoint(folder, tmp_path / "out")
    assert nothing_left(tmp_path / "out") and not (tmp_path / "ran").exists()
    (folder / "latest").unlink()
    shutil.rmtree(folder / "1")
    with pytest.raises(FileNotFoundError, match="neither a 'latest' file"):
        convert_sat_checkpoint(folder, tmp_path / "out")
    (folder / "latest").write_text("500")
    with pytest.raises(FileNotFoundError, match="names the iteration folder '500'"):
        convert_sat_checkpoint(folder, tmp_path / "out")
    assert nothing_left(tmp_path / "out")


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.makedirs, (self.marker,)


def test_lora_only_and_foreign_states_are_named(tmp_path):
    lora_only = {k: v for k, v in sat_transformer_state(layers=1, lora_rank=4).items() if "matrix_" in k}
    torch.save({"module": lora_only}, tmp_path / "lora.pt")
    with pytest.raises(ValueError, match="it is a director LoRA.*Load Director LoRA"):
        convert_sat_checkpoint(tmp_path / "lora.pt", tmp_path / "out")
    torch.save({"module": {"encoder.weight": torch.zeros(2)}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="holds no SAT CogVideoX transformer"):
        convert_sat_checkpoint(tmp_path / "other.pt", tmp_path / "out")
    extra = sat_transformer_state(layers=1) | {PREFIX + "mixins.extra.weight": torch.zeros(2)}
    with pytest.raises(ValueError, match="'mixins.extra.weight' is not part of a CogVideoX-5B-I2V transformer"):
        to_diffusers_names(transformer_part(extra, "x")[0])
    assert nothing_left(tmp_path / "out")


@pytest.fixture(scope="module")
def base_copy(tiny_model_dir, tmp_path_factory):
    """A copy of the tiny base whose configs a test may edit."""
    def make(edit_vae):
        folder = tmp_path_factory.mktemp("base") / "base"
        shutil.copytree(tiny_model_dir, folder)
        config = json.loads((folder / "vae" / "config.json").read_text())
        (folder / "vae" / "config.json").write_text(json.dumps(edit_vae(config)))
        return folder
    return make


@pytest.mark.parametrize("edit, message", [
    (lambda c: c | {"scaling_factor": 1.15258426}, "scales latents by 1.15258426.*trained with 0.7"),
    (lambda c: c | {"latent_channels": 8}, "makes 8 latent channels, the transformer takes 32"),
    (lambda c: c | {"invert_scale_latents": True}, "inverts the latent scale"),
], ids=["2b-vae-scale", "latent-channels", "1.5-vae"])
def test_base_with_a_mismatched_vae_is_refused_before_writing(tmp_path, base_copy, edit, message):
    folder = sat_folder(tmp_path / "checkpoints")
    with pytest.raises(ValueError, match=f"base folder .* does not fit this transformer: .*{message}"):
        convert_sat_checkpoint(folder, tmp_path / "out", base=base_copy(edit))
    assert nothing_left(tmp_path / "out")


def test_existing_output_is_untouched_and_a_cancel_leaves_nothing(tmp_path, tiny_model_dir):
    folder = sat_folder(tmp_path / "checkpoints")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="already exists"):
        convert_sat_checkpoint(folder, tmp_path / "taken", base=tiny_model_dir)
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["mine.txt"]
    stops = iter([False, False, False, True])  # Cancel pressed while the shards are written
    with pytest.raises(Interrupted):
        convert_sat_checkpoint(folder, tmp_path / "out", base=tiny_model_dir,
                               hooks=Hooks(should_stop=lambda: next(stops)))
    assert nothing_left(tmp_path / "out")


def test_tiny_145_frame_model_has_the_360_layout(tmp_path):
    parts = load_diffusers_folder(build_tiny_model(tmp_path / "tiny145", version="1.0-145"), torch.float32)
    assert (parts.spec.frames, parts.spec.latent_frames, parts.spec.width, parts.spec.height) == (145, 37, 48, 32)
