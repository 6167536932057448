"""Identity-preserving 4D on the tiny model: the math of latent sharing, SDEdit and the multi-view grid."""
import dataclasses
import pickle

import pytest
import torch

from dimx_core.directors import schedule
from dimx_core.directors.adapters import Director, attach
from dimx_core.directors.formats import read_lora
from dimx_core.hooks import Hooks, Interrupted
from dimx_core.identity.latents import build_guide, encode_video
from dimx_core.identity.multiview import VideoCache, generate_multiview, per_camera, per_frame_requests
from dimx_core.identity.reference import select_reference_frame
from dimx_core.identity.refine import refine_videos
from dimx_core.speed.options import LossyOptions
from dimx_core.tiny import build_tiny_lora
from dimx_core.video.components import load_diffusers_folder
from dimx_core.video.guides import LatentBlend
from dimx_core.video.request import SamplerSettings, VideoRequest
from dimx_core.video.runtime import Runtime
from dimx_core.video.sampling import generate
from dimx_core.video.solvers import make_scheduler

CPU = torch.device("cpu")
QUIET = Runtime(place=lambda module: CPU, preview_every=0)  # on the CPU, no previews


def run(parts, image, settings, **fields):
    return generate(parts, VideoRequest(image, "x", settings=settings, **fields), QUIET)


def shared(settings, **fields):
    """A request every video of a multi-view grid or a refinement shares: no first frame of its own."""
    return VideoRequest(None, "x", settings=settings, **fields)


@pytest.fixture(scope="module")
def parts(tiny_model_dir):
    return load_diffusers_folder(tiny_model_dir, dtype=torch.float32)


@pytest.fixture(scope="module")
def reference(parts):
    video = torch.rand(17, 96, 144, 3, generator=torch.Generator().manual_seed(3))
    return encode_video(parts, video, QUIET.place)


def image(seed):
    return torch.rand(96, 144, 3, generator=torch.Generator().manual_seed(seed))


def latents_entering_the_transformer(parts):
    seen = []
    handle = parts.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: seen.append(kwargs["hidden_states"][0, :, :16].clone()), with_kwargs=True)
    return seen, handle


def test_lambda_zero_replaces_the_latents_by_the_schedulers_noised_reference(parts, reference):
    noise = torch.randn(reference.shape, generator=torch.Generator().manual_seed(9))
    blend = LatentBlend(reference, noise, weight=0.0, first=1, last=2)
    seen, handle = latents_entering_the_transformer(parts)
    try:
        run(parts, image(0), SamplerSettings(steps=4), blend=blend)
    finally:
        handle.remove()
    scheduler = make_scheduler("ddim", parts.scheduler_config)
    scheduler.set_timesteps(4)
    expected = scheduler.add_noise(reference, noise, scheduler.timesteps[1:2])
    assert torch.allclose(seen[1], expected[0], atol=1e-6)
    assert not torch.allclose(seen[2], scheduler.add_noise(reference, noise, scheduler.timesteps[2:3])[0], atol=1e-3)


def test_lambda_one_is_exactly_the_unguided_run(parts, reference):
    noise = torch.randn(reference.shape)
    settings = SamplerSettings(steps=3, seed=4)
    plain = run(parts, image(1), settings).frames
    guided = run(parts, image(1), settings, blend=LatentBlend(reference, noise, 1.0, 0, 3)).frames
    assert torch.equal(plain, guided)


def test_the_guide_starts_from_z_ref_at_the_start_strength(parts, reference):
    guide = build_guide(reference, start_strength=0.5, blend_weight=1.0, blend_first=0, blend_last=0, seed=2)
    seen, handle = latents_entering_the_transformer(parts)
    try:
        run(parts, image(2), SamplerSettings(steps=4), start=guide.start)
    finally:
        handle.remove()
    scheduler = make_scheduler("ddim", parts.scheduler_config)
    scheduler.set_timesteps(4)
    assert len(seen) == 2  # half the schedule
    assert torch.allclose(seen[0], scheduler.add_noise(reference, guide.start.noise, scheduler.timesteps[2:3])[0],
                          atol=1e-6)


def test_sdedit_at_zero_returns_the_input_and_at_full_noise_ignores_it(parts):
    videos = torch.rand(2, 17, 96, 144, 3, generator=torch.Generator().manual_seed(5))
    settings = SamplerSettings(steps=2, seed=1)
    assert refine_videos(parts, videos, shared(settings), 0.0, False, QUIET) is videos
    other = videos.clone()
    other[:, 1:] = torch.rand_like(other[:, 1:])  # same first frame (the conditioning image), other content
    full = [refine_videos(parts, v, shared(settings), 1.0, False, QUIET) for v in (videos, other)]
    assert torch.allclose(full[0], full[1], atol=1e-6)
    half = [refine_videos(parts, v, shared(settings), 0.5, True, QUIET) for v in (videos, other)]
    assert (half[0] - half[1]).abs().max() > 1e-3  # part-way, the input shapes the result


def test_refine_pads_short_videos_and_refuses_long_ones(parts):
    short = torch.rand(1, 9, 96, 144, 3)
    out = refine_videos(parts, short, shared(SamplerSettings(steps=2)), 0.5, False, QUIET)
    assert out.shape == short.shape
    with pytest.raises(ValueError, match="longer than the model's 17"):
        refine_videos(parts, torch.rand(1, 20, 96, 144, 3), shared(SamplerSettings(steps=2)), 0.5, False, QUIET)


def test_per_camera_assembly_puts_frame_i_j_in_video_j_at_time_i():
    grid = torch.arange(3 * 4).float().reshape(3, 4, 1, 1, 1).expand(3, 4, 2, 2, 3)  # value = 4 i + j
    videos = per_camera(grid)
    assert videos.shape == (4, 3, 2, 2, 3)
    for i in range(3):
        for j in range(4):
            assert videos[j, i, 0, 0, 0] == 4 * i + j


def test_multiview_resumes_from_cached_videos(parts, tiny_model_dir, tmp_path, reference):
    lora = read_lora(build_tiny_lora(tiny_model_dir, tmp_path / "s.safetensors", "s"))
    directors = attach(parts.transformer, [Director("orbit", "S", 1.0, lora)], "tiny")
    frames = torch.rand(3, 96, 144, 3, generator=torch.Generator().manual_seed(1))
    guide = build_guide(reference, 0.9, 0.5, 0, 1, seed=0)
    requests = per_frame_requests(frames, shared(SamplerSettings(steps=2), directors=directors,
                                                 schedule=schedule.constant(["orbit"], 2), start=guide.start,
                                                 blend=guide.blend))
    cache = VideoCache(tmp_path / "cache")
    calls = []
    stop_after_first = Hooks(should_stop=lambda: len(list((tmp_path / "cache").glob("*.pt"))) >= 1)
    with pytest.raises(Interrupted):
        generate_multiview(parts, requests, QUIET.with_hooks(stop_after_first), cache=cache)
    grid = generate_multiview(parts, requests, QUIET, cache=cache, views=[0, 8, 16],
                              on_video=lambda i, n, c: calls.append(c))
    assert calls == [True, False, False] and grid.shape == (3, 3, 96, 144, 3)
    assert sorted(path.stem for path in cache.folder.glob("*.pt")) == sorted(r.key(parts.identity) for r in requests)
    again = generate_multiview(parts, requests, QUIET, cache=cache, views=[0, 8, 16])
    assert torch.allclose(grid, again, atol=1 / 255)


def test_a_requests_content_key_follows_what_it_makes_and_survives_pickling(parts, reference):
    guide = build_guide(reference, 0.9, 0.5, 0, 1, seed=0)
    request = VideoRequest(image(4), "a cat", settings=SamplerSettings(steps=2), start=guide.start, blend=guide.blend)
    key = request.key(parts.identity)
    assert pickle.loads(pickle.dumps(request)).key(parts.identity) == key
    assert dataclasses.replace(request, image=image(4).clone()).key(parts.identity) == key  # values, not objects
    changed = [dataclasses.replace(request, image=image(5)), dataclasses.replace(request, prompt="a dog"),
               dataclasses.replace(request, settings=SamplerSettings(steps=2, seed=1)),
               dataclasses.replace(request, blend=dataclasses.replace(guide.blend, weight=0.4)),
               dataclasses.replace(request, lossy=LossyOptions(step_cache=0.1))]
    keys = {other.key(parts.identity) for other in changed} | {request.key("another model")}
    assert key not in keys and len(keys) == len(changed) + 1


def test_the_guide_makes_per_frame_videos_agree(parts, reference):
    """The identity guide's purpose, measured: variance across the N videos at the same camera index."""
    frames = torch.rand(3, 96, 144, 3, generator=torch.Generator().manual_seed(8))
    settings = SamplerSettings(steps=4, seed=2)
    free = generate_multiview(parts, per_frame_requests(frames, shared(settings)), QUIET)

    def guided(weight, last):
        guide = build_guide(reference, 0.9, weight, 0, last, seed=0)
        requests = per_frame_requests(frames, shared(settings, start=guide.start, blend=guide.blend))
        return generate_multiview(parts, requests, QUIET)

    light, strong = guided(0.5, 2), guided(0.0, 3)
    spread = [v[:, 1:].var(dim=0).mean().item() for v in (free, light, strong)]  # frame 0: each video's own image
    print(f"variance across per-frame videos: guide off {spread[0]:.3g}, lambda 0.5 x 2 steps {spread[1]:.3g}, "
          f"lambda 0 x 3 steps {spread[2]:.3g}")
    assert spread[0] > spread[1] > spread[2]


def test_reference_frame_is_the_one_whose_motion_covers_the_most():
    rng = torch.Generator().manual_seed(0)
    background, texture = torch.rand(64, 96, 3, generator=rng) * 0.5, torch.rand(20, 20, 3, generator=rng)
    video = background.expand(6, 64, 96, 3).clone()
    for t, x in enumerate([10, 12, 14, 24, 34, 36]):  # slow, slow, fast, fast, slow
        video[t, 22:42, x:x + 20] = texture
    choice = select_reference_frame(video)
    assert choice.index in (2, 3) and choice.scores[choice.index] > 2 * choice.scores[0]
    only_left = torch.zeros(64, 96)
    only_left[:, :12] = 1
    masked = select_reference_frame(video, mask=only_left)
    assert masked.masks[:, :, 12:].sum() == 0 and masked.scores.max() <= choice.scores.max()
    with pytest.raises(ValueError, match="does not match 6 frames"):
        select_reference_frame(video, mask=torch.zeros(3, 10, 10))
    assert "reference frame" in choice.describe()


def test_reference_frame_selection_honours_cancel_between_frame_pairs():
    seen = []
    hooks = Hooks(progress=lambda step, total, _: seen.append((step, total)), should_stop=lambda: len(seen) >= 2)
    with pytest.raises(Interrupted):
        select_reference_frame(torch.rand(40, 32, 48, 3, generator=torch.Generator().manual_seed(0)), hooks=hooks)
    assert seen == [(1, 39), (2, 39)]
