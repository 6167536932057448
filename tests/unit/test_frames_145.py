"""Every sampler path at the 145 frames of DimensionX's 360-degree model, on a tiny model converted from a SAT
checkpoint in that layout: Switch-Once with directors, the identity guide and multi-view grid, refinement, chained
clips; the release's solver as the default; and the VAE decoding 145 frames in batches."""
import pytest
import torch

from dimx_core.camera.articulated import split_motion
from dimx_core.directors import schedule
from dimx_core.directors.adapters import Director, attach
from dimx_core.directors.formats import read_lora
from dimx_core.identity.latents import build_guide, encode_video
from dimx_core.identity.multiview import evenly_spaced_views, generate_multiview, per_camera, per_frame_requests
from dimx_core.identity.refine import refine_videos
from dimx_core.tiny import build_tiny_lora
from dimx_core.video.chain import generate_chain
from dimx_core.video.components import load_diffusers_folder
from dimx_core.video.conditioning import decode_latents
from dimx_core.video.request import SamplerSettings, VideoRequest
from dimx_core.video.runtime import Runtime
from dimx_core.video.sampling import generate
from dimx_core.speed.memory import tiled_vae
from tests.unit.recon_scenes import one_thread  # noqa: F401 (autouse fixture: faster on the shared 2-core machine)

CPU = torch.device("cpu")
QUIET = Runtime(place=lambda module: CPU, preview_every=0)
FRAMES, HEIGHT, WIDTH = 145, 32, 48


@pytest.fixture(scope="module")
def model(tiny_model_360_dir, tmp_path_factory):
    """The converted 360 model with an S-Director (orbit_right) and a T-Director attached."""
    parts = load_diffusers_folder(tiny_model_360_dir, dtype=torch.float32)
    folder = tmp_path_factory.mktemp("loras")
    chain = [Director(name, role, 1.0, read_lora(build_tiny_lora(tiny_model_360_dir, folder / f"{name}.safetensors",
                                                                 kind, seed=seed)))
             for name, role, kind, seed in (("orbit_right", "S", "s", 1), ("motion", "T", "t", 2))]
    return parts, attach(parts.transformer, chain, parts.spec.describe())


def image(seed: int = 0) -> torch.Tensor:
    return torch.rand(HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(seed))


def test_switch_once_makes_145_frames_with_the_releases_solver(model):
    parts, directors = model
    assert (parts.spec.frames, parts.spec.width, parts.spec.height) == (FRAMES, WIDTH, HEIGHT)
    assert parts.release.scheduler == "sat_dpmpp2m"  # written by the converter, read by "auto"
    request = VideoRequest(image(), "a house", settings=SamplerSettings(steps=2, seed=2), directors=directors,
                           schedule=schedule.switch_once("orbit_right", "motion", 1, 2))
    result = generate(parts, request, QUIET)
    assert result.frames.shape == (FRAMES, HEIGHT, WIDTH, 3) and result.latents.shape == (1, 37, 16, 4, 6)
    assert "solver sat_dpmpp2m, guidance 6, dynamic CFG by timestep" in result.notes
    assert torch.isfinite(result.frames).all() and result.frames.std() > 0


def test_identity_guide_and_multiview_grid_at_145_frames(model):
    parts, directors = model
    reference = torch.rand(FRAMES, HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(4))
    guide = build_guide(encode_video(parts, reference, QUIET.place), 0.9, 0.5, 0, 2, seed=1)
    assert guide.start.clean.shape == (1, 37, 16, 4, 6)
    shared = VideoRequest(None, "x", settings=SamplerSettings(steps=1), directors=directors[:1],
                          schedule=schedule.constant(["orbit_right"], 1), start=guide.start, blend=guide.blend)
    views = evenly_spaced_views(5, parts.spec.frames)
    grid = generate_multiview(parts, per_frame_requests(torch.stack([image(1), image(2)]), shared), QUIET,
                              views=views)
    assert views == [0, 36, 72, 108, 144] and grid.shape == (2, 5, HEIGHT, WIDTH, 3)
    assert per_camera(grid).shape == (5, 2, HEIGHT, WIDTH, 3)
    with pytest.raises(ValueError, match="this model's videos are 145 frames of 48x32"):
        encode_video(parts, reference[:49], QUIET.place)


def test_refinement_pads_a_shorter_video_to_145_frames_and_cuts_it_back(model):
    parts, directors = model
    videos = torch.rand(1, 100, HEIGHT, WIDTH, 3, generator=torch.Generator().manual_seed(5))
    shared = VideoRequest(None, "x", settings=SamplerSettings(steps=2), directors=directors[1:],
                          schedule=schedule.constant(["motion"], 2))
    refined = refine_videos(parts, videos, shared, 0.5, False, QUIET)
    assert refined.shape == videos.shape and not torch.allclose(refined, videos)


def test_chained_145_frame_clips_cover_a_right_loop(model):
    parts, directors = model
    path = split_motion("orbit_360_right", 360.0, 180.0, frames_per_clip=parts.spec.frames, width=WIDTH,
                        height=HEIGHT).combined()
    request = VideoRequest(image(3), "x", settings=SamplerSettings(steps=1), directors=directors)
    frames, notes = generate_chain(parts, request, path, QUIET)
    assert len(path) == 2 * FRAMES - 2 and frames.shape == (len(path), HEIGHT, WIDTH, 3)  # joint once, no repeat
    with pytest.raises(ValueError, match="plan the path with frames_per_clip=145"):
        generate_chain(parts, request, split_motion("orbit_right", 60.0, 30.0, frames_per_clip=49).combined(), QUIET)


def _without_group_statistics(vae):
    """The decoder's GroupNorms as their affine part alone: what stays when no statistic depends on which frames
    are decoded together."""
    saved = []
    for module in vae.decoder.modules():
        if isinstance(module, torch.nn.GroupNorm):
            saved.append((module, module.forward))
            shape = (1, -1, 1, 1, 1)
            module.forward = lambda x, m=module: x * m.weight.reshape(shape[:x.ndim]) + m.bias.reshape(shape[:x.ndim])
    return saved


@pytest.mark.parametrize("tiled", [False, True], ids=["whole-frames", "24GB-tiles"])
def test_145_frames_decode_in_batches_that_match_one_pass(model, tiled):
    """diffusers decodes CogVideoX latents a few frames at a time (3, then 2), carrying the causal convolutions'
    cache across batches, as SAT's sample_video.py does: the memory of a decode does not grow with the frame count,
    in whole frames and in the 24 GB mode's tiles. Batches and one pass agree exactly but for the decoder's group
    statistics, which see only their batch."""
    vae, spec = model[0].vae, model[0].spec
    latents = torch.randn(1, 37, 16, 4, 6, generator=torch.Generator().manual_seed(6))
    tile_sizes = ("tile_sample_min_height", "tile_sample_min_width", "tile_latent_min_height", "tile_latent_min_width")
    saved_tiles = {name: getattr(vae, name) for name in tile_sizes}
    if tiled:  # two tiles side by side on the tiny 4 x 6 latents (the real VAE: 30 x 45 tiles of 40 x 60)
        vae.tile_sample_min_height, vae.tile_sample_min_width, vae.tile_latent_min_height, vae.tile_latent_min_width = \
            40, 32, 5, 4
    seen = []
    handle = vae.decoder.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[2]))
    try:
        with torch.no_grad(), tiled_vae(vae, tiled):
            batched = decode_latents(vae, latents, spec)
            calls = list(seen)
            vae.num_latent_frames_batch_size = 37
            whole = decode_latents(vae, latents, spec)
            if not tiled:
                saved = _without_group_statistics(vae)
                whole_affine = decode_latents(vae, latents, spec)
                vae.num_latent_frames_batch_size = 2
                batched_affine = decode_latents(vae, latents, spec)
                for module, forward in saved:
                    module.forward = forward
    finally:
        handle.remove()
        vae.num_latent_frames_batch_size = 2
        for name, value in saved_tiles.items():
            setattr(vae, name, value)
    per_tile = [3] + [2] * 17  # 37 latent frames in 18 batches
    assert calls == per_tile * (2 if tiled else 1)
    assert batched.shape == whole.shape == (1, FRAMES, HEIGHT, WIDTH, 3)
    if not tiled:
        assert torch.allclose(batched_affine, whole_affine, atol=1e-5)
    relative = float((batched - whole).norm() / whole.norm())
    assert relative < 0.3, relative  # group statistics of 2-3 frames vs 37 (random tiny weights: measured 0.18)
