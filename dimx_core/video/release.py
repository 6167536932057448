"""How a model's release samples it, which is what the "auto" sampler settings resolve to.

A model folder says it in `dimensionx_sampling.json` (the SAT converter writes it: SAT checkpoints were released
with SAT's DPM++ 2M sampler); without that file, the scheduler its model_index.json names (CogVideoX-5b-I2V:
DDIM) and the released dynamic-CFG schedule.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from .solvers import CFG_SCHEDULES, SOLVERS, solver_for_class

RELEASE_FILE = "dimensionx_sampling.json"
DIFFUSERS_SOURCE = "CogVideoX-5b-I2V as diffusers samples it"


@dataclass(frozen=True)
class ReleaseDefaults:
    scheduler: str = "ddim"           # a key of solvers.SOLVERS
    cfg_schedule: str = "timestep"    # a key of solvers.CFG_SCHEDULES
    source: str = DIFFUSERS_SOURCE

    def __post_init__(self) -> None:
        if self.scheduler not in SOLVERS:
            raise ValueError(f"release defaults: scheduler must be one of {', '.join(SOLVERS)}, got "
                             f"{self.scheduler!r}")
        if self.cfg_schedule not in CFG_SCHEDULES:
            raise ValueError(f"release defaults: cfg_schedule must be one of {', '.join(CFG_SCHEDULES)}, got "
                             f"{self.cfg_schedule!r}")

    def describe(self) -> str:
        return f"auto sampling: {self.scheduler}, dynamic CFG by {self.cfg_schedule} ({self.source})"


# SAT's sampler_config of DimensionX's cogvideox_5b_i2v_lora_145.yaml (and of CogVideo's SAT 5B configs):
# VPSDEDPMPP2MSampler, 50 steps, DynamicCFG scale 6, exp 5 (whose schedule is the "timestep" one: solvers.py).
SAT_RELEASE = ReleaseDefaults("sat_dpmpp2m", "timestep", "a SAT checkpoint: SAT's VPSDEDPMPP2MSampler and "
                                                         "DynamicCFG (scale 6, exp 5, 50 steps), as released")


def write_release_defaults(folder: Path, defaults: ReleaseDefaults) -> None:
    (Path(folder) / RELEASE_FILE).write_text(json.dumps(asdict(defaults), indent=2) + "\n", encoding="utf-8")


def read_release_defaults(folder: Path, index: dict) -> ReleaseDefaults:
    """`folder`'s release defaults: its RELEASE_FILE, else the scheduler its model_index (`index`) names."""
    path = Path(folder) / RELEASE_FILE
    if path.is_file():
        try:
            fields = json.loads(path.read_text(encoding="utf-8"))
            return ReleaseDefaults(**{key: fields[key] for key in ("scheduler", "cfg_schedule", "source")})
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
            raise ValueError(f"'{path}' does not say how the model samples ({err}); expected JSON with scheduler, "
                             "cfg_schedule and source (delete it to use the scheduler in model_index.json)") from err
    named = (index.get("scheduler") or [None, None])[1]
    kind = solver_for_class(named) if named else None
    return ReleaseDefaults(kind or "ddim", "timestep",
                           f"the scheduler model_index.json names ({named})" if kind else DIFFUSERS_SOURCE)
