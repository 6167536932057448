"""Garbage in is refused with its cause, never reported as success: NaN weights, NaN strengths, fp16 overflow,
and LoRAs made for another CogVideoX version."""
import logging
import re

import pytest
import torch
from safetensors.torch import load_file, save_file

from dimx_core.cli import main
from dimx_core.directors.adapters import Director, attach
from dimx_core.directors.formats import read_lora
from dimx_core.tiny import build_tiny_lora
from dimx_core.video.components import load_diffusers_folder
from dimx_core.video.request import VideoRequest
from dimx_core.video.runtime import Runtime
from dimx_core.video.sampling import SamplerSettings, generate

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def lora_path(tiny_model_dir, tmp_path_factory):
    return build_tiny_lora(tiny_model_dir, tmp_path_factory.mktemp("lora") / "orbit_left.safetensors", "s", seed=1)


def rewritten(path, out, change=None, metadata=None):
    tensors = load_file(path)
    if change:
        change(tensors)
    save_file(tensors, str(out), metadata=metadata)
    return out


def run(parts, steps=2):
    image = torch.rand(parts.spec.height, parts.spec.width, 3, generator=torch.Generator().manual_seed(0))
    return generate(parts, VideoRequest(image, "a cat", settings=SamplerSettings(steps=steps, seed=0)),
                    Runtime(place=lambda m: CPU, preview_every=0))


def test_nan_in_a_lora_is_refused_when_read_naming_the_layer(lora_path, tmp_path):
    def poison(tensors):
        tensors["transformer.transformer_blocks.1.attn1.to_k.lora_B.weight"][0, 0] = float("nan")

    with pytest.raises(ValueError, match=r"transformer_blocks\.1\.attn1\.to_k': its up \(lora_B\) matrix holds 1 NaN"):
        read_lora(rewritten(lora_path, tmp_path / "nan.safetensors", poison))


@pytest.mark.parametrize("strength", [float("nan"), float("inf"), "1.0"])
def test_a_director_strength_must_be_a_finite_number(lora_path, strength):
    with pytest.raises(ValueError, match="strength must be a finite number"):
        Director("orbit_left", "S", strength, read_lora(lora_path))


def test_nan_in_the_base_model_fails_the_run_and_names_the_transformer(tiny_model_dir):
    parts = load_diffusers_folder(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        parts.transformer.transformer_blocks[0].ff.net[2].weight[3, 5] = float("nan")
    with pytest.raises(ValueError, match=r"denoising produced NaN.*transformer's weights hold NaN or infinity in 1 "
                                         r"tensors \(first: 'transformer_blocks\.0\.ff\.net\.2\.weight'\), from its "
                                         r"model file"):
        run(parts)


def test_fp16_overflow_is_named_as_the_cause(tiny_model_dir):
    parts = load_diffusers_folder(tiny_model_dir, dtype=torch.float16)
    with torch.no_grad():
        weight = parts.transformer.proj_out.weight
        weight.mul_(6e4 / float(weight.abs().max()))  # finite weights whose outputs exceed fp16's 65504
    assert torch.isfinite(parts.transformer.proj_out.weight).all()
    with pytest.raises(ValueError, match="fp16 overflow: the transformer's activations exceed fp16's range"):
        run(parts, steps=1)


def test_nan_in_the_vae_is_named_after_finite_latents(tiny_model_dir):
    parts = load_diffusers_folder(tiny_model_dir, dtype=torch.float32)
    with torch.no_grad():
        parts.vae.decoder.conv_out.conv.weight[0, 0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"decoding produced NaN.*the VAE's weights hold NaN"):
        run(parts, steps=1)


def test_cli_exits_2_with_the_reason_for_a_nan_director(tiny_model_dir, lora_path, tmp_path, capsys):
    from PIL import Image

    Image.new("RGB", (144, 96), (90, 120, 200)).save(tmp_path / "in.png")

    def poison(tensors):
        next(iter(tensors.values()))[0, 0] = float("inf")

    bad = rewritten(lora_path, tmp_path / "inf.safetensors", poison)
    code = main(["generate", "--model", str(tiny_model_dir), "--image", str(tmp_path / "in.png"), "--prompt", "x",
                 "--steps", "1", "--director", str(bad), "--out", str(tmp_path / "out.mp4")])
    assert code == 2 and "NaN or infinite values" in capsys.readouterr().err
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("image", [b"not an image at all", "gray"], ids=["non-image", "grayscale"])
def test_cli_reads_any_image_mode_and_names_a_non_image(tiny_model_dir, tmp_path, capsys, image):
    from PIL import Image

    path = tmp_path / "in.png"
    if image == "gray":
        Image.new("L", (144, 96), 128).save(path)
    else:
        path.write_bytes(image)
    code = main(["generate", "--model", str(tiny_model_dir), "--image", str(path), "--prompt", "x", "--steps", "1",
                 "--out", str(tmp_path / "frames")])
    if image == "gray":
        assert code == 0 and len(list((tmp_path / "frames").glob("frame_*.png"))) == 17
    else:
        assert code == 2 and f"--image '{path}' is not an image" in capsys.readouterr().err


@pytest.fixture(scope="module")
def parts_10(tiny_model_dir):
    return load_diffusers_folder(tiny_model_dir, dtype=torch.float32)


@pytest.mark.parametrize("metadata, change, reason", [
    ({"base_model": "THUDM/CogVideoX1.5-5B-I2V"}, None,
     "it was made for CogVideoX 1.5 (its metadata 'base_model' names CogVideoX1.5"),
    (None, lambda t: t.update({"transformer.ofs_embedding.linear_1.weight": torch.zeros(32, 32)}),
     "it was made for CogVideoX 1.5 (it carries ofs_embedding tensors"),
    (None, lambda t: t.update({"transformer.patch_embed.pos_embedding": torch.zeros(1, 64, 32)}),
     "its positional table 'transformer.patch_embed.pos_embedding' has the layout (1, 64, 32), this model's is"),
], ids=["metadata", "ofs-layers", "positional-table"])
def test_a_lora_that_fits_by_shape_but_was_made_for_another_version_is_refused(parts_10, lora_path, tmp_path,
                                                                                metadata, change, reason):
    lora = read_lora(rewritten(lora_path, tmp_path / "other.safetensors", change, metadata))
    with pytest.raises(ValueError, match=re.escape(f"fits the tiny model by shape, but {reason}")):
        attach(parts_10.transformer, [Director("x", "S", 1.0, lora)], "the tiny model")


def test_a_lora_made_for_this_version_attaches(parts_10, lora_path, tmp_path):
    lora = read_lora(rewritten(lora_path, tmp_path / "ok.safetensors", metadata={"base_model": "CogVideoX-5b-I2V"}))
    attach(parts_10.transformer, [Director("ok", "S", 1.0, lora)], "the tiny model")
    assert lora.other_tensors == {}


def test_a_lora_covering_fewer_blocks_than_the_model_warns(tiny_model_dir, lora_path, tmp_path, caplog):
    def first_block_only(tensors):
        for key in [k for k in tensors if "transformer_blocks.1." in k]:
            del tensors[key]

    lora = read_lora(rewritten(lora_path, tmp_path / "one.safetensors", first_block_only))
    parts = load_diffusers_folder(tiny_model_dir, dtype=torch.float32)
    with caplog.at_level(logging.WARNING, logger="dimensionx"):
        attach(parts.transformer, [Director("one", "S", 1.0, lora)], "the tiny model")
    assert "covers blocks 0-0 only, of this model's 2" in caplog.text


def test_a_truncated_transformer_file_in_a_model_folder_is_named_with_its_cause(tiny_model_dir, tmp_path):
    import shutil

    folder = shutil.copytree(tiny_model_dir, tmp_path / "model")
    weights = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-1000])
    with pytest.raises(ValueError, match=r"diffusion_pytorch_model.safetensors' cannot be loaded: truncated: it holds "
                                         r"\d+ bytes of the \d+ its header promises"):
        load_diffusers_folder(folder, dtype=torch.float32)


@pytest.mark.parametrize("suffix", [".pkl", ".safetensors"])
def test_a_pickle_is_read_by_its_content_whatever_its_name(lora_path, tmp_path, suffix):
    path = tmp_path / f"director{suffix}"
    torch.save(load_file(lora_path), path)
    assert len(read_lora(path).targets) == 8
