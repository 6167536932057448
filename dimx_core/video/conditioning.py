"""What the transformer is conditioned on: the first frame (as VAE latents) and the prompt (as T5 states)."""
from __future__ import annotations

import logging

import torch
import torch.nn.functional as F

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


def decode_latents(vae, latents: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """(B, F, C, h, w) latents -> (B, frames, H, W, 3) in 0..1."""
    video = check_decoded(vae.decode(latents.permute(0, 2, 1, 3, 4).to(vae.dtype) / spec.vae_scaling_factor).sample,
                          vae)
    return (video.float() / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 4, 1)
