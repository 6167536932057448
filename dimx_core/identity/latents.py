"""The identity guide: one reference video's latents shared by every per-frame video (DimensionX, eq. 4-5)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..video.components import VideoComponents
from ..video.guides import LatentBlend, LatentStart
from ..video.runtime import Place


@torch.no_grad()
def encode_video(parts: VideoComponents, frames: torch.Tensor, place: Place) -> torch.Tensor:
    """(F, H, W, 3) frames in 0..1 at the model's size -> (1, F', C, h, w) latents in the transformer's space."""
    spec = parts.spec
    if tuple(frames.shape[1:3]) != (spec.height, spec.width) or len(frames) != spec.frames:
        raise ValueError(f"the video is {len(frames)} frames of {frames.shape[2]}x{frames.shape[1]}; this model's "
                         f"videos are {spec.frames} frames of {spec.width}x{spec.height}")
    device = place(parts.vae)
    pixels = frames[..., :3].permute(3, 0, 1, 2)[None].to(device, parts.vae.dtype) * 2 - 1
    latents = parts.vae.encode(pixels).latent_dist.mean * spec.vae_scaling_factor
    return latents.permute(0, 2, 1, 3, 4).to(parts.transformer.dtype).cpu()


@dataclass(frozen=True)
class IdentityGuide:
    """z_ref = sqrt(a_t) E(v_ref) + sqrt(1 - a_t) eps starts every per-frame video (`start`), and early steps
    blend toward z_ref,t (`blend`); eps is the same for all videos."""
    start: LatentStart
    blend: LatentBlend

    def describe(self) -> str:
        return (f"identity guide: start strength {self.start.strength:g}, blend lambda {self.blend.weight:g} "
                f"over steps {self.blend.first}-{self.blend.last - 1}")


def build_guide(reference_latents: torch.Tensor, start_strength: float, blend_weight: float, blend_first: int,
                blend_last: int, seed: int) -> IdentityGuide:
    noise = torch.randn(reference_latents.shape, generator=torch.Generator().manual_seed(seed),
                        dtype=torch.float32).to(reference_latents.dtype)
    return IdentityGuide(LatentStart(reference_latents, start_strength, noise),
                         LatentBlend(reference_latents, noise, blend_weight, blend_first, blend_last))
