"""Start/end-frame (CogVideoX-Fun InP) conditioning: the latents follow the reference layout, and bad inputs are
named. The reference (VideoX-Fun's inpaint pipeline): the masked video holds the given frames and -1 elsewhere,
VAE-encoded (mode) and scaled; the mask is 1 on given frames, the first frame resized alone onto the first latent
frame and the rest trilinearly onto the others, scaled by the same factor. That an end image steers the video is
checked on a small model trained on colour fades (tests/fade_model.py): the random tiny models' VAE does not
reconstruct."""
import dataclasses
from pathlib import Path

import pytest
import torch

from dimx_core.cogvideox.layouts import REFERENCE_NOISE
from dimx_core.tiny import build_tiny_model
from dimx_core.video.components import load_diffusers_folder
from dimx_core.video.conditioning import conditioning_latents
from dimx_core.video.request import SamplerSettings, VideoRequest
from dimx_core.video.runtime import Runtime
from dimx_core.video.sampling import generate
from tests import fade_model

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[2]
INPUTS = REPO / "workflows" / "inputs"
QUIET = Runtime(place=lambda module: CPU, preview_every=0)
FAST = SamplerSettings(steps=2, guidance=1.0, seed=3)


@pytest.fixture(scope="module")
def inp(tmp_path_factory):
    return load_diffusers_folder(build_tiny_model(tmp_path_factory.mktemp("inp") / "m", version="1.0-inp"),
                                 dtype=torch.float32)


@pytest.fixture(scope="module")
def inp48(tmp_path_factory):
    return load_diffusers_folder(build_tiny_model(tmp_path_factory.mktemp("inp48") / "m", version="1.0-inp48"),
                                 dtype=torch.float32)


def _frames(spec, seed):
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(1, 3, spec.height, spec.width, generator=generator) * 2 - 1 for _ in range(2)]


def _encoded(parts, video):
    return parts.vae.encode(video).latent_dist.mode() * parts.spec.vae_scaling_factor


def test_fun_folders_are_read_as_the_inpaint_layout_with_their_reference_noise(inp, inp48, parts_i2v):
    assert (inp.spec.layout, inp48.spec.layout, parts_i2v.spec.layout) == ("inpaint", "inpaint_vae_mask",
                                                                           "first_frame")
    assert inp.spec.takes_end_frame and not parts_i2v.spec.takes_end_frame
    assert inp.spec.reference_noise == REFERENCE_NOISE and parts_i2v.spec.reference_noise == 0.0
    assert "start/end-frame" in inp.spec.describe()


def test_inpaint_latents_hold_the_mask_then_the_masked_video_of_start_and_end_frame(inp):
    spec = dataclasses.replace(inp.spec, reference_noise=0.0)  # the noise is drawn; the layout is exact without it
    first, last = _frames(spec, 0)
    latents = conditioning_latents(inp.vae, spec, first, last, spec.latent_frames, torch.Generator(), torch.float32)
    assert latents.shape == (1, 5, 17, 12, 18)  # 5 latent frames of mask (1) + masked-video latents (16)
    mask = latents[0, :, 0]
    # 17 frames: the first alone -> latent frame 0; frames 1-16 -> latent frames 1-4, where the reference's
    # trilinear resize of a mask given only at frame 16 samples frames 13-14: 0 (the end frame speaks through the
    # masked-video latents)
    assert torch.equal(mask, torch.tensor([0.7, 0, 0, 0, 0]).view(5, 1, 1).expand(5, 12, 18))
    video = torch.cat([first[:, :, None], -torch.ones(1, 3, 15, spec.height, spec.width), last[:, :, None]], dim=2)
    expected = _encoded(inp, video).permute(0, 2, 1, 3, 4)
    assert torch.allclose(latents[..., 1:, :, :], expected, atol=1e-6)


def test_the_end_frame_changes_only_the_last_latent_frame(inp):
    spec = dataclasses.replace(inp.spec, reference_noise=0.0)
    first, last = _frames(spec, 1)
    both = conditioning_latents(inp.vae, spec, first, last, 5, torch.Generator(), torch.float32)
    start_only = conditioning_latents(inp.vae, spec, first, None, 5, torch.Generator(), torch.float32)
    change = (both[0, :, 1:] - start_only[0, :, 1:]).abs().mean(dim=(1, 2, 3))
    assert change[:3].max() < 1e-6  # the causal VAE: the early latent frames never see the end frame
    assert change[-1] > 3 * change[3] > 0  # it lands in the last latent frame (measured 0.023 against 0.006)
    assert torch.equal(both[:, :, 0], start_only[:, :, 0])


def test_reference_noise_lands_on_the_given_frames_only(inp):
    first, last = _frames(inp.spec, 2)
    clean = conditioning_latents(inp.vae, dataclasses.replace(inp.spec, reference_noise=0.0), first, None, 5,
                                 torch.Generator(), torch.float32)
    noised = conditioning_latents(inp.vae, inp.spec, first, None, 5, torch.Generator().manual_seed(0), torch.float32)
    change = (noised - clean).abs()
    assert change[:, 0].max() > 1e-3 and torch.equal(noised[:, :, 0], clean[:, :, 0])


def test_the_48_channel_layout_encodes_its_mask_video_with_the_vae(inp48):
    spec = dataclasses.replace(inp48.spec, reference_noise=0.0)
    first, last = _frames(spec, 3)
    latents = conditioning_latents(inp48.vae, spec, first, last, 5, torch.Generator(), torch.float32)
    assert latents.shape == (1, 5, 32, 12, 18)
    mask_video = torch.zeros(1, 3, 17, spec.height, spec.width)
    mask_video[:, :, [0, -1]] = 1.0
    assert torch.allclose(latents[..., :16, :, :], _encoded(inp48, mask_video).permute(0, 2, 1, 3, 4), atol=1e-6)


def test_an_inp_model_makes_videos_from_both_frames_and_from_the_first_alone(inp):
    image, end = (torch.rand(96, 144, 3, generator=torch.Generator().manual_seed(s)) for s in (4, 5))
    joined = generate(inp, VideoRequest(image, "a ball", settings=FAST, end_image=end), QUIET)
    alone = generate(inp, VideoRequest(image, "a ball", settings=FAST), QUIET)
    assert joined.frames.shape == alone.frames.shape == (17, 96, 144, 3)
    assert "joins the first and the end frame" in " ".join(joined.notes)
    assert (joined.frames - alone.frames).abs().max() > 1e-3


@pytest.fixture(scope="module")
def fade():
    """The InP-layout model trained on colour fades (tests/fade_model.py), built once into the test cache."""
    return load_diffusers_folder(fade_model.ensure_fade_model(REPO / ".cache"), dtype=torch.float32)


GREY, BLUE, YELLOW = (0.5, 0.5, 0.5), (0.1, 0.3, 0.9), (0.9, 0.8, 0.1)


def _distance(frame: torch.Tensor, colour) -> float:
    """Mean absolute difference (0..1) between a frame (H, W, 3) and a solid colour."""
    return float((frame - fade_model.solid_image(colour)).abs().mean())


def test_the_fade_models_vae_reconstructs_held_out_fades_and_the_test_colours(fade):
    generator = torch.Generator().manual_seed(123)  # colours the training stream never drew
    clips = fade_model.fade_clips(*(torch.rand(16, 3, generator=generator) for _ in range(2)))
    clips = torch.cat([clips, fade_model.fade_clips(torch.tensor([GREY, BLUE, YELLOW]),
                                                    torch.tensor([GREY, BLUE, YELLOW]))])
    decoded = fade.vae.decode(fade.vae.encode(clips).latent_dist.mode()).sample
    error = ((decoded - clips).abs() / 2).mean(dim=(1, 2, 3, 4))  # 0..1 units, per clip
    assert error[:16].mean() < 0.15  # measured 0.096 (a trained VAE; the random tiny one decodes grey)
    assert error[16:].max() < 0.2  # grey 0.023, blue 0.14, yellow 0.085: the colours the next test uses


def test_the_end_image_pulls_the_last_frame_toward_itself_against_the_first_frame_alone(fade):
    """Sampled from a grey first frame, with a blue or a yellow end image or none, over eight seeds. First frame
    alone, the model makes some fade (its colour depends on the seed); with an end image, the last frame lands
    near that image (not near the other one): the end image steers it, not only "an end was given"."""
    start, ends = fade_model.solid_image(GREY), {colour: fade_model.solid_image(colour) for colour in (BLUE, YELLOW)}
    joined, alone = {BLUE: [], YELLOW: []}, {BLUE: [], YELLOW: []}
    for seed in range(8):
        settings = SamplerSettings(steps=20, guidance=1.0, dynamic_cfg=False, seed=seed)
        first_only = generate(fade, VideoRequest(start, fade_model.PROMPT, settings=settings), QUIET).frames[-1]
        last = {colour: generate(fade, VideoRequest(start, fade_model.PROMPT, settings=settings, end_image=end),
                                 QUIET).frames[-1] for colour, end in ends.items()}
        for own, other in ((BLUE, YELLOW), (YELLOW, BLUE)):
            joined[own].append(_distance(last[own], own))
            alone[own].append(_distance(first_only, own))
            # nearer its own end image than the other one (measured 0.15-0.58 nearer)
            assert joined[own][-1] < _distance(last[own], other) - 0.1, (seed, own)
    for colour in (BLUE, YELLOW):
        # on average nearer the end image than the first-frame-only video's last frame is (measured: blue 0.159
        # against 0.301, yellow 0.193 against 0.418)
        assert sum(joined[colour]) / 8 < sum(alone[colour]) / 8 - 0.1, (colour, joined[colour], alone[colour])


def test_an_end_image_for_a_first_frame_model_is_refused_by_name(parts_i2v):
    image = torch.rand(96, 144, 3)
    with pytest.raises(ValueError, match="end_image: this model .* first frame only.*InP"):
        generate(parts_i2v, VideoRequest(image, "a ball", settings=FAST, end_image=image), QUIET)


def test_an_end_image_of_another_size_is_refused_by_name(inp):
    with pytest.raises(ValueError, match="end_image: expected one image of the first frame's size 144x96"):
        generate(inp, VideoRequest(torch.rand(96, 144, 3), "a ball", settings=FAST, end_image=torch.rand(64, 96, 3)),
                 QUIET)


@pytest.fixture(scope="module")
def parts_i2v(tiny_model_dir):
    return load_diffusers_folder(tiny_model_dir, dtype=torch.float32)


def test_dimx_two_views_chooses_the_orbit_joins_the_views_and_fits_a_scene(tmp_path, capsys):
    from dimx_core.camera.formats import read_transforms_json
    from dimx_core.cli import main
    from dimx_core.recon.files import read_ply
    from dimx_core.tiny import build_tiny_lora

    model = build_tiny_model(tmp_path / "inp", version="1.0-inp")
    lora = build_tiny_lora(model, tmp_path / "orbit_left.safetensors", "s")
    view_a, view_b = (INPUTS / f"dimx_ball_view_{which}.png" for which in "ab")  # the two-views workflow's
    out = tmp_path / "scene.ply"
    assert main(["two-views", "--model", str(model), "--images", str(view_a), str(view_b), "--prompt", "a ball",
                 "--director", f"orbit_left={lora}", "--director", f"pan_right={lora}", "--fov", "50",
                 "--steps", "2", "--guidance", "1", "--preset", "fast", "--recon-steps", "3",
                 "--initial-points", "500", "--confidence", "none", "--device", "cpu", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "dense-flow correspondences" in captured.err and "director: orbit_left" in captured.err
    assert "joins the first and the end frame" in captured.err
    assert (tmp_path / "scene.mp4").is_file() and read_ply(out).means.shape[1] == 3
    cameras, _ = read_transforms_json(tmp_path / "scene.transforms.json")
    assert len(cameras) == 17 and cameras.pattern == "orbit_left"  # the chosen director's path, one pose a frame
