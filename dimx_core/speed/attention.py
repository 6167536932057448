"""The attention of the CogVideoX blocks: which kernel runs it, and a fused QKV projection.

diffusers' CogVideoX processors call `F.scaled_dot_product_attention` directly (no dispatch hook) and its fused
processor reads only `to_qkv`, silently skipping LoRA adapters on to_q/to_k/to_v. So the pack installs its own
processor for a run: the same arithmetic as `CogVideoXAttnProcessor2_0` (a test pins it bit for bit), with the
kernel as a choice and a fused projection that steps aside while unmerged adapters are active on q/k/v.
"""
from __future__ import annotations

import contextlib
import importlib
import weakref
from dataclasses import dataclass
from typing import Callable, Protocol

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..optional import is_installed, require

SDPA_BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                 "efficient": SDPBackend.EFFICIENT_ATTENTION}


Kernel = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (B, heads, tokens, head_dim) each


@dataclass(frozen=True)
class TokensMajorFlash:
    """A FlashAttention-style `flash_attn_func`, which takes (B, tokens, heads, head_dim) and may return (out, lse)."""
    function: Callable

    def __call__(self, query, key, value):
        out = self.function(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), causal=False)
        return (out[0] if isinstance(out, tuple) else out).transpose(1, 2)


@dataclass(frozen=True)
class SageAttention:
    function: Callable

    def __call__(self, query, key, value):
        return self.function(query, key, value, tensor_layout="HND", is_causal=False)


@dataclass(frozen=True)
class OptionalKernel:
    """A kernel from a package the pack does not require: where it lives, how to call it, what to install."""
    module: str
    function: str
    wrapper: Callable[[Callable], Kernel]
    what: str
    lossless: bool  # equals SDPA's result up to rounding, so 'auto' may choose it


OPTIONAL_KERNELS = {
    "fa3": OptionalKernel("flash_attn_interface", "flash_attn_func", TokensMajorFlash,
                          "FlashAttention-3 (build flash-attention's hopper/ folder; Hopper GPUs only)", True),
    # FlashAttention-4 is written in CUTLASS's CuTe DSL and compiled on first call; it has SM90 and SM100 paths.
    "fa4": OptionalKernel("flash_attn.cute", "flash_attn_func", TokensMajorFlash,
                          "FlashAttention-4 (pip install flash-attn-4 'nvidia-cutlass-dsl[cu13]'; Hopper and "
                          "Blackwell GPUs)", True),
    "sage": OptionalKernel("sageattention", "sageattn", SageAttention,
                           "SageAttention (pip install sageattention); lossy: 8-bit Q·K, fp8 P·V", False),
}


class SequenceShards(Protocol):
    """A video's tokens split among processes (distributed.parallel): each holds the text and a run of the video."""

    def local_rotary(self, rotary: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The rows of the whole video's RoPE tables (cos, sin) that belong to this process's tokens."""

    def attend(self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, text_tokens: int,
               kernel: Kernel) -> torch.Tensor:
        """Attention of this process's tokens (B, heads, text + local video, head_dim) over every process's."""


def sdpa(query, key, value):
    return F.scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False)


@dataclass(frozen=True)
class SdpaBackend:
    """SDPA restricted to one backend: it runs, or says why not (no silent fallback to another one)."""
    backend: SDPBackend

    def __call__(self, query, key, value):
        with sdpa_kernel([self.backend]):
            return sdpa(query, key, value)


# One object per kernel for the process: a compiled block guards on the kernel it was traced with.
_KERNELS: dict[str, Kernel] = {"sdpa": sdpa, **{name: SdpaBackend(b) for name, b in SDPA_BACKENDS.items()}}


def kernel_named(name: str) -> Kernel:
    """The kernel called `name`; optional ones are imported here, before any tracing sees them."""
    if name not in _KERNELS:
        row = OPTIONAL_KERNELS[name]
        _KERNELS[name] = row.wrapper(getattr(importlib.import_module(row.module), row.function))
    return _KERNELS[name]


def installed(name: str) -> bool:
    return is_installed(OPTIONAL_KERNELS[name].module)


# --- choosing a kernel ---------------------------------------------------------------------------------------------

_MEASURED: dict[tuple, dict[str, float | str]] = {}


def _probe(kernel: Kernel, inputs: tuple[torch.Tensor, ...], repeats: int) -> tuple[float, torch.Tensor]:
    """(milliseconds per call, output) on `inputs`, timed with CUDA events after one warm-up call."""
    out = kernel(*inputs)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(repeats):
        kernel(*inputs)
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / repeats, out


def measure_kernels(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device,
                    names: tuple[str, ...] | None = None, repeats: int = 2) -> dict[str, float | str]:
    """Time every lossless kernel that runs here on attention inputs of `shape`: name -> ms, or why it cannot run
    (it refuses these inputs, or its result disagrees with the others'). Remembered per shape: measured once.

    The inputs are random, in the run's memory layout (heads interleaved per token, as the processor's views of
    the projections are)."""
    key = (tuple(shape), dtype, str(device), names)
    if key not in _MEASURED:
        candidates = names or (*SDPA_BACKENDS, *(n for n, row in OPTIONAL_KERNELS.items()
                                                 if row.lossless and installed(n)))
        generator = torch.Generator(device=device).manual_seed(0)
        batch, heads, tokens, head_dim = shape
        inputs = tuple(torch.randn(batch, tokens, heads, head_dim, generator=generator, device=device,
                                   dtype=dtype).transpose(1, 2) for _ in range(3))
        found: dict[str, float | str] = {}
        outputs: dict[str, torch.Tensor] = {}
        for name in candidates:
            try:
                found[name], outputs[name] = _probe(kernel_named(name), inputs, repeats)
            except (RuntimeError, ImportError, TypeError) as err:  # a backend that refuses these inputs
                found[name] = f"cannot run here ({str(err).splitlines()[0][:120]})"
        reference = next((outputs[n] for n in ("flash", "efficient") if n in outputs), None)
        for name, out in outputs.items():
            error = _relative_error(out, reference) if reference is not None else 0.0
            if error > 2e-2:  # bf16 kernels agree to ~1e-3
                found[name] = f"cannot be trusted here (differs from flash/efficient attention by {error:.1e})"
        _MEASURED[key] = found
    return _MEASURED[key]


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def choose_kernel(choice: str, shape: tuple[int, ...], dtype: torch.dtype,
                  device: torch.device) -> tuple[Kernel, str]:
    """The kernel for `choice` (speed.options.ATTENTION_CHOICES) and a line saying what runs and why."""
    if choice == "sdpa" or (choice == "auto" and device.type != "cuda"):
        return sdpa, "attention: PyTorch SDPA, its own backend choice"
    if choice in OPTIONAL_KERNELS and not installed(choice):
        row = OPTIONAL_KERNELS[choice]
        raise ValueError(f"attention '{choice}' needs {row.what}, but '{row.module}' is not installed. Install it, or choose "
                         "'auto' (the fastest kernel PyTorch has here).")
    if device.type != "cuda":
        raise ValueError(f"attention '{choice}' runs on CUDA GPUs only; this run is on {device.type}. Choose 'auto'.")
    if choice != "auto":
        timing = measure_kernels(shape, dtype, device, names=(choice,), repeats=1)[choice]
        if isinstance(timing, str):
            raise ValueError(f"attention '{choice}' {timing}. Choose 'auto'.")
        lossy = "" if choice not in OPTIONAL_KERNELS or OPTIONAL_KERNELS[choice].lossless else " (lossy)"
        return kernel_named(choice), f"attention: {choice}{lossy}, as chosen ({timing:.1f} ms per call)"
    timings = measure_kernels(shape, dtype, device)
    usable = {name: ms for name, ms in timings.items() if not isinstance(ms, str)}
    if not usable:
        return sdpa, "attention: PyTorch SDPA (no faster backend runs here: " + "; ".join(
            f"{n} {why}" for n, why in timings.items()) + ")"
    best = min(usable, key=usable.get)
    measured = ", ".join(f"{n} {ms:.1f} ms" for n, ms in sorted(usable.items(), key=lambda item: item[1]))
    return kernel_named(best), f"attention: {best}, the fastest measured here per call ({measured})"


def describe_kernels() -> list[str]:
    """What a user can choose on this machine, for `dimx speed-info`."""
    lines = []
    if torch.cuda.is_available():
        lines.append("SDPA backends: " + ", ".join(f"{name} ({'on' if _backend_enabled(b) else 'off'})"
                                                  for name, b in SDPA_BACKENDS.items()))
    else:
        lines.append("SDPA backends: CPU only (cudnn/flash/efficient need a CUDA GPU)")
    for name, row in OPTIONAL_KERNELS.items():
        state = "installed" if installed(name) else "not installed"
        lines.append(f"{name}: {state} - {row.what}{'' if row.lossless else ' (never chosen by auto)'}")
    return lines


def _backend_enabled(backend: SDPBackend) -> bool:
    return {SDPBackend.CUDNN_ATTENTION: torch.backends.cuda.cudnn_sdp_enabled,
            SDPBackend.FLASH_ATTENTION: torch.backends.cuda.flash_sdp_enabled,
            SDPBackend.EFFICIENT_ATTENTION: torch.backends.cuda.mem_efficient_sdp_enabled}[backend]()


# --- the processor -------------------------------------------------------------------------------------------------

@dataclass
class FusedLinear:
    """q, k and v in one product: `weight` is (3 * inner, dim), and to_q/to_k/to_v's weights are views of it."""
    weight: torch.Tensor
    bias: torch.Tensor | None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight, self.bias)


def _lora_active(layer: torch.nn.Module) -> bool:
    """Unmerged PEFT adapters are running on this layer (their product is added to the base layer's)."""
    return (bool(getattr(layer, "active_adapters", None)) and not getattr(layer, "disable_adapters", False)
            and not getattr(layer, "merged", False))


class PackAttention:
    """CogVideoX's joint text-video attention as `CogVideoXAttnProcessor2_0` computes it, with the kernel and the
    fused projection as choices. Holds no reference to its module (see `pack_attention`)."""

    def __init__(self):
        self.kernel: Kernel = sdpa
        self.qkv: Callable[[torch.Tensor], torch.Tensor] | None = None
        # while a video's tokens are split among processes (distributed.parallel.SequenceShards): this process's
        # rows of the rotary tables, and the attention over every process's tokens
        self.sequence: SequenceShards | None = None
        # looked up once here: an import inside the call would break a compiled block's graph
        self.apply_rotary_emb = require("diffusers.models.embeddings").apply_rotary_emb

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None):
        if attention_mask is not None:
            raise ValueError("CogVideoX's joint attention takes no mask; the pack's processor does not apply one")
        text_seq_length = encoder_hidden_states.size(1)
        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        batch_size = hidden_states.shape[0]

        if self.qkv is not None and not any(_lora_active(getattr(attn, n)) for n in ("to_q", "to_k", "to_v")):
            query, key, value = self.qkv(hidden_states).chunk(3, dim=-1)
        else:
            query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:
            if self.sequence is not None:
                image_rotary_emb = self.sequence.local_rotary(image_rotary_emb)
            query[:, :, text_seq_length:] = self.apply_rotary_emb(query[:, :, text_seq_length:], image_rotary_emb)
            if not attn.is_cross_attention:
                key[:, :, text_seq_length:] = self.apply_rotary_emb(key[:, :, text_seq_length:], image_rotary_emb)

        if self.sequence is None:
            hidden_states = self.kernel(query, key, value)
        else:
            hidden_states = self.sequence.attend(query, key, value, text_seq_length, self.kernel)
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = attn.to_out[1](attn.to_out[0](hidden_states))
        encoder_hidden_states, hidden_states = hidden_states.split(
            [text_seq_length, hidden_states.size(1) - text_seq_length], dim=1)
        return hidden_states, encoder_hidden_states


# One processor per attention module for the module's lifetime, so a compiled block finds the same objects in
# every run (torch.compile guards on them) and is not traced again.
_PROCESSORS: "weakref.WeakKeyDictionary[torch.nn.Module, PackAttention]" = weakref.WeakKeyDictionary()


def attention_modules(transformer: torch.nn.Module) -> list[torch.nn.Module]:
    return [block.attn1 for block in transformer.transformer_blocks]


def pack_processors(transformer: torch.nn.Module) -> list[PackAttention]:
    """The pack's processor of every block (installed in the blocks only while `pack_attention` runs)."""
    return [_PROCESSORS.setdefault(attn, PackAttention()) for attn in attention_modules(transformer)]


@contextlib.contextmanager
def pack_attention(transformer: torch.nn.Module):
    """The pack's processor in every block for one run; diffusers' own processors are put back afterwards."""
    pairs, originals = [], []
    for attn, processor in zip(attention_modules(transformer), pack_processors(transformer)):
        originals.append(attn.processor)
        attn.set_processor(processor)
        pairs.append((attn, processor))
    try:
        yield pairs
    finally:
        for (attn, processor), original in zip(pairs, originals):
            processor.kernel, processor.qkv, processor.sequence = sdpa, None, None
            attn.set_processor(original)


def base_linear(layer: torch.nn.Module) -> torch.nn.Linear:
    """The plain Linear under a PEFT LoRA wrapper (or the layer itself)."""
    return getattr(layer, "base_layer", layer)


@contextlib.contextmanager
def fused_qkv(pairs: list[tuple[torch.nn.Module, PackAttention]]):
    """For one run, q/k/v weights become views of one (3 * inner, dim) tensor and the processor projects once.

    No weight is held twice: the three layers keep their parameters (LoRA adapters, merges and the host's memory
    manager see them as before), only their storage is shared; afterwards each gets storage of its own again.
    """
    fused = []
    try:
        for attn, processor in pairs:
            layers = [base_linear(getattr(attn, name)) for name in ("to_q", "to_k", "to_v")]
            if len({layer.weight.shape for layer in layers}) != 1:
                continue
            weight = torch.cat([layer.weight.detach() for layer in layers])
            has_bias = all(layer.bias is not None for layer in layers)
            bias = torch.cat([layer.bias.detach() for layer in layers]) if has_bias else None
            for index, layer in enumerate(layers):
                layer.weight.data = weight.chunk(3)[index]
                if has_bias:
                    layer.bias.data = bias.chunk(3)[index]
            processor.qkv = FusedLinear(weight, bias)
            fused.append((processor, layers))
        yield len(fused)
    finally:
        for processor, layers in fused:
            processor.qkv = None
            for layer in layers:
                layer.weight.data = layer.weight.data.clone()
                if layer.bias is not None:
                    layer.bias.data = layer.bias.data.clone()
