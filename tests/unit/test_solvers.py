"""The solver and dynamic-CFG tables: SAT's DPM++ 2M sampler (DimensionX's 145-frame model) step by step against a
transcription of SAT's VPSDEDPMPP2MSampler + DiscreteDenoiser + DynamicCFG, how it differs from diffusers' DPM, and
the "auto" settings resolving from the model folder."""
import json
import math

import numpy as np
import pytest
import torch

from dimx_core.cogvideox.spec import COGVIDEOX_5B_I2V_SCHEDULER
from dimx_core.video.release import RELEASE_FILE, SAT_RELEASE, ReleaseDefaults, read_release_defaults
from dimx_core.video.request import SamplerSettings
from dimx_core.video.solvers import CFG_SCHEDULES, SOLVERS, guidance_scales, make_scheduler, solver_of

SHAPE = (1, 3, 4, 2, 2)


def fake_velocity(x: torch.Tensor, timestep: float, conditional: bool) -> torch.Tensor:
    """A smooth stand-in for the transformer: different for the two sides of guidance, driven by x and t."""
    return torch.tanh(x) * (0.6 if conditional else 0.4) + (0.2 if conditional else -0.1) * timestep / 1000


def sat_reference(x: torch.Tensor, steps: int, noise: torch.Generator, scale: float = 6.0) -> torch.Tensor:
    """SAT's sampler as its source reads (float64): ZeroSNRDDPMDiscretization over the chosen timesteps, the
    DiscreteDenoiser snapping sqrt(alpha-bar) to its 1000-step table (VideoScaling: x0 = a x - sqrt(1 - a^2) v),
    DynamicCFG with step_index = num_steps - timestep, VPSDEDPMPP2MSampler's multipliers and noise."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2
    plain = torch.cumprod(1 - betas, 0).sqrt()
    table = (plain - plain[-1]) * plain[0] / (plain[0] - plain[-1])             # the denoiser's, index = t
    chosen = np.linspace(999, 0, steps, endpoint=False).astype(int)[::-1].copy()  # ascending, as SAT keeps it
    root = plain[chosen]
    root = (root - root[-1]) * root[0] / (root[0] - root[-1])
    sqrt_alpha = torch.cat([root.flip(0), torch.ones(1, dtype=torch.float64)])    # t = 999 first, then 1
    timesteps = [-1] + list(chosen)
    old = None
    for i in range(steps):
        t, a, a_next = timesteps[-(i + 1)], sqrt_alpha[i], sqrt_alpha[i + 1]
        snapped = table[(table - a).abs().argmin()]
        v_u, v_c = fake_velocity(x, t, False), fake_velocity(x, t, True)
        x0_u, x0_c = snapped * x - (1 - snapped ** 2).sqrt() * v_u, snapped * x - (1 - snapped ** 2).sqrt() * v_c
        step_index = steps - t
        g = 1 + scale * (1 - math.cos(math.pi * (step_index / steps) ** 5)) / 2
        denoised = x0_u + g * (x0_c - x0_u)
        if steps - i == 1:
            return denoised
        lam = ((a ** 2 / (1 - a ** 2)) ** 0.5).log()
        lam_next = ((a_next ** 2 / (1 - a_next ** 2)) ** 0.5).log()
        h = lam_next - lam
        mult1 = ((1 - a_next ** 2) / (1 - a ** 2)) ** 0.5 * (-h).exp()
        mult2 = (-2 * h).expm1() * a_next
        noise_weight = (1 - a_next ** 2) ** 0.5 * (1 - (-2 * h).exp()) ** 0.5
        standard = mult1 * x - mult2 * denoised + noise_weight * torch.randn(x.shape, generator=noise,
                                                                             dtype=torch.float64)
        if old is None:
            x = standard
        else:
            a_prev = sqrt_alpha[i - 1]
            lam_prev = ((a_prev ** 2 / (1 - a_prev ** 2)) ** 0.5).log()
            r = (lam - lam_prev) / h
            corrected = (1 + 1 / (2 * r)) * denoised - 1 / (2 * r) * old
            x = mult1 * x - mult2 * corrected + noise_weight * torch.randn(x.shape, generator=noise,
                                                                           dtype=torch.float64)
        old = denoised
    return x


def pack_loop(kind: str, x: torch.Tensor, steps: int, noise: torch.Generator, cfg: str = "timestep") -> torch.Tensor:
    """The pack's loop (sampling.denoise's solver step and guidance) around the fake velocity."""
    scheduler = make_scheduler(kind, COGVIDEOX_5B_I2V_SCHEDULER)
    scheduler.set_timesteps(steps)
    scales = guidance_scales(6.0, True, cfg, scheduler.timesteps)
    step, old = solver_of(scheduler).step, None
    for i, t in enumerate(scheduler.timesteps):
        v_u, v_c = fake_velocity(x, float(t), False), fake_velocity(x, float(t), True)
        velocity = v_u + scales[i] * (v_c - v_u)
        x, old = step(scheduler, velocity, t, scheduler.timesteps[i - 1] if i else None, x, old, 0.0, noise)
    return x


@pytest.mark.parametrize("steps", [50, 30, 7])
def test_sat_solver_follows_sats_sampler_step_by_step(steps):
    start = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    reference = sat_reference(start.clone(), steps, torch.Generator().manual_seed(5))
    ours = pack_loop("sat_dpmpp2m", start.clone(), steps, torch.Generator().manual_seed(5))
    assert torch.allclose(ours, reference, rtol=0, atol=1e-10), (ours - reference).abs().max()


def test_diffusers_dpm_is_the_same_solver_on_a_slightly_different_alpha_table():
    start = torch.randn(SHAPE, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sat = pack_loop("sat_dpmpp2m", start.clone(), 50, torch.Generator().manual_seed(5))
    dpm = pack_loop("dpm", start.clone(), 50, torch.Generator().manual_seed(5))
    relative = float((sat - dpm).norm() / sat.norm())
    assert 1e-5 < relative < 2e-2  # same noise, same timesteps: only the alpha tables differ (measured 5.7e-3)
    sat_scheduler = make_scheduler("sat_dpmpp2m", COGVIDEOX_5B_I2V_SCHEDULER)
    dpm_scheduler = make_scheduler("dpm", COGVIDEOX_5B_I2V_SCHEDULER)
    for steps, equal in ((50, True), (25, True), (30, False)):
        sat_scheduler.set_timesteps(steps)
        dpm_scheduler.set_timesteps(steps)
        assert torch.equal(sat_scheduler.timesteps, dpm_scheduler.timesteps) is equal, steps
    sat_scheduler.set_timesteps(50)
    diffusers_root = dpm_scheduler.alphas_cumprod.double()[sat_scheduler.timesteps].sqrt()
    gap = (sat_scheduler._solver_alphas.sqrt() - diffusers_root).abs() / diffusers_root.clamp_min(1e-12)
    assert 5e-4 < float(gap.max()) < 7e-4  # 0.063% at the low-noise end


def test_dynamic_cfg_kinds():
    scheduler = make_scheduler("ddim", COGVIDEOX_5B_I2V_SCHEDULER)
    scheduler.set_timesteps(50)
    released = guidance_scales(6.0, True, "timestep", scheduler.timesteps)
    assert released[-1] == pytest.approx(1 + 6.0 * (1 - math.cos(math.pi * ((50 - 19) / 50) ** 5)) / 2)
    by_step = guidance_scales(6.0, True, "step", scheduler.timesteps)
    assert by_step[0] == 1.0 and by_step == sorted(by_step) and by_step[-1] == pytest.approx(6.864, abs=1e-3)
    assert guidance_scales(6.0, False, "step", scheduler.timesteps) == [6.0] * 50
    assert set(CFG_SCHEDULES) == {"timestep", "step"}
    with pytest.raises(ValueError, match="resolve 'auto'"):
        guidance_scales(6.0, True, "auto", scheduler.timesteps)


def test_auto_settings_resolve_from_the_model_folder(tmp_path):
    index = {"scheduler": ["diffusers", "CogVideoXDPMScheduler"]}
    assert read_release_defaults(tmp_path, index).scheduler == "dpm"
    assert read_release_defaults(tmp_path, {"scheduler": ["diffusers", "CogVideoXDDIMScheduler"]}) == \
        ReleaseDefaults(source="the scheduler model_index.json names (CogVideoXDDIMScheduler)")
    (tmp_path / RELEASE_FILE).write_text(json.dumps({"scheduler": "sat_dpmpp2m", "cfg_schedule": "timestep",
                                                     "source": "test"}))
    release = read_release_defaults(tmp_path, index)
    settings = SamplerSettings(steps=4)
    assert settings.resolved(release) == SamplerSettings(steps=4, scheduler="sat_dpmpp2m", cfg_schedule="timestep")
    assert SamplerSettings(scheduler="ddim", cfg_schedule="step").resolved(release).scheduler == "ddim"
    (tmp_path / RELEASE_FILE).write_text(json.dumps({"scheduler": "euler", "cfg_schedule": "timestep", "source": ""}))
    with pytest.raises(ValueError, match="scheduler must be one of ddim, dpm, sat_dpmpp2m"):
        read_release_defaults(tmp_path, index)
    assert SAT_RELEASE.scheduler in SOLVERS and "DynamicCFG (scale 6, exp 5" in SAT_RELEASE.source


@pytest.mark.parametrize("kwargs, message", [({"scheduler": "euler"}, "scheduler must be 'auto' or one of"),
                                             ({"cfg_schedule": "cosine"}, "cfg_schedule must be 'auto' or one of")])
def test_bad_solver_choices_are_named(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SamplerSettings(**kwargs)
