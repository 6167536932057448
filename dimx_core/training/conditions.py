"""What training conditions on, computed once before the first step so that T5 and the VAE can leave the GPU.

Per clip: the VAE's latent distribution of the whole clip (mean and std: each step draws its own latent from it,
as training on `latent_dist.sample()` does), and `image_noise_variants` first-frame latents, each encoded from
the first frame with CogVideoX I2V's image-noise augmentation (SAT: pixel noise of sigma = exp(N(-3, 0.5)) on the
first frame before encoding). Training draws one variant per step; drawing fresh noise every step would need the
VAE during training. Per distinct caption: the T5 states, and those of the empty negative prompt and of the
validation prompt for the validation videos.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch

from ..datasets.clips import read_clip
from ..datasets.layout import ClipGeometry, Dataset, check_clip
from ..speed.memory import tiled_vae
from ..video.components import VideoComponents
from ..video.conditioning import encode_prompt
from ..video.runtime import Runtime
from ..video.sampling import FPS

IMAGE_NOISE_LOG_MEAN, IMAGE_NOISE_LOG_STD = -3.0, 0.5  # SAT's CogVideoX I2V first-frame noise


def seeded(*numbers: int) -> torch.Generator:
    """A CPU generator whose stream depends on every number given (seed, purpose, index ...), mixed properly."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(numbers)).generate_state(1, np.uint64)[0]
                                             >> np.uint64(1)))


@dataclass
class ClipConditions:
    latent_mean: torch.Tensor   # (F, C, h, w) video latents' mean, already scaled for the transformer
    latent_std: torch.Tensor    # (F, C, h, w)
    images: torch.Tensor        # (variants, C, h, w) first-frame latents of noised first frames, scaled
    prompt: int                 # row of Conditions.prompts


@dataclass
class Conditions:
    clips: list[ClipConditions]
    prompts: torch.Tensor       # (distinct captions, tokens, width) T5 states
    negative: torch.Tensor      # (1, tokens, width): the empty prompt, for guided validation videos
    validation_prompt: torch.Tensor  # (1, tokens, width)
    validation_image: torch.Tensor   # (H, W, 3) in 0..1


def geometry_of(parts: VideoComponents) -> ClipGeometry:
    """What every clip must be for this model: its size and frame count, at CogVideoX's frame rate."""
    return ClipGeometry(parts.spec.width, parts.spec.height, parts.spec.frames, float(FPS))


def offload_if_possible(runtime: Runtime, module: torch.nn.Module) -> None:
    if runtime.offload is not None:
        runtime.offload(module)


@torch.no_grad()
def precompute(parts: VideoComponents, dataset: Dataset, runtime: Runtime, *, variants: int, seed: int,
               low_memory: bool, validation_prompt: str | None = None, validation_image: torch.Tensor | None = None,
               say: Callable[[str], None] = lambda text: None) -> Conditions:
    """Every clip's conditions, T5 and then the VAE each on the device alone and offloaded after."""
    spec, dtype, place, hooks = parts.spec, parts.transformer.dtype, runtime.place, runtime.hooks
    geometry = geometry_of(parts)
    captions = list(dict.fromkeys(clip.caption for clip in dataset.clips))
    validation_text = validation_prompt or dataset.clips[0].caption
    say(f"encoding {len(captions)} captions with T5")
    device = place(parts.text_encoder)
    states = [encode_prompt(parts.tokenizer, parts.text_encoder, text, spec.text_tokens, device, dtype).cpu()
              for text in [*captions, "", validation_text]]
    offload_if_possible(runtime, parts.text_encoder)
    device = place(parts.vae)
    clips, first_frame = [], None
    with tiled_vae(parts.vae, low_memory):
        for index, clip in enumerate(dataset.clips):
            say(f"encoding clip {index + 1} of {len(dataset.clips)} with the VAE")
            frames = read_clip(clip.video)
            check_clip(frames, geometry, f"clip '{clip.video.name}' of {dataset.describe()}")
            first_frame = frames[0] if first_frame is None else first_frame
            pixels = frames.permute(3, 0, 1, 2)[None].to(device, parts.vae.dtype) * 2 - 1   # (1, 3, F, H, W)
            distribution = parts.vae.encode(pixels).latent_dist
            scale = spec.vae_scaling_factor
            mean = (distribution.mean[0].permute(1, 0, 2, 3) * scale).to("cpu", dtype)
            std = (distribution.std[0].permute(1, 0, 2, 3) * scale).to("cpu", dtype)
            generator = seeded(seed, 1, index)
            sigma = torch.exp(IMAGE_NOISE_LOG_MEAN + IMAGE_NOISE_LOG_STD * torch.randn(variants, generator=generator))
            first = pixels[:, :, :1].expand(variants, -1, -1, -1, -1).float().cpu()
            noised = first + sigma[:, None, None, None, None] * torch.randn(first.shape, generator=generator)
            image = parts.vae.encode(noised.to(device, parts.vae.dtype)).latent_dist.sample(generator)
            images = (image[:, :, 0] * spec.image_latent_scale).to("cpu", dtype)
            clips.append(ClipConditions(mean, std, images, captions.index(clip.caption)))
            hooks.step(index + 1, len(dataset.clips))
    offload_if_possible(runtime, parts.vae)
    image = validation_image if validation_image is not None else first_frame
    return Conditions(clips, torch.cat(states[:len(captions)]), states[-2], states[-1], image.float().cpu())
