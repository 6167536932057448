"""Single files from ComfyUI's folders load into the same model as the diffusers folder."""
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from dimx_core.cogvideox import native_keys
from dimx_core.video.components import load_diffusers_folder
from dimx_core.video.request import SamplerSettings, VideoRequest
from dimx_core.video.runtime import Runtime
from dimx_core.video.sampling import generate
from dimx_core.video.single_file import _latent_grid, load_single_files

DIFFUSERS_TO_NATIVE = {v: k for k, v in native_keys.BLOCK.items()} | {v: k for k, v in native_keys.TOP.items()}


def native_names(state):
    out = {}
    for key, value in state.items():
        module, _, leaf = key.rpartition(".")
        if module.startswith("transformer_blocks."):
            _, block, inner = module.split(".", 2)
            module = f"blocks.{block}.{DIFFUSERS_TO_NATIVE[inner]}"
        out[f"model.diffusion_model.{DIFFUSERS_TO_NATIVE.get(module, module)}.{leaf}"] = value
    return out


def single_files(folder, tmp_path, native=False):
    transformer = load_file(folder / "transformer" / "diffusion_pytorch_model.safetensors")
    save_file(native_names(transformer) if native else transformer, str(tmp_path / "transformer.safetensors"))
    shutil.copy(folder / "vae" / "diffusion_pytorch_model.safetensors", tmp_path / "vae.safetensors")
    shutil.copy(folder / "text_encoder" / "model.safetensors", tmp_path / "t5.safetensors")
    return (tmp_path / "transformer.safetensors", tmp_path / "vae.safetensors", tmp_path / "t5.safetensors",
            folder / "tokenizer")


def frames(parts):
    image = torch.rand(parts.spec.height, parts.spec.width, 3, generator=torch.Generator().manual_seed(0))
    request = VideoRequest(image, "a bird", settings=SamplerSettings(steps=2, seed=1))
    return generate(parts, request, Runtime(lambda m: torch.device("cpu"), preview_every=0)).frames


@pytest.mark.parametrize("native", [False, True], ids=["diffusers-keys", "comfyui-native-keys"])
def test_single_files_give_the_folders_video(tiny_model_dir, tmp_path, native):
    folder = load_diffusers_folder(tiny_model_dir, dtype=torch.float32)
    files = load_single_files(*single_files(tiny_model_dir, tmp_path, native), dtype=torch.float32)
    assert files.spec == folder.spec
    assert torch.equal(frames(files), frames(folder))


def test_version_15_is_told_from_the_weights(tiny_model_15_dir, tmp_path):
    files = load_single_files(*single_files(tiny_model_15_dir, tmp_path), dtype=torch.float32)
    assert files.spec.version == "1.5" and files.spec.uses_ofs and files.spec.image_latent_scale == pytest.approx(1 / 0.7)
    assert files.transformer.config.patch_size_t == 2 and not files.transformer.config.use_learned_positional_embeddings


def test_the_5b_positional_table_means_720x480x49():
    assert _latent_grid(13 * 30 * 45) == (13, 30, 45)


def test_wrong_files_are_named(tiny_model_dir, tmp_path):
    transformer, vae, t5, tokenizer = single_files(tiny_model_dir, tmp_path)
    with pytest.raises(ValueError, match="'vae.safetensors' is not a CogVideoX transformer"):
        load_single_files(vae, vae, t5, tokenizer)
    with pytest.raises(ValueError, match="'transformer.safetensors' is not a CogVideoX VAE"):
        load_single_files(transformer, transformer, t5, tokenizer)
    with pytest.raises(ValueError, match="'vae.safetensors' is not a T5 encoder"):
        load_single_files(transformer, vae, vae, tokenizer)
    with pytest.raises(FileNotFoundError, match="transformer file"):
        load_single_files(tmp_path / "missing.safetensors", vae, t5, tokenizer)
