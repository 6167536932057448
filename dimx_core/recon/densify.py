"""gsplat's DefaultStrategy, with its per-step statistics gathered without a device-to-host sync.

gsplat's `_update_state` picks the visible Gaussians with `torch.where` (a sync every step, so the host cannot
queue the next step while the GPU works: the fit is bound by the host, bench/RESULTS-recon-profile.md) and scatters
their screen-space gradient norms. For the unpacked layout the pack renders, the same sums are dense masked
additions over (C, N), with the same values. Growing and pruning (every `refine_every` steps) still sync: they
change the number of Gaussians.
"""
from __future__ import annotations

import functools

import torch
from gsplat.strategy import DefaultStrategy


class SyncFreeDefaultStrategy(DefaultStrategy):
    """DefaultStrategy whose per-step bookkeeping (packed=False) never waits for the GPU."""

    @staticmethod
    @functools.lru_cache(maxsize=8)
    def _to_screen(x: float, y: float, device: torch.device) -> torch.Tensor:
        """gsplat's gradient scale to pixels, made once: a new tensor each step is a host-to-device copy."""
        with torch.inference_mode(False):
            return torch.tensor([x, y], device=device)

    @torch.no_grad()
    def _update_state(self, params, state, info, packed: bool = False):
        if packed:
            return super()._update_state(params, state, info, packed=packed)
        gradient = info[self.key_for_gradient].absgrad if self.absgrad else info[self.key_for_gradient].grad
        cameras = info["n_cameras"]
        to_screen = self._to_screen(info["width"] / 2.0 * cameras, info["height"] / 2.0 * cameras, gradient.device)
        visible = (info["radii"] > 0.0).all(dim=-1)                      # (C, N)
        count = len(params["means"])
        for key in ("grad2d", "count"):
            if state[key] is None:
                state[key] = torch.zeros(count, device=gradient.device)
        state["grad2d"].add_(((gradient * to_screen).norm(dim=-1) * visible).sum(dim=0))
        state["count"].add_(visible.sum(dim=0))
        if self.refine_scale2d_stop_iter > 0:
            if state["radii"] is None:
                state["radii"] = torch.zeros(count, device=gradient.device)
            radii = info["radii"].max(dim=-1).values / float(max(info["width"], info["height"]))
            torch.maximum(state["radii"], (radii * visible).amax(dim=0), out=state["radii"])
