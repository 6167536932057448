"""Chained director clips line up with the articulated path's poses."""
import pytest
import torch

from dimx_core.camera.articulated import split_motion
from dimx_core.directors.adapters import Director, attach
from dimx_core.directors.formats import read_lora
from dimx_core.hooks import Hooks
from dimx_core.tiny import build_tiny_lora
from dimx_core.video.chain import generate_chain
from dimx_core.video.components import load_diffusers_folder
from dimx_core.video.request import SamplerSettings, VideoRequest
from dimx_core.video.runtime import Runtime

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(tiny_model_dir, tmp_path_factory):
    parts = load_diffusers_folder(tiny_model_dir, dtype=torch.float32)
    lora = read_lora(build_tiny_lora(tiny_model_dir, tmp_path_factory.mktemp("l") / "o.safetensors", "s"))
    return parts, attach(parts.transformer, [Director("orbit_left", "S", 1.0, lora)], "tiny")


def test_a_full_loop_drops_the_closing_frame_and_reports_overall_progress(setup):
    parts, directors = setup
    path = split_motion("orbit_360", 360.0, 180.0, frames_per_clip=17, width=144, height=96).combined()
    seen = []
    request = VideoRequest(torch.rand(96, 144, 3), "a house", settings=SamplerSettings(steps=2), directors=directors)
    frames, _ = generate_chain(parts, request, path,
                               Runtime(lambda m: CPU, hooks=Hooks(progress=lambda s, t, p: seen.append((s, t)))))
    assert len(path) == 32 and frames.shape[0] == 32  # 2 clips x 17, one shared joint, closing frame dropped
    assert seen == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_a_clip_without_its_director_is_named(setup):
    parts, directors = setup
    path = split_motion("pan_left", 40.0, 20.0, frames_per_clip=17, width=144, height=96).combined()
    with pytest.raises(ValueError, match=r"directors named \['pan_left'\]"):
        generate_chain(parts, VideoRequest(torch.rand(96, 144, 3), "x", settings=SamplerSettings(steps=1),
                                           directors=directors), path, Runtime(lambda m: CPU))
