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


def _check_director(name: str, role: str, strength: float) -> None:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not math.isfinite(strength):
        raise ValueError(f"director '{name}': strength must be a finite number (1.0 = as trained), got {strength!r}")
    if role not in ROLES:
        raise ValueError(f"director role must be 'S' (camera) or 'T' (motion), got {role!r}")
    if not name or not all(c.isalnum() or c in "_-." for c in name):
        raise ValueError(f"director name {name!r} must be letters, digits, '_', '-' or '.'")


@dataclass(frozen=True)
class DirectorRef:
    """A director as a run's request names it: plain data that travels (to a worker, into a content key). The
    LoRA itself stays in its file; `fingerprint` (LoraFile's) says which version of the file was meant."""
    name: str
    role: str
    strength: float
    path: str
    fingerprint: str

    def __post_init__(self) -> None:
        _check_director(self.name, self.role, self.strength)

    @property
    def adapter_name(self) -> str:
        """One per file version, so the same file is attached once however often the graph runs."""
        return f"dimx_{self.fingerprint}"


@dataclass(frozen=True)
class Director:
    """A director LoRA as the graph names it, read into memory. strength 1.0 = as trained."""
    name: str
    role: str
    strength: float
    lora: LoraFile

    def __post_init__(self) -> None:
        _check_director(self.name, self.role, self.strength)

    @property
    def ref(self) -> DirectorRef:
        return DirectorRef(self.name, self.role, self.strength, self.lora.path, self.lora.fingerprint)

    @property
    def adapter_name(self) -> str:
        return self.ref.adapter_name


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


def attach(transformer: torch.nn.Module, directors: list[Director], model_label: str) -> tuple[DirectorRef, ...]:
    """Inject each director's adapter unless the transformer already carries it. Returns the directors as a
    request names them (resident now, so a run's DirectorControl can switch them)."""
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
    return tuple(director.ref for director in directors)


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
    """Applies a schedule step by step (a step guide of the denoising loop, see video/guides.StepGuide); switching
    only when the active set changes. The directors' adapters must be attached already (`attach`)."""

    def __init__(self, transformer: torch.nn.Module, directors, schedule: DirectorSchedule):
        """directors: DirectorRef or Director values."""
        by_name = {d.name: d for d in directors}
        missing = schedule.names() - set(by_name)
        if missing:
            raise ValueError(f"the schedule names {sorted(missing)}, but the connected directors are "
                             f"{sorted(by_name) or 'none'}")
        present = {name for module in transformer.modules() for name in getattr(module, "lora_A", {})}
        detached = [d for name, d in sorted(by_name.items()) if name in schedule.names()
                    and d.adapter_name not in present]
        if detached:  # switching to an adapter the model does not carry would silently run the base model
            raise ValueError(f"directors {[d.name for d in detached]} are not attached to this transformer; "
                             "attach() them before the run")
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

    def before_step(self, step: int, latents: torch.Tensor, timestep: torch.Tensor, scheduler) -> torch.Tensor:
        self.apply(step)
        return latents

    def release(self) -> None:
        """Leave the shared transformer as the base model for whoever uses it next."""
        activate(self.transformer, {})
        self._current = None
