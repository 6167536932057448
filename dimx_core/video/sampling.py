"""The pack's own CogVideoX image-to-video denoising loop.

It reads like diffusers' CogVideoXImageToVideoPipeline and gives the same frames for the same inputs (a test
pins that), but it is ours: where the loop starts (pure noise, or an SDEdit start) is a named step, and every
step begins by asking the run's step guides (the director schedule, the reference-latent blend). What to make is
a VideoRequest (request.py); how to make it here, a Runtime (runtime.py): device placement is the caller's
(ComfyUI's memory manager in the nodes, `.to()` in the CLI).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..directors.adapters import DirectorControl
from ..hooks import NO_HOOKS, Hooks
from ..optional import require
from ..speed.memory import cache_context, tiled_vae
from ..speed.options import SpeedOptions
from ..speed.session import attention_shape, speed_applied
from .components import VideoComponents
from .conditioning import check_end_image, conditioning_latents, decode_latents, encode_prompt, fit_image
from .finite import check_denoised
from .guides import LatentBlend, LatentStart, StepGuides, check_latents
from .preview import LatentPreviewer, PreviewQueue
from .request import SamplerSettings, VideoRequest
from .runtime import WHOLE_STEPS, Runtime, StepSplit
from .solvers import AUTO, guidance_scales, make_scheduler, solver_of

FPS = 8  # CogVideoX videos play at 8 frames per second

@dataclass
class VideoResult:
    frames: torch.Tensor     # (frames, H, W, 3) in 0..1, on the CPU
    latents: torch.Tensor    # (1, F, C, h, w) final latents, on the CPU
    fps: int
    notes: list[str]


def rotary_embeddings(config, latents_shape: tuple[int, ...], device: torch.device):
    """RoPE tables for the video tokens of latents (B, F, C, h, w), as the released models were trained with
    (1.0: crop grid; 1.5: slice)."""
    embeddings = require("diffusers.models.embeddings")
    latent_frames = latents_shape[1]
    grid_h, grid_w = latents_shape[3] // config.patch_size, latents_shape[4] // config.patch_size
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


def director_control(parts: VideoComponents, request: VideoRequest) -> DirectorControl | None:
    """The request's director schedule on the model (its directors attached already); None: the base model."""
    if request.schedule is None or not request.schedule.segments:
        return None
    return DirectorControl(parts.transformer, request.directors, request.schedule)


def start_latents(scheduler, noise: torch.Tensor, start: LatentStart | None, steps: int, device: torch.device,
                  dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    """Where the loop starts: (latents, first step of the full schedule). Pure noise at step 0, or (SDEdit)
    `start`'s clean latents noised to the first step it keeps."""
    scheduler.set_timesteps(steps)
    if start is None:
        return noise.to(device) * scheduler.init_noise_sigma, 0
    skipped = start.skipped_steps(steps)
    timesteps = scheduler.timesteps[skipped:]
    if not len(timesteps):
        return start.clean.to(device, dtype), skipped
    start_noise = noise if start.noise is None else start.noise.to(dtype)
    return scheduler.add_noise(start.clean.to(device, dtype), start_noise.to(device), timesteps[:1]), skipped


@torch.no_grad()
def generate(parts: VideoComponents, request: VideoRequest, runtime: Runtime) -> VideoResult:
    """One request -> one video. In the 24 GB mode (speed.low_memory) `runtime.offload` keeps T5 and the
    transformer from sharing the GPU."""
    if request.image is None:
        raise ValueError("this video request has no first frame (image)")
    spec, config, notes = parts.spec, parts.transformer.config, []
    settings, speed, place = request.settings.resolved(parts.release), runtime.speed_for(request.lossy), runtime.place
    prompt, negative_prompt = request.prompt, request.negative_prompt
    dtype = parts.transformer.dtype
    generator = torch.Generator().manual_seed(settings.seed)

    # 1. the first frame (and the end frame, for a start/end-frame model), at the model's size
    image, note = fit_image(request.image, spec.width, spec.height)
    if note:
        notes.append(note)
    end_image = None
    if request.end_image is not None:
        check_end_image(spec, request.image, request.end_image)
        end_image, _ = fit_image(request.end_image, spec.width, spec.height)
        notes.append("the video joins the first and the end frame")
    notes.append(f"solver {settings.scheduler}, guidance {settings.guidance:g}"
                 + (f", dynamic CFG by {settings.cfg_schedule}" if settings.dynamic_cfg else ""))

    # 2. prompt states; in the 24 GB mode T5 (9.5 GB) and the transformer (11 GB) never share the GPU
    encodes_text = isinstance(prompt, str) or isinstance(negative_prompt, str)
    low_memory = speed.low_memory and runtime.offload is not None
    if low_memory and encodes_text:
        runtime.offload(parts.transformer)
    device = place(parts.text_encoder) if encodes_text else None
    states = [encode_prompt(parts.tokenizer, parts.text_encoder, text, spec.text_tokens, device, dtype)
              if isinstance(text, str) else text.to(dtype) for text in (negative_prompt, prompt)]
    if low_memory and encodes_text:
        runtime.offload(parts.text_encoder)
        notes.append("24 GB mode: T5 used alone on the GPU, then offloaded; the VAE decodes in tiles")

    # 3. the given frames' latents in the model's layout, and starting noise
    # CogVideoX 1.5 denoises latent frames in pairs: extra frames go in front and are dropped at the end
    extra_frames = -spec.latent_frames % config.patch_size_t if config.patch_size_t else 0
    latent_frames = spec.latent_frames + extra_frames
    vae_device = place(parts.vae)
    first, last = (None if frame is None else frame.permute(2, 0, 1)[None].to(vae_device, dtype) * 2 - 1
                   for frame in (image, end_image))
    with tiled_vae(parts.vae, speed.low_memory and spec.takes_end_frame):  # an inpaint layout encodes a whole video
        image_latents = conditioning_latents(parts.vae, spec, first, last, latent_frames, generator, dtype)
    previewer = LatentPreviewer.for_vae(parts.vae, spec) if runtime.preview_every else None
    shape = (1, latent_frames, spec.latent_channels, spec.height // spec.spatial_factor,
             spec.width // spec.spatial_factor)
    scheduler = make_scheduler(settings.scheduler, parts.scheduler_config)
    noise = torch.randn(shape, generator=generator, dtype=dtype)
    start, blend = request.start, request.blend
    for guide, what in ((start and start.clean, "start"), (blend and blend.reference, "reference")):
        if guide is not None:
            check_latents(guide, shape, what)
    directors = director_control(parts, request)

    # 4. where the loop starts (pure noise, or part-way from `start`'s latents), then the loop
    device = place(parts.transformer)
    latents, first_step = start_latents(scheduler, noise, start, settings.steps, device, dtype)
    latents = denoise(parts.transformer, scheduler, latents, image_latents.to(device),
                      [s.to(device) for s in states], settings, first_step=first_step, blend=blend,
                      directors=directors, speed=speed, hooks=runtime.hooks,
                      previews=PreviewQueue(previewer, runtime.preview_every, settings.steps - first_step),
                      generator=generator, notes=notes, split=runtime.split)

    # 5. frames (in the 24 GB mode decoded in tiles; encoding the one first frame needs no tiles)
    latents = latents[:, extra_frames:]
    vae_device = place(parts.vae)
    with tiled_vae(parts.vae, speed.low_memory):
        frames = decode_latents(parts.vae, latents.to(vae_device), spec)[0]
    # the VAE decodes an even number of latent frames (CogVideoX-Fun 1.5) with four frames, not one, for the first
    frames = frames[len(frames) - spec.frames:]
    return VideoResult(frames=frames.cpu(), latents=latents.cpu(), fps=FPS, notes=notes)


@torch.no_grad()
def denoise(transformer: torch.nn.Module, scheduler, latents: torch.Tensor, image_latents: torch.Tensor,
            prompt_states: list[torch.Tensor], settings: SamplerSettings, *, first_step: int = 0,
            blend: LatentBlend | None = None, directors: DirectorControl | None = None,
            speed: SpeedOptions = SpeedOptions(), hooks: Hooks = NO_HOOKS, previews: PreviewQueue | None = None,
            generator: torch.Generator | None = None, notes: list[str] | None = None,
            compile_backend: str = "inductor", split: StepSplit = WHOLE_STEPS) -> torch.Tensor:
    """Latents (1, F, C, h, w) at step `first_step` of the schedule (0: pure noise) -> final latents, on the
    transformer's device. prompt_states: the negative and positive T5 states. `scheduler` is one of the solvers'
    (solvers.SOLVERS) and `settings` are resolved (no "auto": settings.resolved(parts.release)). Each step: the
    step guides (directors, then the blend), the model, guidance, the scheduler. The loop makes the host wait for
    the GPU nowhere (DDIM; the DPM solvers draw their noise from the seeded CPU generator, one small upload per
    step; a step cache reads one number per step). `split` shares each step's model calls with other
    processes, which run the same loop."""
    if AUTO in (settings.scheduler, settings.cfg_schedule):
        raise ValueError(f"denoise needs resolved sampler settings, got {settings}: use "
                         "settings.resolved(parts.release)")
    notes = [] if notes is None else notes
    config, device, dtype = transformer.config, latents.device, latents.dtype
    guided = settings.guidance > 1.0
    text_states = torch.cat(prompt_states) if guided else prompt_states[1]
    conditioning = torch.cat([image_latents] * 2) if guided else image_latents
    # the scheduler keeps its timesteps on the CPU: indexing its tables with a GPU value would wait for the GPU
    scheduler.set_timesteps(settings.steps)
    timesteps = scheduler.timesteps[first_step:]
    timesteps_on_device = timesteps.to(device)
    guidance = guidance_scales(settings.guidance, settings.dynamic_cfg, settings.cfg_schedule, scheduler.timesteps)
    rotary = rotary_embeddings(config, latents.shape, device) if config.use_rotary_positional_embeddings else None
    ofs = latents.new_full((1,), 2.0) if config.ofs_embed_dim is not None else None
    solver_step = solver_of(scheduler).step
    old_prediction = None
    shape = attention_shape(config, (2 if guided else 1, *latents.shape[1:]), text_states.shape[1])
    blend = blend.to(device, dtype) if blend is not None else None
    started = time.perf_counter()
    with (speed_applied(transformer, speed, directors, shape, notes, compile_backend) as directors,
          split.applied(transformer, speed)):
        guides = StepGuides(tuple(guide for guide in (directors, blend) if guide is not None))
        for i, t in enumerate(timesteps):
            step = first_step + i  # position in the full schedule: what director schedules and blends refer to
            latents = guides.before_step(step, latents, timesteps_on_device[i], scheduler)
            model_input = torch.cat([latents] * 2) if guided else latents
            model_input = torch.cat([scheduler.scale_model_input(model_input, t), conditioning], dim=2)

            def forward(rows: slice, model_input=model_input, timestep=timesteps_on_device[i]) -> torch.Tensor:
                part = model_input[rows]
                return transformer(hidden_states=part, encoder_hidden_states=text_states[rows],
                                   timestep=timestep.expand(part.shape[0]), ofs=ofs, image_rotary_emb=rotary,
                                   return_dict=False)[0]

            with cache_context(transformer):
                velocity = split.velocity(forward, model_input.shape[0]).float()
            if guided:
                unconditional, conditional = velocity.chunk(2)
                velocity = unconditional + guidance[step] * (conditional - unconditional)
            previous = timesteps[i - 1] if i > 0 else None
            latents, denoised = solver_step(scheduler, velocity, t, previous, latents, old_prediction, settings.eta,
                                            generator)
            old_prediction = denoised
            latents = latents.to(dtype)
            if i == 0 and speed.compile:
                notes.append(f"first step {time.perf_counter() - started:.1f} s on the host (compiling, or loading "
                             "the compiled block from the cache)")
            hooks.step(i + 1, len(timesteps), previews.push(i, denoised) if previews is not None else None)
    return check_denoised(latents, transformer, {"prompt states (T5)": text_states, "image latents": conditioning})
