"""The pack's `sat_dpmpp2m` solver and "timestep" dynamic CFG checked against SAT's own sampler (issue 12, item 2).

Builds SAT's VPSDEDPMPP2MSampler with DynamicCFG and its DiscreteDenoiser exactly as DimensionX's
configs/cogvideox_5b_i2v_lora_145.yaml configures them (ZeroSNRDDPMDiscretization shift 1, VideoScaling, scale 6,
exp 5), runs both on the CPU in float32 with a stand-in network (a fixed smooth function of the latents, the
timestep and the side of guidance: the transformer does not matter to the sampler) from the same starting noise,
with torch's global generator seeded alike (SAT draws its noise with randn_like, the pack's solver from the same
generator when given none), and reports the difference of the final latents and of every step's guidance scale.
The same run with diffusers' CogVideoXDPMScheduler shows what that scheduler would change.

It needs DimensionX's SAT code (sgm/) and its imports, kept outside this repository; see
bench/RESULTS-sat-sampler.md for the exact command. Run:
    python bench/sat_sampler_parity.py --sat-code DIMENSIONX/cogvideo [--steps 50] [--json OUT.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
SHAPE = (1, 37, 16, 4, 6)  # the 145-frame layout's latent frames, at a small size
DISCRETIZATION = {"target": "sgm.modules.diffusionmodules.discretizer.ZeroSNRDDPMDiscretization",
                  "params": {"shift_scale": 1.0}}


def stand_in(x: torch.Tensor, timestep: torch.Tensor, conditional: torch.Tensor) -> torch.Tensor:
    """The velocity a network would predict: conditional (1) and unconditional (0) rows differ."""
    side = conditional.reshape(-1, *[1] * (x.ndim - 1)).to(x.dtype)
    t = timestep.reshape(-1, *[1] * (x.ndim - 1)).to(x.dtype)
    return torch.tanh(x) * (0.4 + 0.2 * side) + (0.3 * side - 0.1) * t / 1000


def sat_run(start: torch.Tensor, steps: int, seed: int):
    from sgm.util import instantiate_from_config

    sampler = instantiate_from_config({
        "target": "sgm.modules.diffusionmodules.sampling.VPSDEDPMPP2MSampler",
        "params": {"fixed_frames": 0, "num_steps": steps, "verbose": False, "device": "cpu",
                   "discretization_config": DISCRETIZATION,
                   "guider_config": {"target": "sgm.modules.diffusionmodules.guiders.DynamicCFG",
                                     "params": {"scale": 6, "exp": 5, "num_steps": steps}}}})
    denoiser = instantiate_from_config({
        "target": "sgm.modules.diffusionmodules.denoiser.DiscreteDenoiser",
        "params": {"num_idx": 1000, "quantize_c_noise": False,
                   "weighting_config": {"target": "sgm.modules.diffusionmodules.denoiser_weighting.EpsWeighting"},
                   "scaling_config": {"target": "sgm.modules.diffusionmodules.denoiser_scaling.VideoScaling"},
                   "discretization_config": DISCRETIZATION}})
    scales, schedule = [], sampler.guider.scale_schedule

    def recorded(sigma, step_index):
        scales.append(schedule(sigma, step_index))
        return scales[-1]

    sampler.guider.scale_schedule = recorded

    def network(x, c_noise, cond, **extra):
        return stand_in(x, c_noise, cond["crossattn"])

    def denoise(x, sigma, cond, **extra):
        return denoiser(network, x, sigma, cond, **extra)

    torch.manual_seed(seed)
    out = sampler(denoise, start.clone(), {"crossattn": torch.ones(1)}, uc={"crossattn": torch.zeros(1)})
    return out, scales


def pack_run(kind: str, start: torch.Tensor, steps: int, seed: int):
    sys.path.insert(0, str(REPO))
    from dimx_core.cogvideox.spec import COGVIDEOX_5B_I2V_SCHEDULER
    from dimx_core.video.solvers import guidance_scales, make_scheduler, solver_of

    scheduler = make_scheduler(kind, COGVIDEOX_5B_I2V_SCHEDULER)
    scheduler.set_timesteps(steps)
    scales = guidance_scales(6.0, True, "timestep", scheduler.timesteps)
    step, x, old = solver_of(scheduler).step, start.clone(), None
    torch.manual_seed(seed)
    for i, t in enumerate(scheduler.timesteps):
        timestep = t.reshape(1).float()
        unconditional, conditional = stand_in(x, timestep, torch.zeros(1)), stand_in(x, timestep, torch.ones(1))
        velocity = unconditional + scales[i] * (conditional - unconditional)
        x, old = step(scheduler, velocity, t, scheduler.timesteps[i - 1] if i else None, x, old, 0.0, None)
    return x, scales


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sat-code", type=Path, required=True, help="DimensionX's cogvideo/ folder (has sgm/)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(args.sat_code.resolve()))
    start = torch.randn(SHAPE, generator=torch.Generator().manual_seed(args.seed))
    sat, sat_scales = sat_run(start, args.steps, args.seed)
    result = {"steps": args.steps, "latents": list(SHAPE), "final_latents_rms": float(sat.pow(2).mean().sqrt())}
    for kind in ("sat_dpmpp2m", "dpm"):
        ours, scales = pack_run(kind, start, args.steps, args.seed)
        result[kind] = {
            "relative_error": float((ours - sat).norm() / sat.norm()),
            "max_abs_error": float((ours - sat).abs().max()),
            "max_guidance_scale_difference": max(abs(a - b) for a, b in zip(scales, sat_scales)),
        }
    result["sat_guidance_scales_first_last"] = [sat_scales[0], sat_scales[-1]]
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
