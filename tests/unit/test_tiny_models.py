import json

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from dimx_core.tiny import TINY_LORA_RANK, TINY_TRANSFORMER, build_tiny_lora, build_tiny_model
from dimx_core.video.components import load_diffusers_folder, read_model_index
from dimx_core.cogvideox.spec import COGVIDEOX_5B_I2V_TRANSFORMER, spec_from_configs


def test_tiny_folder_has_the_diffusers_layout(tiny_model_dir):
    index = read_model_index(tiny_model_dir)
    assert index["_class_name"] == "CogVideoXImageToVideoPipeline"
    for part in ("transformer", "vae", "text_encoder", "tokenizer", "scheduler"):
        assert (tiny_model_dir / part).is_dir()
    assert (tiny_model_dir / "tokenizer" / "spiece.model").is_file()
    scheduler = json.loads((tiny_model_dir / "scheduler" / "scheduler_config.json").read_text())
    assert scheduler["_class_name"] == "CogVideoXDDIMScheduler"
    assert scheduler["prediction_type"] == "v_prediction"
    assert scheduler["rescale_betas_zero_snr"] is True
    assert scheduler["timestep_spacing"] == "trailing"


def test_tiny_folder_loads_back_with_the_5b_architecture(tiny_model_dir):
    parts = load_diffusers_folder(tiny_model_dir, dtype=torch.float32)
    config = parts.transformer.config
    assert config.use_learned_positional_embeddings and config.use_rotary_positional_embeddings
    assert config.in_channels == 2 * parts.vae.config.latent_channels == 32
    assert config.text_embed_dim == parts.text_encoder.config.d_model
    assert len(parts.tokenizer) == parts.text_encoder.config.vocab_size
    spec = parts.spec
    assert (spec.version, spec.width, spec.height, spec.frames, spec.latent_frames) == ("1.0", 144, 96, 17, 5)
    assert spec.fixed_size and spec.text_tokens == 226 and spec.image_latent_scale == pytest.approx(0.7)


def test_tokenizer_splits_prompts_into_word_pieces(tiny_model_dir):
    tokenizer = load_diffusers_folder(tiny_model_dir, dtype=torch.float32).tokenizer
    ids = tokenizer("an astronaut on the moon", max_length=226, padding="max_length", truncation=True).input_ids
    assert len(ids) == 226
    pieces = tokenizer.convert_ids_to_tokens(ids[:6])
    assert pieces[:2] == ["▁an", "▁astronaut"] and "</s>" in pieces and tokenizer.unk_token_id not in ids[:5]


def test_tiny_model_generates_a_video_at_its_native_size(tiny_model_dir):
    from diffusers import CogVideoXDDIMScheduler, CogVideoXImageToVideoPipeline

    parts = load_diffusers_folder(tiny_model_dir, dtype=torch.float32)
    pipe = CogVideoXImageToVideoPipeline(parts.tokenizer, parts.text_encoder, parts.vae, parts.transformer,
                                         CogVideoXDDIMScheduler.from_config(parts.scheduler_config))
    image = torch.rand(1, 3, parts.spec.height, parts.spec.width)
    video = pipe(image=image, prompt="a cat", num_frames=parts.spec.frames, num_inference_steps=2,
                 output_type="pt", generator=torch.Generator().manual_seed(0)).frames
    assert video.shape == (1, 17, 3, 96, 144)
    assert torch.isfinite(video).all() and video.std() > 0.01


def test_learned_positional_embedding_refuses_another_size(tiny_model_dir):
    transformer = load_diffusers_folder(tiny_model_dir, dtype=torch.float32).transformer
    with pytest.raises(ValueError, match="different resolution"):
        transformer.patch_embed(torch.zeros(1, 4, 32), torch.zeros(1, 5, 32, 14, 18))


def test_build_is_deterministic_from_the_seed(tmp_path):
    first, again, other = (build_tiny_model(tmp_path / name, seed=seed)
                           for name, seed in (("a", 3), ("b", 3), ("c", 4)))
    weights = [load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors")
               for folder in (first, again, other)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert not all(torch.equal(weights[0][k], weights[2][k]) for k in weights[0])


def test_build_refuses_a_folder_with_files(tmp_path):
    (tmp_path / "keep.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not empty"):
        build_tiny_model(tmp_path)
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_tiny_lora_has_the_dimensionx_release_layout(tiny_model_dir, tmp_path):
    path = build_tiny_lora(tiny_model_dir, tmp_path / "orbit.safetensors", kind="s", seed=0)
    tensors = load_file(path)
    inner = TINY_TRANSFORMER["num_attention_heads"] * TINY_TRANSFORMER["attention_head_dim"]
    expected = {f"transformer.transformer_blocks.{b}.attn1.{t}.lora_{ab}.weight"
                for b in range(TINY_TRANSFORMER["num_layers"]) for t in ("to_q", "to_k", "to_v", "to_out.0")
                for ab in "AB"}
    assert set(tensors) == expected
    assert not any("alpha" in key for key in tensors)
    for key, tensor in tensors.items():
        shape = (TINY_LORA_RANK, inner) if ".lora_A." in key else (inner, TINY_LORA_RANK)
        assert tensor.shape == shape and tensor.dtype == torch.bfloat16
    with safe_open(str(path), "pt") as handle:
        assert "random weights" in handle.metadata()["dimx_tiny"]


def test_s_and_t_loras_differ_and_repeat(tiny_model_dir, tmp_path):
    s1, s2, t1 = (load_file(build_tiny_lora(tiny_model_dir, tmp_path / f"{n}.safetensors", kind=k, seed=5))
                  for n, k in (("s1", "s"), ("s2", "s"), ("t1", "t")))
    key = next(iter(s1))
    assert torch.equal(s1[key], s2[key]) and not torch.equal(s1[key], t1[key])


def test_tiny_lora_effect_is_half_the_weight_at_strength_one(tiny_model_dir, tmp_path):
    """As trained (alpha 1): delta = B·A / rank; the tiny files are scaled so that is about half of W."""
    weights = load_file(tiny_model_dir / "transformer" / "diffusion_pytorch_model.safetensors")
    lora = load_file(build_tiny_lora(tiny_model_dir, tmp_path / "l.safetensors", kind="t"))
    prefix = "transformer_blocks.0.attn1.to_q"
    delta = lora[f"transformer.{prefix}.lora_B.weight"].float() @ lora[f"transformer.{prefix}.lora_A.weight"].float()
    ratio = (delta / TINY_LORA_RANK).std() / weights[f"{prefix}.weight"].std()
    assert 0.25 < ratio < 1.0


def test_lora_rejects_an_unknown_kind(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="kind must be 's'"):
        build_tiny_lora(tiny_model_dir, tmp_path / "x.safetensors", kind="camera")


def test_spec_names_a_text_to_video_checkpoint():
    t2v = dict(COGVIDEOX_5B_I2V_TRANSFORMER, in_channels=16)
    with pytest.raises(ValueError, match="text-to-video"):
        spec_from_configs(t2v, {"latent_channels": 16, "scaling_factor": 0.7})


def test_full_size_spec_is_720x480x49():
    vae = {"latent_channels": 16, "scaling_factor": 0.7, "block_out_channels": [128, 256, 256, 512]}
    spec = spec_from_configs(COGVIDEOX_5B_I2V_TRANSFORMER, vae)
    assert (spec.width, spec.height, spec.frames, spec.latent_frames) == (720, 480, 49, 13)


@pytest.mark.parametrize("damage, message", [
    ("no_index", "no model_index.json"),
    ("bad_json", "not valid JSON"),
    ("text_to_video", "16 input channels.*text-to-video"),
    ("other_pipeline", "'CogVideoXVideoToVideoPipeline' model"),
    ("missing_vae", "lacks the 'vae/' subfolder"),
])
def test_loader_says_what_is_wrong_with_a_folder(tiny_model_dir, tmp_path, damage, message):
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / "copy")
    index = folder / "model_index.json"
    if damage == "no_index":
        index.unlink()
    elif damage == "bad_json":
        index.write_text('{"_class_name": ')
    elif damage == "text_to_video":  # the text-to-video pipeline class (as Fun InP folders name) with 16 inputs
        index.write_text(index.read_text().replace("CogVideoXImageToVideoPipeline", "CogVideoXPipeline"))
        config = folder / "transformer" / "config.json"
        config.write_text(json.dumps(dict(json.loads(config.read_text()), in_channels=16)))
    elif damage == "other_pipeline":
        index.write_text(index.read_text().replace("CogVideoXImageToVideoPipeline", "CogVideoXVideoToVideoPipeline"))
    else:
        shutil.rmtree(folder / "vae")
    with pytest.raises((FileNotFoundError, ValueError), match=message):
        load_diffusers_folder(folder)
