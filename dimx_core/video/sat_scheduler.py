"""SAT's VPSDEDPMPP2MSampler, the sampler DimensionX's 145-frame 360-degree model was released with
(configs/cogvideox_5b_i2v_lora_145.yaml: ZeroSNRDDPMDiscretization, shift 1, 50 steps), as a diffusers scheduler.

Read side by side with diffusers' CogVideoXDPMScheduler (SAT: sgm/modules/diffusionmodules/sampling.py,
discretizer.py, denoiser.py, denoiser_scaling.py of THUDM/CogVideo and wenqsun/DimensionX, identical there):

What is the same
- the solver: DPM-Solver++(2M) in its SDE form on v-prediction, with the same multipliers: x' = exp(-h)
  sqrt((1 - a') / (1 - a)) x - expm1(-2h) sqrt(a') x0 (+ the 2M correction 1 + 1/2r, 1/2r from the second step
  on) + sqrt(1 - a') sqrt(1 - exp(-2h)) noise, with a = alpha-bar and h the step in log-SNR; this class takes
  `get_variables` and `get_mult` from diffusers' scheduler unchanged;
- the noise: fresh Gaussian noise drawn twice a step after the first step (the first draw is discarded) and once
  on the first; no eta (diffusers ignores its `eta` argument);
- the timesteps at 50 steps: SAT takes floor(linspace(999, 0, n, endpoint=False)), diffusers' trailing spacing
  round(arange(1000, 0, -1000/n)) - 1; they agree for every n that divides 1000 and are one apart on some steps
  otherwise (n = 30: 965 against 966); the transformer is given these timestep values in both;
- the last step returns the predicted clean latents (SAT returns x0 at idx 1; diffusers steps to alpha-bar 1,
  where the same formula gives x0 and the noise weight is 0).

What differs (and is SAT's here)
- the alpha-bar table. diffusers rescales alpha-bar to zero terminal SNR over all 1000 training steps (anchored at
  t = 0) and looks it up by timestep. SAT's sampler rescales over the n chosen timesteps only (anchored at the
  smallest one, t = 19 at 50 steps) and takes its multipliers from that table, while its denoiser snaps that
  value to the nearest entry of the 1000-step table before predicting x0 = sqrt(a) x - sqrt(1 - a) v (t = 19 ->
  the entry of t = 18). At 50 steps sqrt(alpha-bar) differs from diffusers' by up to 0.063%.
- for n not dividing 1000, diffusers' step takes the previous alpha-bar at t - 1000 // n rather than at the next
  timestep of its own list; SAT always at the next one.
- precision: SAT keeps the latents in float32 between steps; the pack's loop keeps them in the model's dtype, as
  for every other solver.
The noising of SDEdit starts and reference blends (`add_noise`) stays diffusers' over the 1000-step table, which is
SAT's training forward process (its loss samples the same ZeroSNRDDPMDiscretization over 1000 steps).
"""
from __future__ import annotations

import numpy as np
import torch
from diffusers import CogVideoXDPMScheduler
from diffusers.utils.torch_utils import randn_tensor


class SATDPMScheduler(CogVideoXDPMScheduler):
    """CogVideoXDPMScheduler with SAT's timesteps and alpha-bar tables (see the module docstring)."""

    def set_timesteps(self, num_inference_steps: int, device: str | torch.device | None = None):
        train = self.config.num_train_timesteps
        if not 1 <= num_inference_steps <= train:
            raise ValueError(f"steps must be between 1 and {train}, got {num_inference_steps}")
        if not self.config.rescale_betas_zero_snr:
            raise ValueError("SAT's DPM++ 2M sampler is zero-terminal-SNR (ZeroSNRDDPMDiscretization); this model's "
                             "scheduler config has rescale_betas_zero_snr off. Use scheduler ddim or dpm.")
        self.num_inference_steps = num_inference_steps
        chosen = np.linspace(train - 1, 0, num_inference_steps, endpoint=False).astype(np.int64)  # 999, 979, ...
        shift = self.config.snr_shift_scale
        plain = torch.cumprod(1.0 - self.betas.double(), dim=0)
        plain = plain / (shift + (1 - shift) * plain)
        root = plain[torch.from_numpy(chosen)].sqrt()
        lowest, highest = root[-1], root[0]  # the smallest and largest chosen timestep
        solver_root = (root - highest) * lowest / (lowest - highest)
        full_root = self.alphas_cumprod.double().sqrt()  # diffusers' table, rescaled over all training steps
        snapped = full_root[(solver_root[:, None] - full_root[None]).abs().argmin(dim=1)]
        self._solver_alphas = solver_root ** 2
        self._prediction_alphas = snapped ** 2
        self._position = {int(t): i for i, t in enumerate(chosen)}
        self.timesteps = torch.from_numpy(chosen).to(device)

    def step(self, model_output: torch.Tensor, old_pred_original_sample: torch.Tensor | None, timestep,
             timestep_back, sample: torch.Tensor, eta: float = 0.0, use_clipped_model_output: bool = False,
             generator: torch.Generator | None = None, variance_noise: torch.Tensor | None = None,
             return_dict: bool = False):
        if self.num_inference_steps is None:
            raise ValueError("call set_timesteps before step")
        index = self._position[int(timestep)]
        snapped = self._prediction_alphas[index]
        x0 = snapped.sqrt() * sample - (1 - snapped).sqrt() * model_output
        if index == len(self._position) - 1:  # SAT's idx == 1: the last step returns the prediction itself
            return x0, x0
        alpha, alpha_next = self._solver_alphas[index], self._solver_alphas[index + 1]
        alpha_back = self._solver_alphas[self._position[int(timestep_back)]] if timestep_back is not None else None
        h, r, _, _ = self.get_variables(alpha, alpha_next, alpha_back)
        mult = self.get_mult(h, r, alpha, alpha_next, alpha_back)
        noise_weight = (1 - alpha_next).sqrt() * (1 - (-2 * h).exp()).sqrt()

        def noise():
            return randn_tensor(sample.shape, generator=generator, device=sample.device, dtype=sample.dtype)

        standard = mult[0] * sample - mult[1] * x0 + noise_weight * noise()
        if old_pred_original_sample is None:
            return standard, x0
        corrected = mult[2] * x0 - mult[3] * old_pred_original_sample
        return mult[0] * sample - mult[1] * corrected + noise_weight * noise(), x0
