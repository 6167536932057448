"""A tiny start/end-frame (CogVideoX-Fun InP layout) model *trained* for one test: colour fades.

The random tiny models cannot show that an end image pulls the last frame toward it (their VAE does not
reconstruct). This test asset is trained once per recipe, into the test cache: a small AutoencoderKLCogVideoX to
reconstruct 9-frame, 32x16 clips of solid colours fading from one colour to another, then a small InP transformer
to denoise those clips' latents given the pack's own conditioning (video.conditioning.inpaint_latents) of their
first and last frames, or of the first frame alone, under the pack's training loss (training.trainer.director_loss).
It is trained for nothing else and is not a model of anything; it is never shipped to users.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import torch

from dimx_core.optional import require
from dimx_core.tiny import FUN_PIPELINE, TINY_T5, TINY_TRANSFORMER, new_model_folder, write_model_folder
from dimx_core.training import trainer
from dimx_core.video import conditioning
from dimx_core.video.components import load_diffusers_folder
from dimx_core.video.solvers import make_scheduler

WIDTH, HEIGHT, FRAMES, LATENT_CHANNELS, TEXT_TOKENS = 32, 16, 9, 4, 16
PROMPT = "a colour fade"
VAE = dict(in_channels=3, out_channels=3, down_block_types=["CogVideoXDownBlock3D"] * 4,
           up_block_types=["CogVideoXUpBlock3D"] * 4, block_out_channels=[4, 4, 8, 8], latent_channels=LATENT_CHANNELS,
           layers_per_block=1, act_fn="silu", norm_eps=1.0, norm_num_groups=4, temporal_compression_ratio=4,
           sample_height=HEIGHT, sample_width=WIDTH, scaling_factor=0.7, force_upcast=True, use_quant_conv=False,
           use_post_quant_conv=False, invert_scale_latents=False)
TRANSFORMER = dict(TINY_TRANSFORMER, in_channels=2 * LATENT_CHANNELS + 1, out_channels=LATENT_CHANNELS,
                   sample_height=HEIGHT // 8, sample_width=WIDTH // 8, sample_frames=FRAMES,
                   max_text_seq_length=TEXT_TOKENS)
# steps, batch, learning rate of each stage; clips the transformer learns from; share given only the first frame
RECIPE = dict(vae=(400, 4, 3e-3), transformer=(2500, 16, 2e-3), clips=96, first_only=0.25, seed=0)


def fade_clips(start: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """(N, 3, FRAMES, HEIGHT, WIDTH) in -1..1: solid colours going linearly from start to end ((N, 3) in 0..1)."""
    weight = torch.linspace(0, 1, FRAMES).view(1, 1, FRAMES, 1, 1)
    colours = start.view(-1, 3, 1, 1, 1) * (1 - weight) + end.view(-1, 3, 1, 1, 1) * weight
    return (colours.expand(-1, -1, -1, HEIGHT, WIDTH) * 2 - 1).contiguous()


def solid_image(colour) -> torch.Tensor:
    """(HEIGHT, WIDTH, 3) in 0..1: one colour, as the sampler takes an image."""
    return torch.tensor(colour, dtype=torch.float32).expand(HEIGHT, WIDTH, 3).clone()


def _train_vae(vae, generator: torch.Generator) -> None:
    steps, batch, rate = RECIPE["vae"]
    optimizer = torch.optim.Adam(vae.parameters(), lr=rate)
    # warm up, then anneal: a constant rate leaves the reconstruction noisy from one step to the next
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=rate, total_steps=steps, pct_start=0.15)
    for _ in range(steps):
        clips = fade_clips(torch.rand(batch, 3, generator=generator), torch.rand(batch, 3, generator=generator))
        latents = vae.encode(clips).latent_dist.mode()
        # the mode is decoded (sampling its noise slows learning down); a small penalty keeps the latents of order 1
        loss = torch.nn.functional.mse_loss(vae.decode(latents).sample, clips) + 1e-3 * latents.pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()


def _train_transformer(parts, generator: torch.Generator) -> None:
    spec, transformer = parts.spec, parts.transformer
    steps, batch, rate = RECIPE["transformer"]
    count = RECIPE["clips"]
    with torch.no_grad():
        clips = fade_clips(torch.rand(count, 3, generator=generator), torch.rand(count, 3, generator=generator))
        latents = parts.vae.encode(clips).latent_dist.mode().permute(0, 2, 1, 3, 4) * spec.vae_scaling_factor
        given = {}
        for name, last in (("both", clips[:, :, -1]), ("first", None)):
            video, known = conditioning.given_frames(clips[:, :, 0], last, FRAMES)
            given[name] = conditioning.inpaint_latents(parts.vae, video, known, spec, torch.float32)
        prompt = conditioning.encode_prompt(parts.tokenizer, parts.text_encoder, PROMPT, spec.text_tokens,
                                            torch.device("cpu"), torch.float32)
    scheduler = make_scheduler("ddim", parts.scheduler_config)
    transformer.train().requires_grad_(True)
    parameters = list(transformer.parameters())
    optimizer = torch.optim.AdamW(parameters, lr=rate, weight_decay=0.0)
    with torch.enable_grad():
        for _ in range(steps):
            rows = torch.randint(count, (batch,), generator=generator)
            first_only = torch.rand(batch, generator=generator) < RECIPE["first_only"]
            image_latents = torch.where(first_only.view(-1, 1, 1, 1, 1), given["first"][rows], given["both"][rows])
            noise = torch.randn(latents[rows].shape, generator=generator)
            timesteps = torch.randint(scheduler.config.num_train_timesteps, (batch,), generator=generator)
            loss = trainer.director_loss(transformer, scheduler, latents[rows], noise, timesteps, image_latents,
                                         prompt.expand(batch, -1, -1))
            trainer.optimizer_step(loss, parameters, optimizer, 1.0)
    transformer.eval().requires_grad_(False)


def recipe_key() -> str:
    """Changes whenever this recipe or the pack code it trains through changes."""
    sources = (Path(__file__), Path(conditioning.__file__), Path(trainer.__file__))
    return hashlib.sha1(b"".join(path.read_bytes() for path in sources) + json.dumps(
        [RECIPE, VAE, TRANSFORMER, torch.__version__]).encode()).hexdigest()[:16]


def ensure_fade_model(cache: Path) -> Path:
    """The trained fade model's diffusers folder in `cache`, built (a few minutes on 2 cores) when absent."""
    folder = Path(cache) / f"fade-inp-{recipe_key()}"
    if folder.is_dir():
        return folder
    for stale in Path(cache).glob("fade-inp-*"):  # built by an older recipe
        shutil.rmtree(stale)
    building = folder.with_name(f".{folder.name}.building")
    shutil.rmtree(building, ignore_errors=True)
    diffusers, transformers = require("diffusers"), require("transformers")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and fair to the other tests sharing the cores
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RECIPE["seed"])
            generator = torch.Generator().manual_seed(RECIPE["seed"])
            out, vocab = new_model_folder(building)
            vae = diffusers.AutoencoderKLCogVideoX(**VAE)
            _train_vae(vae, generator)
            text_encoder = transformers.T5EncoderModel(transformers.T5Config(vocab_size=vocab, **TINY_T5))
            write_model_folder(out, diffusers.CogVideoXTransformer3DModel(**TRANSFORMER), vae.eval(), text_encoder,
                               FUN_PIPELINE, readme=__doc__)
            parts = load_diffusers_folder(out, dtype=torch.float32)
            _train_transformer(parts, generator)
            parts.transformer.save_pretrained(out / "transformer", safe_serialization=True)
    finally:
        torch.set_num_threads(threads)
    building.rename(folder)
    return folder
