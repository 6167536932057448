"""The pack's own denoising loop against diffusers' pipeline, and the loop's own guarantees."""
import math

import pytest
import torch

from dimx_core.video.components import load_diffusers_folder
from dimx_core.video.request import SamplerSettings, VideoRequest
from dimx_core.video.runtime import Runtime
from dimx_core.video.sampling import generate
from dimx_core.video.solvers import dynamic_guidance, make_scheduler

CPU = torch.device("cpu")
QUIET = Runtime(place=lambda module: CPU, preview_every=0)  # on the CPU, no previews


def diffusers_frames(parts, scheduler_kind, image, prompt, steps, guidance, dynamic_cfg, seed):
    from diffusers import CogVideoXImageToVideoPipeline

    pipe = CogVideoXImageToVideoPipeline(parts.tokenizer, parts.text_encoder, parts.vae, parts.transformer,
                                         make_scheduler(scheduler_kind, parts.scheduler_config))
    pipe.set_progress_bar_config(disable=True)
    out = pipe(image=image.permute(2, 0, 1)[None], prompt=prompt, height=parts.spec.height, width=parts.spec.width,
               num_frames=parts.spec.frames, num_inference_steps=steps, guidance_scale=guidance,
               use_dynamic_cfg=dynamic_cfg, generator=torch.Generator().manual_seed(seed), output_type="pt")
    return out.frames[0].permute(0, 2, 3, 1)


@pytest.fixture(scope="module")
def parts(tiny_model_dir):
    return load_diffusers_folder(tiny_model_dir, dtype=torch.float32)


@pytest.fixture(scope="module")
def parts_15(tiny_model_15_dir):
    return load_diffusers_folder(tiny_model_15_dir, dtype=torch.float32)


@pytest.mark.parametrize("scheduler", ["ddim", "dpm"])
@pytest.mark.parametrize("dynamic_cfg", [True, False])
def test_loop_matches_diffusers_pipeline(parts, scheduler, dynamic_cfg):
    image = torch.rand(parts.spec.height, parts.spec.width, 3, generator=torch.Generator().manual_seed(1))
    settings = SamplerSettings(steps=4, guidance=6.0, dynamic_cfg=dynamic_cfg, scheduler=scheduler, seed=7)
    ours = generate(parts, VideoRequest(image, "a cat walking on the moon", settings=settings), QUIET)
    reference = diffusers_frames(parts, scheduler, image, "a cat walking on the moon", 4, 6.0, dynamic_cfg, 7)
    assert ours.frames.shape == reference.shape == (17, 96, 144, 3)
    assert (ours.frames - reference).abs().max() <= 1e-5


def test_loop_matches_diffusers_for_cogvideox_15(parts_15):
    image = torch.rand(parts_15.spec.height, parts_15.spec.width, 3, generator=torch.Generator().manual_seed(2))
    settings = SamplerSettings(steps=3, guidance=6.0, dynamic_cfg=True, scheduler="ddim", seed=3)
    ours = generate(parts_15, VideoRequest(image, "a dog", settings=settings), QUIET)
    reference = diffusers_frames(parts_15, "ddim", image, "a dog", 3, 6.0, True, 3)
    assert parts_15.spec.version == "1.5" and parts_15.spec.uses_ofs
    assert (ours.frames - reference).abs().max() <= 1e-5


def test_dynamic_cfg_follows_the_timestep_value():
    """diffusers <= 0.42 (and DimensionX) feed the timestep *value* into the cosine schedule."""
    scheduler = make_scheduler("ddim", {"num_train_timesteps": 1000, "timestep_spacing": "trailing",
                                        "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
                                        "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012})
    scheduler.set_timesteps(50)
    values = [dynamic_guidance(6.0, 50, float(t)) for t in scheduler.timesteps]
    assert scheduler.timesteps[0].item() == 999 and scheduler.timesteps[-1].item() == 19
    expected_first = 1 + 6.0 * (1 - math.cos(math.pi * ((50 - 999) / 50) ** 5.0)) / 2
    assert values[0] == pytest.approx(expected_first)
    assert values[-1] == pytest.approx(1 + 6.0 * (1 - math.cos(math.pi * ((50 - 19) / 50) ** 5.0)) / 2)
    assert min(values) >= 1.0 and max(values) <= 7.0
    assert len({round(v, 6) for v in values}) > 10  # it moves with t, not a constant


def test_same_seed_same_video_other_seed_other_video(parts):
    image = torch.rand(parts.spec.height, parts.spec.width, 3)
    runs = [generate(parts, VideoRequest(image, "a tree", settings=SamplerSettings(steps=2, seed=s)), QUIET).frames
            for s in (1, 1, 2)]
    assert torch.equal(runs[0], runs[1]) and not torch.equal(runs[0], runs[2])


def test_other_image_sizes_are_cropped_not_stretched(parts):
    wide = torch.zeros(96, 288, 3)
    wide[:, 72:216] = 1.0  # a white centre the width of the model's aspect; black wings that must be cut away
    result = generate(parts, VideoRequest(wide, "x", settings=SamplerSettings(steps=1)), QUIET)
    assert result.frames.shape[1:] == (96, 144, 3)
    assert "center-cropped to 144x96" in result.notes[0]


def test_previews_arrive_every_step_and_cancel_stops_within_one_step(parts):
    from dimx_core.hooks import Hooks, Interrupted

    seen = []

    def progress(step, total, preview):
        seen.append((step, total, None if preview is None else tuple(preview.shape)))

    hooks = Hooks(progress=progress, should_stop=lambda: len(seen) >= 2)
    image = torch.rand(parts.spec.height, parts.spec.width, 3)
    with pytest.raises(Interrupted):
        generate(parts, VideoRequest(image, "x", settings=SamplerSettings(steps=5)), Runtime(QUIET.place, hooks=hooks))
    assert seen == [(1, 5, (12, 18, 3)), (2, 5, (12, 18, 3))]


@pytest.mark.parametrize("kwargs, message", [({"steps": 0}, "steps"), ({"guidance": float("nan")}, "guidance"),
                                             ({"scheduler": "euler"}, "scheduler")])
def test_bad_settings_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplerSettings(**kwargs)
