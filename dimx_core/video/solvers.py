"""The denoising solvers the sampler offers, one row each, and the dynamic-CFG schedules, one row each.

A solver row says how to build its scheduler from the model's scheduler config, which diffusers scheduler class a
model folder names for it (so "auto" can follow the folder), and how one step is taken. A CFG-schedule row says how
the guidance scale moves over a run. Every caller (the sampler, the nodes' combos, the CLI, the release defaults
a model folder carries) reads these tables; a new kind is one row.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from ..optional import require

AUTO = "auto"  # a setting that follows the loaded model's release defaults (release.py)


def _single_step(scheduler, velocity, t, previous, latents, old_prediction, eta, generator):
    stepped = scheduler.step(velocity, t, latents, eta=eta, generator=generator)
    return stepped.prev_sample, stepped.pred_original_sample


def _multistep(scheduler, velocity, t, previous, latents, old_prediction, eta, generator):
    """DPM-Solver++(2M): the step also takes the previous step's prediction and timestep."""
    return scheduler.step(velocity, old_prediction, t, previous, latents, eta=eta, generator=generator,
                          return_dict=False)


def _diffusers_class(name: str) -> Callable[[], type]:
    return lambda: getattr(require("diffusers"), name)


def _sat_class() -> type:
    from .sat_scheduler import SATDPMScheduler

    return SATDPMScheduler


@dataclass(frozen=True)
class Solver:
    scheduler_class: Callable[[], type]  # the scheduler's class, imported on first use
    step: Callable       # (scheduler, velocity, t, previous t, latents, old prediction, eta, generator)
    #                      -> (latents, predicted clean latents)
    description: str
    folder_class: str | None = None      # the class name a model folder's model_index.json gives this solver

    def build(self, config: dict):
        """This solver's scheduler from the model's scheduler config (betas, prediction type, spacing)."""
        return self.scheduler_class().from_config(config)


SOLVERS: dict[str, Solver] = {
    "ddim": Solver(_diffusers_class("CogVideoXDDIMScheduler"), _single_step,
                   "CogVideoX DDIM (diffusers), the scheduler CogVideoX-5b-I2V ships with", "CogVideoXDDIMScheduler"),
    "dpm": Solver(_diffusers_class("CogVideoXDPMScheduler"), _multistep,
                  "CogVideoX DPM-Solver++(2M), stochastic (diffusers)", "CogVideoXDPMScheduler"),
    "sat_dpmpp2m": Solver(_sat_class, _multistep,
                          "SAT's VPSDEDPMPP2MSampler, as DimensionX's 145-frame 360-degree model was released "
                          "(stochastic; sat_scheduler.py says how it differs from diffusers' DPM)"),
}


def make_scheduler(kind: str, config: dict):
    if kind not in SOLVERS:
        raise ValueError(f"scheduler must be one of {', '.join(SOLVERS)} (resolve '{AUTO}' from the model first), "
                         f"got {kind!r}")
    return SOLVERS[kind].build(config)


def solver_of(scheduler) -> Solver:
    """The row a built scheduler belongs to (the loop steps it the way its row says)."""
    for solver in SOLVERS.values():
        if type(scheduler) is solver.scheduler_class():
            return solver
    raise ValueError(f"{type(scheduler).__name__} is not one of the pack's solvers ({', '.join(SOLVERS)})")


def solver_for_class(class_name: str) -> str | None:
    """The solver kind of a scheduler class a model folder names, if the pack has it."""
    return next((kind for kind, solver in SOLVERS.items() if solver.folder_class == class_name), None)


# --- dynamic classifier-free guidance --------------------------------------------------------------------------------

def _by_timestep(guidance: float, steps: int, index: int, timestep: float) -> float:
    return 1 + guidance * ((1 - math.cos(math.pi * ((steps - timestep) / steps) ** 5.0)) / 2)


def _by_step(guidance: float, steps: int, index: int, timestep: float) -> float:
    return 1 + guidance * ((1 - math.cos(math.pi * (index / steps) ** 5.0)) / 2)


@dataclass(frozen=True)
class CfgSchedule:
    scale: Callable[[float, int, int, float], float]  # (guidance, steps, step index, timestep value) -> scale
    description: str


CFG_SCHEDULES: dict[str, CfgSchedule] = {
    # SAT's DynamicCFG (scale 6, exp 5) is called with step_index = num_steps - timestep (VideoDDIMSampler.denoise
    # in sgm/modules/diffusionmodules/sampling.py, the same in CogVideo and DimensionX), and diffusers <= 0.42
    # copies that formula: both releases, the 5b-I2V directors and the 145-frame model, ran this one.
    "timestep": CfgSchedule(_by_timestep, "1 + g (1 - cos(pi ((n - t) / n)^5)) / 2 with t the timestep value, as "
                                          "diffusers and SAT's DynamicCFG compute it (both releases)"),
    "step": CfgSchedule(_by_step, "the same cosine driven by the step index i instead: guidance grows from 1 at the "
                                  "first step to about 1 + g at the last (not what either release ran)"),
}


def dynamic_guidance(guidance: float, steps: int, timestep: float) -> float:
    """The released dynamic CFG ("timestep" kind): the scale stays near 1 + guidance for most of a 50-step run."""
    return _by_timestep(guidance, steps, 0, timestep)


def guidance_scales(guidance: float, dynamic: bool, schedule: str, timesteps: torch.Tensor) -> list[float]:
    """The guidance scale of every step of the full schedule, computed before the loop from the CPU timesteps (no
    host sync inside the loop)."""
    if not dynamic:
        return [guidance] * len(timesteps)
    if schedule not in CFG_SCHEDULES:
        raise ValueError(f"cfg_schedule must be one of {', '.join(CFG_SCHEDULES)} (resolve '{AUTO}' from the model "
                         f"first), got {schedule!r}")
    scale, steps = CFG_SCHEDULES[schedule].scale, len(timesteps)
    return [scale(guidance, steps, index, float(t)) for index, t in enumerate(timesteps)]
