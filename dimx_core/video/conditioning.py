"""What the transformer is conditioned on: the given frames (as VAE latents, in the model's layout) and the prompt
(as T5 states).

The layouts (cogvideox/layouts.py): CogVideoX-5b-I2V reads the first frame's latents followed by zeros; the
start/end-frame CogVideoX-Fun InP models read a frame mask and the latents of a "masked video", built here as
CogVideoX-Fun's inpaint pipeline builds them (read there, written here): the given frames in -1..1 and -1 in every
other frame, lightly noised where the model was trained with noise there, encoded by the VAE (the distribution's
mode) and scaled by the VAE factor; the mask is 1 on given frames, resized to the latent grid with the first frame
on its own (the causal VAE's first latent frame is the first pixel frame alone) and scaled by the same factor, or,
in the 48-channel layout, a three-channel 0/1 video encoded by the VAE.
"""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

from ..cogvideox.layouts import LAYOUTS, interpolating_layouts
from ..cogvideox.spec import ModelSpec
from .finite import check_decoded

log = logging.getLogger("dimensionx")


def fit_image(image: torch.Tensor, width: int, height: int) -> tuple[torch.Tensor, str | None]:
    """Center-crop to the model's aspect ratio, then resize: never stretch. image: (H, W, 3) in 0..1.

    Returns the fitted image and a note saying what was done (None if the size already matched).
    """
    if image.ndim != 3 or image.shape[-1] not in (1, 3, 4):
        raise ValueError(f"image: expected one RGB image of shape (H, W, 3) (or grayscale (H, W, 1)), got "
                         f"{tuple(image.shape)}")
    image = image[..., :3].expand(*image.shape[:2], 3)  # grayscale: the same value in every channel
    src_h, src_w = image.shape[:2]
    if (src_w, src_h) == (width, height):
        return image, None
    scale = max(width / src_w, height / src_h)
    crop_w, crop_h = round(width / scale), round(height / scale)
    top, left = (src_h - crop_h) // 2, (src_w - crop_w) // 2
    cropped = image[top:top + crop_h, left:left + crop_w].permute(2, 0, 1)[None]
    resized = F.interpolate(cropped.float(), size=(height, width), mode="bicubic", align_corners=False,
                            antialias=True)[0].permute(1, 2, 0).clamp(0, 1).to(image.dtype)
    cropped_text = f"center-cropped to {crop_w}x{crop_h} and " if (crop_w, crop_h) != (src_w, src_h) else ""
    note = f"input image {src_w}x{src_h} {cropped_text}resized to {width}x{height}, the size this model was trained at"
    return resized, note


def prompt_token_ids(tokenizer, prompt: str, max_tokens: int) -> torch.Tensor:
    """(1, max_tokens) T5 token ids of the prompt, cut and then padded to `max_tokens` as CogVideoX was trained
    (pad tokens encoded like any other). Any T5 encoder given these ids, the pack's or the host's, makes the states
    the model expects."""
    ids = tokenizer([prompt], padding="max_length", max_length=max_tokens, truncation=True,
                    add_special_tokens=True, return_tensors="pt").input_ids
    full = tokenizer([prompt], padding="longest", return_tensors="pt").input_ids
    if full.shape[-1] > max_tokens:
        dropped = tokenizer.decode(full[0, max_tokens - 1:-1], skip_special_tokens=True)
        log.warning("DimensionX: the prompt is %d tokens long; the model reads %d, so this end was cut: %r",
                    full.shape[-1], max_tokens, dropped)
    return ids


def encode_prompt(tokenizer, text_encoder, prompt: str, max_tokens: int, device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor:
    """T5 states of the prompt, padded to `max_tokens` and encoded without a mask, as CogVideoX was trained."""
    return text_encoder(prompt_token_ids(tokenizer, prompt, max_tokens).to(device))[0].to(dtype)


def fit_prompt_states(states: torch.Tensor, spec_tokens: int, text_dim: int, what: str) -> torch.Tensor:
    """Accept T5 states from elsewhere (a ComfyUI CLIP loader): check the width and the length.

    Shorter states are refused rather than padded: they come from a loader that pads its T5 input to fewer tokens
    (77 for SD3-style T5 loaders), and neither zeros nor those states are what CogVideoX read in training (its
    226 tokens, pad tokens encoded). Longer ones are cut, with a warning."""
    if states.ndim != 3 or states.shape[-1] != text_dim:
        raise ValueError(f"{what}: expected T5-XXL states of width {text_dim} (shape (1, tokens, {text_dim})), got "
                         f"{tuple(states.shape)}. Load the text encoder with a CLIP loader of type T5-XXL.")
    if states.shape[1] < spec_tokens:
        raise ValueError(
            f"{what}: these T5 states have {states.shape[1]} tokens, but CogVideoX reads {spec_tokens} (the prompt "
            f"padded to {spec_tokens} tokens before encoding). They come from a loader that pads to "
            f"{states.shape[1]}: use the CLIP loader type 'cogvideox' where this ComfyUI has it, or connect the CLIP "
            "to Load Video Model's 'clip' input and type the prompt into the sampler (the pack then encodes it "
            f"through that CLIP with {spec_tokens}-token padding).")
    if states.shape[1] > spec_tokens:
        log.warning("DimensionX: %s has %d tokens; the model reads %d, the rest is cut", what, states.shape[1],
                    spec_tokens)
        return states[:, :spec_tokens]
    return states


def encode_image_latents(vae, image: torch.Tensor, spec: ModelSpec, latent_frames: int,
                         generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """(B, latent_frames, C, h, w) conditioning latents: the first frame's latents, then zeros.

    image: (B, 3, H, W) in -1..1 on the VAE's device. The latent is *sampled* (not the mean), as diffusers does,
    so the same seed gives the same video as diffusers' pipeline.
    """
    latents = vae.encode(image.unsqueeze(2).to(vae.dtype)).latent_dist.sample(generator)
    latents = latents.to(dtype).permute(0, 2, 1, 3, 4) * spec.image_latent_scale
    b, _, c, h, w = latents.shape
    return torch.cat([latents, latents.new_zeros(b, latent_frames - 1, c, h, w)], dim=1)


def check_end_image(spec: ModelSpec, image: torch.Tensor, end_image: torch.Tensor) -> None:
    """Refuse an end frame the model cannot take, or one whose size differs from the first frame's."""
    if not spec.takes_end_frame:
        raise ValueError(f"end_image: this model ({spec.describe()}) conditions on the first frame only; joining a "
                         f"start and an end frame needs an interpolation-capable model: {interpolating_layouts()}")
    if end_image.ndim != 3 or tuple(end_image.shape[:2]) != tuple(image.shape[:2]):
        raise ValueError(f"end_image: expected one image of the first frame's size {image.shape[1]}x{image.shape[0]} "
                         f"(the two views of one camera), got shape {tuple(end_image.shape)}; resize or crop one of "
                         "them so both match")


def given_frames(first: torch.Tensor, last: torch.Tensor | None, frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A (1, 3, frames, H, W) video holding `first` (and `last`) in -1..1, and which of its frames are given
    ((frames,) bool). first/last: (1, 3, H, W)."""
    video = first[:, :, None].expand(-1, -1, frames, -1, -1).clone()
    known = torch.zeros(frames, dtype=torch.bool)
    known[0] = True
    if last is not None:
        video[:, :, -1] = last
        known[-1] = True
    return video, known


def resized_mask(known: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    """(B, 1, F, H, W) 0/1 mask -> (B, 1, latent frames, h, w): the first frame alone onto the first latent frame,
    the rest trilinearly onto the others (CogVideoX-Fun's resize of the mask)."""
    latent_frames, height, width = size
    first = F.interpolate(known[:, :, :1], size=(1, height, width), mode="trilinear", align_corners=False)
    if latent_frames == 1:
        return first
    rest = F.interpolate(known[:, :, 1:], size=(latent_frames - 1, height, width), mode="trilinear",
                         align_corners=False)
    return torch.cat([first, rest], dim=2)


def inpaint_latents(vae, video: torch.Tensor, known: torch.Tensor, spec: ModelSpec, dtype: torch.dtype, *,
                    sigma: torch.Tensor | float = 0.0, generator: torch.Generator | None = None,
                    sample: bool = False) -> torch.Tensor:
    """(B, latent frames, mask + latent channels, h, w) conditioning of an inpaint-layout model.

    video: (B, 3, F, H, W) in -1..1 on the VAE's device (frames not given are ignored); known: (F,) bool, the given
    frames. sigma: the std of the noise put on the given frames before encoding (a number, or one per video).
    sample: draw the latents from the VAE's distribution (as training does) instead of taking its mode (inference).
    """
    layout = LAYOUTS[spec.layout]
    batch, _, frames = video.shape[:3]
    given = known.to(video.device).view(1, 1, frames, 1, 1)
    masked = torch.where(given, video.float(), torch.full_like(video, -1.0, dtype=torch.float32))
    sigma = torch.as_tensor(sigma, dtype=torch.float32).reshape(-1, 1, 1, 1, 1).expand(batch, 1, 1, 1, 1)
    if (sigma > 0).any():  # noise on the given frames only (the reference adds none where the video is -1)
        noise = torch.randn(masked.shape, generator=generator, dtype=torch.float32).to(masked.device)
        masked = masked + torch.where(given, noise * sigma.to(masked.device), 0.0)

    def encode(pixels: torch.Tensor) -> torch.Tensor:
        distribution = vae.encode(pixels.to(vae.dtype)).latent_dist
        return (distribution.sample(generator) if sample else distribution.mode()) * spec.vae_scaling_factor

    latents = encode(masked)
    mask_video = given.float().expand(batch, 1, frames, *video.shape[3:])
    if layout.mask == "resized":
        mask = resized_mask(mask_video, tuple(latents.shape[2:])) * spec.vae_scaling_factor
    else:  # "encoded": the 0/1 mask as a three-channel video through the VAE
        mask = encode(mask_video.expand(batch, 3, *mask_video.shape[2:]))
    return torch.cat([mask.to(latents.dtype), latents], dim=1).to(dtype).permute(0, 2, 1, 3, 4)


def conditioning_latents(vae, spec: ModelSpec, first: torch.Tensor, last: torch.Tensor | None, latent_frames: int,
                         generator: torch.Generator, dtype: torch.dtype) -> torch.Tensor:
    """(1, latent_frames, channels, h, w): what the transformer reads beside the noisy latents, in its layout.
    first/last: (1, 3, H, W) in -1..1 on the VAE's device; last None: the first frame only."""
    if LAYOUTS[spec.layout].mask == "none":
        if last is not None:
            raise ValueError(f"this model ({spec.describe()}) conditions on the first frame only")
        return encode_image_latents(vae, first, spec, latent_frames, generator, dtype)
    video, known = given_frames(first, last, (latent_frames - 1) * spec.temporal_factor + 1)
    return inpaint_latents(vae, video, known, spec, dtype, sigma=spec.reference_noise, generator=generator)


def decode_latents(vae, latents: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """(B, F, C, h, w) latents -> (B, frames, H, W, 3) in 0..1."""
    video = check_decoded(vae.decode(latents.permute(0, 2, 1, 3, 4).to(vae.dtype) / spec.vae_scaling_factor).sample,
                          vae)
    return (video.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 4, 1)
