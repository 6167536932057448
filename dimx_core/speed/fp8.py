"""fp8 matrix products for the transformer blocks' linear layers (Ada and Hopper GPUs), as a lossy option.

Weights are quantised to float8 e4m3 with one scale per output row when a run starts (and again after a
director switch changes them); activations are quantised per token on the fly; the product runs through
`torch._scaled_mm` on the fp8 tensor cores and comes back in bf16. This is torchao's "float8 dynamic activation,
float8 weight, per-row" recipe written against torch alone, because torchao's wheels are tied to one torch
version and the pack must run on whatever torch ComfyUI has. The bf16 weights stay as they are (the model is
shared); the fp8 copies live for one run: about 4.6 GB more GPU memory for CogVideoX-5b.
"""
from __future__ import annotations

import contextlib

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = torch.finfo(FP8).max  # 448
BLOCK_LINEARS = ("attn1.to_q", "attn1.to_k", "attn1.to_v", "attn1.to_out.0", "ff.net.0.proj", "ff.net.2")


def quantize_rowwise(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """t (rows, k) -> (fp8 values, fp32 scale per row (rows, 1)), with t ~= values * scale."""
    amax = t.abs().amax(dim=-1, keepdim=True).float().clamp_(min=torch.finfo(torch.float32).tiny)
    scale = (amax / FP8_MAX).to(t.dtype)  # divided in t's dtype below, so this exact value is the scale
    values = (t / scale).clamp_(-FP8_MAX, FP8_MAX).to(FP8)
    return values, scale.float()


def dequantize(values: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return values.float() * scale


def fp8_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale_row: torch.Tensor,
               bias: torch.Tensor | None) -> torch.Tensor:
    """x (..., k) @ dequantised weight (n, k)^T + bias on the fp8 tensor cores. weight_scale_row: (1, n) fp32."""
    rows = x.reshape(-1, x.shape[-1])
    values, scale = quantize_rowwise(rows)
    out = torch._scaled_mm(values, weight.t(), scale_a=scale, scale_b=weight_scale_row, out_dtype=x.dtype)
    if bias is not None:
        out = out + bias
    return out.reshape(*x.shape[:-1], out.shape[-1])


def fp8_linear_reference(x: torch.Tensor, weight: torch.Tensor, weight_scale_row: torch.Tensor,
                         bias: torch.Tensor | None) -> torch.Tensor:
    """The same product from dequantised operands in fp32: what `fp8_linear` must equal up to its bf16 output."""
    rows = x.reshape(-1, x.shape[-1])
    out = dequantize(*quantize_rowwise(rows)) @ dequantize(weight, weight_scale_row.t()).t()
    if bias is not None:
        out = out + bias.float()
    return out.to(x.dtype).reshape(*x.shape[:-1], out.shape[-1])


class Fp8Linear(torch.nn.Module):
    """Stands in for a linear layer for one run; `source` is the layer's (possibly director-merged) weight."""

    def __init__(self, source: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        # detached aliases, not parameters: the stand-in must not register the layer's weights a second time
        self.source = source.detach()
        self.bias = bias.detach() if bias is not None else None
        self.out_features, self.in_features = source.shape
        self.refresh()

    def refresh(self) -> None:
        values, scale = quantize_rowwise(self.source.detach())
        self.weight_fp8, self.weight_scale_row = values, scale.reshape(1, -1).contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fp8_linear(x, self.weight_fp8, self.weight_scale_row, self.bias)


def check_fp8(device: torch.device, dtype: torch.dtype) -> None:
    """Refuse early, with the reason, where fp8 products cannot run."""
    if dtype != torch.bfloat16:
        raise ValueError(f"fp8 needs the model in bf16 (its products return bf16); this model is {dtype}. "
                         "Load it with precision bf16, or turn fp8 off.")
    if device.type == "cuda" and torch.cuda.get_device_capability(device) < (8, 9):
        name = torch.cuda.get_device_name(device)
        raise ValueError(f"fp8 needs an Ada or Hopper GPU (compute capability 8.9 or newer); {name} is "
                         f"{'.'.join(map(str, torch.cuda.get_device_capability(device)))}. Turn fp8 off.")
    probe = torch.ones(16, 16, device=device, dtype=dtype)
    try:
        fp8_linear(probe, quantize_rowwise(probe)[0], torch.ones(1, 16, device=device), None)
    except (RuntimeError, NotImplementedError) as err:
        raise ValueError(f"fp8 products do not run on {device} with this torch {torch.__version__} "
                         f"({str(err).splitlines()[0]}). Turn fp8 off.") from err


@contextlib.contextmanager
def fp8_linears(transformer: torch.nn.Module, fused: list):
    """Swap every block's linear layers (and fused QKV projections, `fused` = the processors holding one) for
    fp8 stand-ins for one run; yields a function that re-quantises them all (after weights change)."""
    swapped, replaced = [], []
    try:
        for block in transformer.transformer_blocks:
            fused_here = any(p.qkv is not None for attn, p in fused if attn is block.attn1)
            for path in BLOCK_LINEARS:
                if fused_here and path in BLOCK_LINEARS[:3]:
                    continue
                parent_path, _, name = path.rpartition(".")
                parent = block.get_submodule(parent_path)
                layer = parent._modules[name]
                if hasattr(layer, "base_layer"):  # a PEFT wrapper: its adapters keep working on top
                    parent, name, layer = layer, "base_layer", layer.base_layer
                parent._modules[name] = Fp8Linear(layer.weight, layer.bias)
                swapped.append((parent, name, layer))
        for attn, processor in fused:
            if processor.qkv is not None:
                replaced.append((processor, processor.qkv))
                processor.qkv = Fp8Linear(processor.qkv.weight, processor.qkv.bias)
        stand_ins = [parent._modules[name] for parent, name, _ in swapped] + [p.qkv for p, _ in replaced]

        def refresh() -> None:
            for stand_in in stand_ins:
                stand_in.refresh()

        yield refresh
    finally:
        for parent, name, layer in swapped:
            parent._modules[name] = layer
        for processor, original in replaced:
            processor.qkv = original
