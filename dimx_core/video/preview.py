"""Cheap previews of latents during denoising, without running the VAE decoder.

ComfyUI previews video latents with a fixed linear map from latent channels to RGB per model family. None is
published for CogVideoX, so the map is fitted once per VAE: encode a synthetic colour clip, then solve the
least-squares map from each latent pixel to the mean colour of the pixels it covers.
"""
from __future__ import annotations

import weakref

import torch
import torch.nn.functional as F

from .spec import ModelSpec

_FITTED: "weakref.WeakKeyDictionary[torch.nn.Module, LatentPreviewer]" = weakref.WeakKeyDictionary()


def _colour_clip(frames: int, height: int, width: int) -> torch.Tensor:
    """Smooth, saturated colour fields that drift over time: (1, 3, frames, H, W) in -1..1."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, 3, 4, 6, generator=generator) * 2 - 1
    return F.interpolate(coarse, size=(frames, height, width), mode="trilinear", align_corners=True)


class LatentPreviewer:
    def __init__(self, vae, spec: ModelSpec):
        device, dtype = next(vae.parameters()).device, next(vae.parameters()).dtype
        frames = 1 + 2 * spec.temporal_factor
        clip = _colour_clip(frames, 16 * spec.spatial_factor, 24 * spec.spatial_factor)
        with torch.no_grad():
            latents = vae.encode(clip.to(device, dtype)).latent_dist.mean.float().cpu() * spec.vae_scaling_factor
        _, channels, latent_frames, h, w = latents.shape
        keyframes = clip[:, :, ::spec.temporal_factor][:, :, :latent_frames]
        colours = F.adaptive_avg_pool3d(keyframes, (latent_frames, h, w))
        inputs = torch.cat([latents, torch.ones_like(latents[:, :1])], dim=1)
        design = inputs.permute(0, 2, 3, 4, 1).reshape(-1, channels + 1)
        target = colours.permute(0, 2, 3, 4, 1).reshape(-1, 3)
        self.weights = torch.linalg.lstsq(design, target).solution  # (channels + 1, 3)

    @classmethod
    def for_vae(cls, vae, spec: ModelSpec) -> "LatentPreviewer":
        if vae not in _FITTED:
            _FITTED[vae] = cls(vae, spec)
        return _FITTED[vae]

    def image(self, latents: torch.Tensor) -> torch.Tensor:
        """(1, F, C, h, w) latents -> (h, w, 3) colours in 0..1 of the middle latent frame."""
        frame = latents[0, latents.shape[1] // 2].float().cpu()
        rgb = torch.einsum("chw,cd->hwd", torch.cat([frame, torch.ones_like(frame[:1])]), self.weights)
        return (rgb / 2 + 0.5).clamp(0, 1)
