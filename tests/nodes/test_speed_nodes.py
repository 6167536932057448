"""Speed Options node and the samplers' speed input, inside a real ComfyUI 0.3.75 process (CPU)."""
import shutil

import pytest
import torch

from dimx_core.speed.options import SpeedOptions


@pytest.fixture(scope="module")
def model(pack, node_classes, tiny_model_dir, tmp_path_factory):
    import folder_paths

    root = tmp_path_factory.mktemp("speed_models")
    shutil.copytree(tiny_model_dir, root / "dimensionx" / "tiny-speed")
    folder_paths.add_model_folder_path("dimensionx", str(root / "dimensionx"), is_default=True)
    return node_classes["DimensionXLoadVideoModel"].execute("tiny-speed", "fp32").result[0]


def test_speed_options_node_builds_the_options(node_classes):
    speed = node_classes["DimensionXSpeedOptions"].execute("sdpa", False, True, True, False, True, 0.05).result[0]
    expected = SpeedOptions(attention="sdpa", fuse_qkv=False, compile=True, low_memory=True, step_cache=0.05)
    assert speed.describe() == expected.describe()  # the pack's own copy of the class, under ComfyUI's import
    assert speed.compile_cache.replace("\\", "/").endswith("dimensionx/torch-compile")


def test_low_memory_sampler_has_comfyui_unload_t5_and_says_what_ran(node_classes, model):
    import comfy.model_management as mm

    speed = node_classes["DimensionXSpeedOptions"].execute("auto", True, True, False, False, True, 0.0).result[0]
    args = dict(model=model, image=torch.rand(1, 96, 144, 3), prompt="a cat", negative_prompt="", steps=2,
                guidance=6.0, use_dynamic_cfg=True, scheduler="ddim", seed=3)
    frames, latent, _, info, *_video = node_classes["DimensionXDirectorSampler"].execute(**args, speed=speed).result
    t5 = model.patchers[id(model.parts.text_encoder)]
    assert all(entry.model is not t5 for entry in mm.current_loaded_models)
    assert any(entry.model is model.patchers[id(model.parts.transformer)] for entry in mm.current_loaded_models)
    assert "24 GB mode: T5 used alone on the GPU, then offloaded" in info and "fused QKV projection in 2 blocks" in info
    default = node_classes["DimensionXDirectorSampler"].execute(**args).result
    assert torch.equal(latent["samples"], default[1]["samples"]) and frames.shape == default[0].shape
