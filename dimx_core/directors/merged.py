"""Directors merged into the weights while they are active: a step costs what a plain image-to-video step costs.

An unmerged LoRA adds two thin matrix products to every targeted layer at every step (about 5% of a step for
rank 256 on q/k/v/out). Merged, the schedule's switch rewrites each targeted weight in place, once:
W <- round(W + sum(new deltas) - sum(old deltas)), with the deltas computed in fp32 from the adapters' own A and
B. No weights are copied per director.

Restoring exactly: subtracting a delta again does not give the bf16 base weights back (rounding W + d to bf16
discards the low bits of small weights for good, see the tests), and a residue that would restore them must hold
up to a full bf16 value for weights smaller than their delta, which is as large as the weights themselves. So the
run keeps one copy of the targeted layers' base weights in host memory (for CogVideoX-5b's 168 attention layers
1.59 G parameters, 3.2 GB of RAM, no GPU memory) and copies it back when the run ends.
"""
from __future__ import annotations

from typing import Callable

import torch

from .adapters import DirectorControl, activate, lora_layers


class MergedDirectors:
    """The same schedule as `control`, applied by merging instead of switching adapters (a step guide of the
    denoising loop, as DirectorControl is). Use as a context:
    entering keeps the host copy of the targeted weights and turns every adapter off; leaving restores them."""

    def __init__(self, control: DirectorControl):
        self.control = control
        adapters = {director.adapter_name for director in control.by_name.values()}
        tuners = set(lora_layers(control.transformer))
        self.layers = {name: layer for name, layer in control.transformer.named_modules()
                       if layer in tuners and adapters & set(layer.lora_A)}
        # the weights themselves, held from the start: other steps of a run may stand in for the layers (fp8)
        self.weights = {name: layer.get_base_layer().weight for name, layer in self.layers.items()}
        self.after_switch: list[Callable[[], None]] = []  # e.g. fp8 copies of the weights re-quantised
        self._base: dict[str, torch.Tensor] = {}
        self._merged: dict[str, float] = {}

    def __enter__(self) -> "MergedDirectors":
        activate(self.control.transformer, {})
        self._base = {name: weight.detach().to("cpu", copy=True) for name, weight in self.weights.items()}
        return self

    def __exit__(self, *exc) -> None:
        self.release()
        self._base = {}

    def apply(self, step: int) -> None:
        wanted = self.control.strengths_at(step)
        if wanted == self._merged:
            return
        if not wanted:
            self._restore()
        else:
            net = {adapter: wanted.get(adapter, 0.0) - self._merged.get(adapter, 0.0)
                   for adapter in {*wanted, *self._merged}}
            net = {adapter: strength for adapter, strength in net.items() if strength != 0.0}
            for name, layer in self.layers.items():
                change = _delta(layer, net)
                if change is not None:
                    weight = self.weights[name]
                    weight.copy_((weight.float() + change).to(weight.dtype))
        self._merged = wanted
        for refresh in self.after_switch:
            refresh()

    def before_step(self, step: int, latents: torch.Tensor, timestep: torch.Tensor, scheduler) -> torch.Tensor:
        self.apply(step)
        return latents

    def release(self) -> None:
        """Leave the shared transformer bit-exactly as the base model."""
        if self._merged:
            self._restore()
            self._merged = {}
            for refresh in self.after_switch:
                refresh()

    def _restore(self) -> None:
        for name, weight in self.weights.items():
            weight.copy_(self._base[name])


def _delta(layer, strengths: dict[str, float]) -> torch.Tensor | None:
    """sum(strength * alpha / rank * B @ A) over the adapters this layer carries, in fp32 (None: it carries none).
    strength 1.0 = as trained; negative strengths take a merged director out again."""
    total = None
    for adapter, strength in strengths.items():
        if adapter not in layer.lora_A:
            continue
        scale = strength * layer.lora_alpha[adapter] / layer.r[adapter]
        product = layer.lora_B[adapter].weight.float() @ layer.lora_A[adapter].weight.float()
        total = product.mul_(scale) if total is None else total.add_(product, alpha=scale)
    return total
