"""The pack's own CogVideoX image-to-video denoising loop.

It reads like diffusers' CogVideoXImageToVideoPipeline and gives the same frames for the same inputs (a test
pins that), but it is ours: the director schedule is a named step of the loop, and the 4D stages hook in
here (reference-latent sharing, an SDEdit start). Device placement is the caller's: `place(module)` puts a
module where it can run and returns that device (ComfyUI's memory manager in the nodes, `.to()` in the CLI).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..directors.adapters import DirectorControl
from ..hooks import NO_HOOKS, Hooks
from ..optional import require
from .components import VideoComponents
from .conditioning import decode_latents, encode_image_latents, encode_prompt, fit_image
from .guides import LatentBlend, LatentStart, check_latents
from .preview import LatentPreviewer

SCHEDULERS = {"ddim": "CogVideoXDDIMScheduler", "dpm": "CogVideoXDPMScheduler"}
FPS = 8  # CogVideoX videos play at 8 frames per second
Place = Callable[[torch.nn.Module], torch.device]


@dataclass(frozen=True)
class SamplerSettings:
    steps: int = 50
    guidance: float = 6.0
    dynamic_cfg: bool = True
    scheduler: str = "ddim"
    seed: int = 0
    eta: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 1000:
            raise ValueError(f"steps must be between 1 and 1000, got {self.steps}")
        if not (self.guidance >= 0 and math.isfinite(self.guidance)):
            raise ValueError(f"guidance must be a finite number >= 0, got {self.guidance}")
        if self.scheduler not in SCHEDULERS:
            raise ValueError(f"scheduler must be one of {sorted(SCHEDULERS)}, got {self.scheduler!r}")


@dataclass
class VideoResult:
    frames: torch.Tensor     # (frames, H, W, 3) in 0..1, on the CPU
    latents: torch.Tensor    # (1, F, C, h, w) final latents, on the CPU
    fps: int
    notes: list[str]


def make_scheduler(kind: str, config: dict):
    diffusers = require("diffusers")
    return getattr(diffusers, SCHEDULERS[kind]).from_config(config)


def dynamic_guidance(guidance: float, steps: int, timestep: float) -> float:
    """Dynamic CFG as diffusers <= 0.42 computes it (and DimensionX ran it): driven by the timestep *value*,
    not the step index, which makes the scale stay near 1 + guidance for most of a 50-step run."""
    return 1 + guidance * ((1 - math.cos(math.pi * ((steps - timestep) / steps) ** 5.0)) / 2)


def rotary_embeddings(config, spec, latent_frames: int, device: torch.device):
    """RoPE tables for the video tokens, as the released models were trained with (1.0: crop grid; 1.5: slice)."""
    embeddings = require("diffusers.models.embeddings")
    grid_h = spec.height // (spec.spatial_factor * config.patch_size)
    grid_w = spec.width // (spec.spatial_factor * config.patch_size)
    base_h, base_w = config.sample_height // config.patch_size, config.sample_width // config.patch_size
    if config.patch_size_t is None:
        crops = _crop_region((grid_h, grid_w), base_w, base_h)
        return embeddings.get_3d_rotary_pos_embed(embed_dim=config.attention_head_dim, crops_coords=crops,
                                                  grid_size=(grid_h, grid_w), temporal_size=latent_frames,
                                                  device=device)
    return embeddings.get_3d_rotary_pos_embed(
        embed_dim=config.attention_head_dim, crops_coords=None, grid_size=(grid_h, grid_w),
        temporal_size=(latent_frames + config.patch_size_t - 1) // config.patch_size_t, grid_type="slice",
        max_size=(base_h, base_w), device=device)


def _crop_region(grid: tuple[int, int], base_w: int, base_h: int):
    """Where a grid sits inside the training grid once resized to fit it (CogVideoX's RoPE cropping)."""
    h, w = grid
    if h / w > base_h / base_w:
        resize_h, resize_w = base_h, int(round(base_h / h * w))
    else:
        resize_w, resize_h = base_w, int(round(base_w / w * h))
    top, left = int(round((base_h - resize_h) / 2.0)), int(round((base_w - resize_w) / 2.0))
    return (top, left), (top + resize_h, left + resize_w)


@torch.no_grad()
def generate(parts: VideoComponents, image: torch.Tensor, prompt: str | torch.Tensor,
             negative_prompt: str | torch.Tensor = "", settings: SamplerSettings = SamplerSettings(), *,
             directors: DirectorControl | None = None, start: LatentStart | None = None,
             blend: LatentBlend | None = None, place: Place, hooks: Hooks = NO_HOOKS,
             preview_every: int = 1) -> VideoResult:
    """One image -> one video. `prompt`/`negative_prompt` are text, or T5 states (1, tokens, width) already
    fitted to the model (conditioning.fit_prompt_states). image: (H, W, 3) in 0..1, any size.
    `start` begins part-way from given latents (SDEdit); `blend` pulls early steps toward a reference."""
    spec, config, notes = parts.spec, parts.transformer.config, []
    dtype = parts.transformer.dtype
    generator = torch.Generator().manual_seed(settings.seed)
    guided = settings.guidance > 1.0

    # 1. the first frame, at the model's size
    image, note = fit_image(image, spec.width, spec.height)
    if note:
        notes.append(note)

    # 2. prompt states
    device = place(parts.text_encoder) if isinstance(prompt, str) or isinstance(negative_prompt, str) else None
    states = [encode_prompt(parts.tokenizer, parts.text_encoder, text, spec.text_tokens, device, dtype)
              if isinstance(text, str) else text.to(dtype) for text in (negative_prompt, prompt)]

    # 3. image latents and starting noise
    # CogVideoX 1.5 denoises latent frames in pairs: extra frames go in front and are dropped at the end
    extra_frames = -spec.latent_frames % config.patch_size_t if config.patch_size_t else 0
    latent_frames = spec.latent_frames + extra_frames
    vae_device = place(parts.vae)
    pixels = (image.permute(2, 0, 1)[None].to(vae_device, dtype) * 2 - 1)
    image_latents = encode_image_latents(parts.vae, pixels, spec, latent_frames, generator, dtype)
    previewer = LatentPreviewer.for_vae(parts.vae, spec) if preview_every else None
    shape = (1, latent_frames, spec.latent_channels, spec.height // spec.spatial_factor,
             spec.width // spec.spatial_factor)
    scheduler = make_scheduler(settings.scheduler, parts.scheduler_config)
    noise = torch.randn(shape, generator=generator, dtype=dtype)
    for guide, what in ((start and start.clean, "start"), (blend and blend.reference, "reference")):
        if guide is not None:
            check_latents(guide, shape, what)

    # 4. the denoising loop (from pure noise, or part-way from `start`'s latents)
    device = place(parts.transformer)
    image_latents = image_latents.to(device)
    states = [s.to(device) for s in states]
    text_states = torch.cat(states) if guided else states[1]
    scheduler.set_timesteps(settings.steps, device=device)
    skipped = start.skipped_steps(settings.steps) if start is not None else 0
    timesteps = scheduler.timesteps[skipped:]
    if start is None:
        latents = noise.to(device) * scheduler.init_noise_sigma
    elif len(timesteps):
        start_noise = noise if start.noise is None else start.noise.to(dtype)
        latents = scheduler.add_noise(start.clean.to(device, dtype), start_noise.to(device), timesteps[:1])
    else:
        latents = start.clean.to(device, dtype)
    rotary = rotary_embeddings(config, spec, latents.shape[1], device) if config.use_rotary_positional_embeddings \
        else None
    ofs = latents.new_full((1,), 2.0) if config.ofs_embed_dim is not None else None
    is_dpm = settings.scheduler == "dpm"
    old_prediction = None
    for i, t in enumerate(timesteps):
        step = skipped + i  # position in the full schedule: what director schedules and blends refer to
        if directors is not None:
            directors.apply(step)
        if blend is not None and blend.applies(step):
            latents = blend.apply(latents, scheduler, t).to(dtype)
        model_input = torch.cat([latents] * 2) if guided else latents
        model_input = torch.cat([scheduler.scale_model_input(model_input, t),
                                 torch.cat([image_latents] * 2) if guided else image_latents], dim=2)
        velocity = parts.transformer(hidden_states=model_input, encoder_hidden_states=text_states,
                                     timestep=t.expand(model_input.shape[0]), ofs=ofs,
                                     image_rotary_emb=rotary, return_dict=False)[0].float()
        if guided:
            scale = dynamic_guidance(settings.guidance, settings.steps, t.item()) if settings.dynamic_cfg \
                else settings.guidance
            unconditional, conditional = velocity.chunk(2)
            velocity = unconditional + scale * (conditional - unconditional)
        if is_dpm:
            previous = timesteps[i - 1] if i > 0 else None
            latents, old_prediction = scheduler.step(velocity, old_prediction, t, previous, latents,
                                                     eta=settings.eta, generator=generator, return_dict=False)
            denoised = old_prediction
        else:
            stepped = scheduler.step(velocity, t, latents, eta=settings.eta, generator=generator)
            latents, denoised = stepped.prev_sample, stepped.pred_original_sample
        latents = latents.to(dtype)
        preview = None
        if previewer is not None and ((i + 1) % preview_every == 0 or i + 1 == len(timesteps)):
            preview = previewer.image(denoised)
        hooks.step(i + 1, len(timesteps), preview)
    if directors is not None:
        directors.release()

    # 5. frames
    latents = latents[:, extra_frames:]
    vae_device = place(parts.vae)
    frames = decode_latents(parts.vae, latents.to(vae_device), spec)[0]
    return VideoResult(frames=frames.cpu(), latents=latents.cpu(), fps=FPS, notes=notes)
