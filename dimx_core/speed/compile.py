"""Regional torch.compile of the transformer block, with the compile cache kept in a folder of the user's.

All 42 CogVideoX blocks have one structure, so compiling the block once (diffusers' `compile_repeated_blocks`)
costs a fraction of compiling the whole model and gives the same speed. Compiled blocks stay compiled between
runs (compiling is the slow part); a run without the option puts the plain call back.
"""
from __future__ import annotations

import os
import weakref

import torch

# The user's own choice, read when the pack is imported (before anything compiles): it wins over the pack's folder.
_USER_CACHE_DIR = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
_BACKEND: "weakref.WeakKeyDictionary[torch.nn.Module, str]" = weakref.WeakKeyDictionary()


def _use_cache_dir(folder: str | None) -> str:
    """Point inductor's on-disk cache (compiled graphs and Triton kernels) at `folder` unless the user chose one."""
    if folder and not _USER_CACHE_DIR:
        os.makedirs(folder, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = folder
    return os.environ.get("TORCHINDUCTOR_CACHE_DIR") or "torch's default folder"


def is_compiled(transformer: torch.nn.Module) -> bool:
    return transformer in _BACKEND


def set_compiled(transformer: torch.nn.Module, on: bool, cache_dir: str | None = None,
                 backend: str = "inductor") -> str | None:
    """Compile the blocks (once; kept for later runs) or put their plain call back. Returns a line for the notes.

    backend: torch.compile's backend; the tests use "aot_eager" to check tracing without generating kernels.
    """
    blocks = list(transformer.transformer_blocks)
    if not on or _BACKEND.get(transformer, backend) != backend:
        for block in blocks:
            block._compiled_call_impl = None  # what nn.Module.compile() sets; None is the plain call
        _BACKEND.pop(transformer, None)
    if not on:
        return None
    folder = _use_cache_dir(cache_dir)
    if transformer not in _BACKEND:
        if hasattr(transformer, "compile_repeated_blocks"):
            transformer._repeated_blocks = [type(blocks[0]).__name__]  # CogVideoX does not list its block class
            transformer.compile_repeated_blocks(dynamic=False, backend=backend)
        else:  # diffusers before 0.35: the same, block by block
            for block in blocks:
                block.compile(dynamic=False, backend=backend)
        _BACKEND[transformer] = backend
    return (f"compiled the transformer block ({len(blocks)} blocks, torch.compile {backend}); "
            f"the first step compiles or loads it from the cache in {folder}")
