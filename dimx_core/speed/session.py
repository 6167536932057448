"""Apply the speed options to a shared transformer for one denoising run, in a fixed order, and undo them after."""
from __future__ import annotations

import contextlib

import torch

from ..directors.adapters import DirectorControl
from ..directors.merged import MergedDirectors
from .attention import choose_kernel, fused_qkv, pack_attention
from .compile import set_compiled
from .fp8 import check_fp8, fp8_linears
from .memory import first_block_cache
from .options import SpeedOptions


def attention_shape(config, model_input_shape: tuple[int, ...], text_tokens: int) -> tuple[int, int, int, int]:
    """(batch, heads, tokens, head_dim) of every attention call: text tokens, then one per video patch."""
    batch, frames, _, height, width = model_input_shape
    patch, patch_t = config.patch_size, config.patch_size_t or 1
    tokens = text_tokens + (frames // patch_t) * (height // patch) * (width // patch)
    return batch, config.num_attention_heads, tokens, config.attention_head_dim


@contextlib.contextmanager
def speed_applied(transformer: torch.nn.Module, speed: SpeedOptions, directors: DirectorControl | None,
                  shape: tuple[int, int, int, int], notes: list[str], compile_backend: str = "inductor"):
    """Yields the director control the loop should use (merged into the weights, or switched as adapters).

    Everything is put back when the run ends, interrupted or not (the model is shared by every node and run):
    diffusers' attention processors, q/k/v storage, base weights (bit-exact), linear layers, caches. Compiled
    blocks are the exception: they stay compiled for the next run, because compiling is the slow part.
    """
    device, dtype = transformer.device, transformer.dtype
    with contextlib.ExitStack() as run:
        # 1. attention kernel: the pack's processor in every block, running the chosen kernel
        processors = run.enter_context(pack_attention(transformer))
        kernel, note = choose_kernel(speed.attention, shape, dtype, device)
        for _, processor in processors:
            processor.kernel = kernel
        notes.append(note)

        # 2. fused QKV: one product instead of three, over views of the same weights
        if speed.fuse_qkv:
            notes.append(f"fused QKV projection in {run.enter_context(fused_qkv(processors))} blocks")

        # 3. directors: merged into the weights at each switch, or switched as adapters
        if directors is not None and speed.merge_directors:
            directors = run.enter_context(MergedDirectors(directors))
            notes.append(f"directors merged into {len(directors.layers)} layers while active "
                         "(base weights restored exactly afterwards)")
        elif directors is not None:
            run.callback(directors.release)

        # 4. fp8 products, re-quantised whenever a director switch changes the weights
        if speed.fp8:
            check_fp8(device, dtype)
            refresh = run.enter_context(fp8_linears(transformer, processors))
            if isinstance(directors, MergedDirectors):
                directors.after_switch.append(refresh)
                run.callback(directors.after_switch.remove, refresh)
            notes.append("fp8 (e4m3) products in the transformer blocks' linear layers")

        # 5. regional compile (kept between runs)
        note = set_compiled(transformer, speed.compile, speed.compile_cache, compile_backend)
        if note:
            notes.append(note)

        # 6. step caching
        if speed.step_cache:
            run.enter_context(first_block_cache(transformer, speed.step_cache))
            notes.append(f"first-block step cache, threshold {speed.step_cache:g}")
        yield directors
