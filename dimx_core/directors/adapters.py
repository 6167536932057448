"""Attach director LoRAs to the transformer as named PEFT adapters and switch them per step.

All directors stay resident together; switching changes which adapters each LoRA layer uses and their
scale, so it costs no reload from disk and no copy of weights.
"""
from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass

import torch

from ..optional import require
from .compatibility import compatibility
from .formats import LoraFile
from .schedule import DirectorSchedule

ROLES = ("S", "T")
log = logging.getLogger("dimensionx")


@dataclass(frozen=True)
class Director:
    """A director LoRA as the graph names it. strength 1.0 = as trained."""
    name: str
    role: str
    strength: float
    lora: LoraFile

    def __post_init__(self) -> None:
        if isinstance(self.strength, bool) or not isinstance(self.strength, (int, float)) \
                or not math.isfinite(self.strength):
            raise ValueError(f"director '{self.name}': strength must be a finite number (1.0 = as trained), got "
                             f"{self.strength!r}")
        if self.role not in ROLES:
            raise ValueError(f"director role must be 'S' (camera) or 'T' (motion), got {self.role!r}")
        if not self.name or not all(c.isalnum() or c in "_-." for c in self.name):
            raise ValueError(f"director name {self.name!r} must be letters, digits, '_', '-' or '.'")

    @property
    def adapter_name(self) -> str:
        """One per file version, so the same file is attached once however often the graph runs."""
        return f"dimx_{self.lora.fingerprint}"


def check_fits(lora: LoraFile, transformer: torch.nn.Module, model_label: str) -> None:
    """Refuse a LoRA made for another base model, naming the first layers that do not fit."""
    modules = dict(transformer.named_modules())
    problems = []
    for name, target in sorted(lora.targets.items()):
        module = modules.get(name)
        base = getattr(module, "base_layer", module)
        if not isinstance(base, torch.nn.Linear):
            problems.append(f"{name}: no such linear layer")
        elif target.down.shape[1] != base.in_features or target.up.shape[0] != base.out_features:
            problems.append(f"{name}: LoRA maps {target.down.shape[1]}->{target.up.shape[0]}, "
                            f"the layer is {base.in_features}->{base.out_features}")
    if problems:
        shown = "; ".join(problems[:3]) + (f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
        raise ValueError(f"LoRA '{lora.path}' does not fit {model_label}: {shown}. It was made for another base "
                         "model (DimensionX directors are made for CogVideoX-5b-I2V).")
    if len(lora.ranks) != 1:
        raise ValueError(f"LoRA '{lora.path}' mixes ranks {lora.ranks} across layers; one rank per file is supported")
    refusals, warnings = compatibility(lora, transformer)
    if refusals:
        raise ValueError(f"LoRA '{lora.path}' fits {model_label} by shape, but {'; and '.join(refusals)}. "
                         "DimensionX directors are made for CogVideoX-5b-I2V (1.0).")
    for warning in warnings:
        log.warning("DimensionX: LoRA '%s': %s", lora.path, warning)


def attach(transformer: torch.nn.Module, directors: list[Director], model_label: str) -> None:
    """Inject each director's adapter unless the transformer already carries it."""
    peft = require("peft")
    present = {name for module in transformer.modules() for name in getattr(module, "lora_A", {})}
    for director in directors:
        adapter = director.adapter_name
        if adapter in present:
            continue
        lora = director.lora
        check_fits(lora, transformer, model_label)
        config = peft.LoraConfig(r=lora.ranks[0], lora_alpha=1.0, target_modules=sorted(lora.targets),
                                 lora_dropout=0.0, init_lora_weights=False)
        with warnings.catch_warnings():  # several adapters in one model is the point here
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            peft.inject_adapter_in_model(config, transformer, adapter_name=adapter)
        modules = dict(transformer.named_modules())
        with torch.no_grad():
            for name, target in lora.targets.items():
                layer = modules[name]
                layer.lora_A[adapter].weight.copy_(target.down)
                layer.lora_B[adapter].weight.copy_(target.up)
                layer.lora_alpha[adapter] = lora.effective_alpha(target)
        present.add(adapter)
    activate(transformer, {})


def lora_layers(transformer: torch.nn.Module) -> list:
    tuners = require("peft.tuners.tuners_utils")
    return [m for m in transformer.modules() if isinstance(m, tuners.BaseTunerLayer)]


def activate(transformer: torch.nn.Module, strengths: dict[str, float]) -> None:
    """Use exactly the adapters in `strengths` (adapter name -> strength, 1.0 = as trained); none = base model."""
    for layer in lora_layers(transformer):
        carried = [name for name in strengths if name in layer.lora_A]
        layer.set_adapter(carried)
        for name in carried:
            layer.set_scale(name, strengths[name])


class DirectorControl:
    """Applies a schedule step by step; switching only when the active set changes."""

    def __init__(self, transformer: torch.nn.Module, directors: list[Director], schedule: DirectorSchedule):
        by_name = {d.name: d for d in directors}
        missing = schedule.names() - set(by_name)
        if missing:
            raise ValueError(f"the schedule names {sorted(missing)}, but the connected directors are "
                             f"{sorted(by_name) or 'none'}")
        self.transformer, self.by_name, self.schedule = transformer, by_name, schedule
        self._current: dict[str, float] | None = None

    def strengths_at(self, step: int) -> dict[str, float]:
        active = {}
        for name, strength in self.schedule.active_at(step):
            director = self.by_name[name]
            active[director.adapter_name] = director.strength if strength is None else strength
        return active

    def names_at(self, step: int) -> list[str]:
        return [name for name, _ in self.schedule.active_at(step)]

    def apply(self, step: int) -> None:
        wanted = self.strengths_at(step)
        if wanted != self._current:
            activate(self.transformer, wanted)
            self._current = wanted

    def release(self) -> None:
        """Leave the shared transformer as the base model for whoever uses it next."""
        activate(self.transformer, {})
        self._current = None
