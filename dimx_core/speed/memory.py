"""The 24 GB mode's VAE side, and diffusers' first-block cache, each for one run of a shared model."""
from __future__ import annotations

import contextlib

import torch

from ..optional import require


@contextlib.contextmanager
def tiled_vae(vae: torch.nn.Module, enabled: bool):
    """Decode in overlapping tiles (diffusers' VAE tiling, blended at the seams) while `enabled`: decoding
    49 x 480 x 720 frames untiled needs more memory than a denoising step. Tiles are an approximation (each tile's
    group norms see only the tile); the GPU bench reports the difference at full size. Along time, diffusers decodes
    CogVideoX latents a few frames at a time in both modes (3, then 2 latent frames per decoder call, the causal
    convolutions' cache carried across), as SAT's sample_video.py does: a 145-frame video (37 latent frames, 18
    calls) needs no more decoder memory than a 49-frame one (tests/unit/test_frames_145.py). (Slicing, diffusers'
    other switch, splits batches: a run decodes one video, so it would change nothing.)"""
    if not enabled or vae.use_tiling:
        yield
        return
    chosen = vae.tile_overlap_factor_height, vae.tile_overlap_factor_width
    vae.enable_tiling(tile_overlap_factor_height=_whole_latent_pixels(vae.tile_latent_min_height, chosen[0]),
                      tile_overlap_factor_width=_whole_latent_pixels(vae.tile_latent_min_width, chosen[1]))
    try:
        yield
    finally:
        vae.disable_tiling()
        vae.tile_overlap_factor_height, vae.tile_overlap_factor_width = chosen


def _whole_latent_pixels(tile_latent: int, factor: float) -> float:
    """An overlap of whole latent pixels. diffusers steps through tiles in latent pixels but crops the decoded
    tiles in image pixels; the two agree only if the overlap is whole latent pixels (CogVideoX's own 1/6 and 1/5 of
    30 x 45 are; for other sizes the decoded video would come out a few pixels too large)."""
    return max(1, round(tile_latent * factor)) / tile_latent


@contextlib.contextmanager
def first_block_cache(transformer: torch.nn.Module, threshold: float):
    """diffusers' FirstBlockCache for one run: when the first block's residual changed by less than `threshold`
    (relative mean absolute difference) since the last full step, the other blocks are skipped and their last
    residual is reused. Deciding reads one number from the GPU per step."""
    hooks = require("diffusers.hooks", "step caching")
    if not (hasattr(hooks, "FirstBlockCacheConfig") and hasattr(transformer, "enable_cache")):
        raise ValueError("step caching needs diffusers 0.35 or newer (FirstBlockCache); update diffusers or set "
                         "step_cache to 0")
    transformer.enable_cache(hooks.FirstBlockCacheConfig(threshold=threshold))
    try:
        yield
    finally:
        transformer.disable_cache()


def cache_context(transformer: torch.nn.Module):
    """diffusers' caches keep their state per named call; the guided batch is one call, as in diffusers' pipeline."""
    if hasattr(transformer, "cache_context"):
        return transformer.cache_context("cond_uncond")
    return contextlib.nullcontext()
