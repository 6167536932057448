"""The scene value that flows between nodes (DIMX_GAUSSIANS): 3D Gaussians in the storage form of 3DGS.

Storage form, as in the standard PLY and in gsplat's trainer: log scales, opacity logits, quaternions wxyz
(not necessarily normalised), SH coefficients (N, K, 3) with K = (degree + 1)**2 and sh[:, 0] the DC term.
Positions are in the world frame of the trajectory the scene was fitted to (see dimx_core.camera.Trajectory).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import torch

from ..camera import Trajectory

SH_C0 = 0.28209479177387814  # band-0 constant: colour = 0.5 + SH_C0 * dc
# exp(log scale) must stay finite in float32 and its square (the covariance) too: e^44 squared is ~1.6e38
MAX_LOG_SCALE = 44.0


def sh_bases(degree: int) -> int:
    return (degree + 1) ** 2


def sh_degree_of(bases: int) -> int:
    degree = math.isqrt(bases) - 1
    if bases < 1 or sh_bases(degree) != bases or degree > 3:
        raise ValueError(f"{bases} SH coefficients per channel is not (degree + 1)^2 for a degree 0..3")
    return degree


@dataclass
class Gaussians:
    means: torch.Tensor           # (N, 3) world positions
    log_scales: torch.Tensor      # (N, 3)
    quats_wxyz: torch.Tensor      # (N, 4)
    opacity_logits: torch.Tensor  # (N,)
    sh: torch.Tensor              # (N, K, 3)
    cameras: Trajectory | None = None  # the cameras the scene was fitted from, in the scene's frame
    # A later 4D issue attaches a time-dependent deformation here; every 3D stage carries it along untouched.
    deformation: Any | None = None

    def __post_init__(self) -> None:
        n = self.means.shape[0] if self.means.dim() == 2 else -1
        expected = {"means": (n, 3), "log_scales": (n, 3), "quats_wxyz": (n, 4), "opacity_logits": (n,)}
        for name, shape in expected.items():
            if tuple(getattr(self, name).shape) != shape:
                raise ValueError(f"Gaussians.{name} must have shape {shape}, got {tuple(getattr(self, name).shape)}")
        if self.sh.dim() != 3 or self.sh.shape[0] != n or self.sh.shape[2] != 3:
            raise ValueError(f"Gaussians.sh must have shape ({n}, K, 3), got {tuple(self.sh.shape)}")
        sh_degree_of(self.sh.shape[1])

    @classmethod
    def from_activated(cls, means: torch.Tensor, scales: torch.Tensor, quats_wxyz: torch.Tensor,
                       opacities: torch.Tensor, sh: torch.Tensor) -> "Gaussians":
        """From render-ready values (linear scales, opacities in 0..1), as other tools hand them over (ComfyUI's core
        SPLAT). Scales are floored and opacities kept inside (0, 1) so their logarithm and logit stay finite."""
        tiny = torch.finfo(torch.float32).tiny
        opacity = opacities.float().reshape(-1).clamp(1e-7, 1 - 1e-7)
        return cls(means=means.float(), log_scales=scales.float().clamp_min(tiny).log(),
                   quats_wxyz=quats_wxyz.float(), opacity_logits=torch.logit(opacity), sh=sh.float())

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return sh_degree_of(self.sh.shape[1])

    def scales(self) -> torch.Tensor:
        return self.log_scales.exp()

    def opacities(self) -> torch.Tensor:
        return torch.sigmoid(self.opacity_logits)

    def base_colors(self) -> torch.Tensor:
        """View-independent RGB in 0..1 (the DC term), what viewers without SH show."""
        return (0.5 + SH_C0 * self.sh[:, 0]).clamp(0, 1)

    def to(self, device: torch.device | str, dtype: torch.dtype = torch.float32) -> "Gaussians":
        """The same scene (cameras and deformation included) with its tensors on `device`."""
        names = ("means", "log_scales", "quats_wxyz", "opacity_logits", "sh")
        return replace(self, **{name: getattr(self, name).to(device=device, dtype=dtype) for name in names})


def check_renderable(gaussians: Gaussians, source: str) -> None:
    """Refuse scenes every rasterizer would draw black or garbage without a word: no Gaussians, NaN or infinite
    values, rotations that are not rotations (a zero quaternion), scales whose covariance overflows float32.
    `source` names where the scene came from (a file, "the scene") in the error."""
    if len(gaussians) == 0:
        raise ValueError(f"{source} holds no Gaussians: there is nothing to render or save (an empty file, or a "
                         "fit that pruned every Gaussian)")
    for name in ("means", "log_scales", "quats_wxyz", "opacity_logits", "sh"):
        bad = int((~torch.isfinite(getattr(gaussians, name).reshape(len(gaussians), -1))).any(dim=1).sum())
        if bad:
            raise ValueError(f"{source} holds NaN or infinite values in {name} ({bad} of {len(gaussians)} "
                             "Gaussians); the scene is damaged")
    zero_rotations = int((gaussians.quats_wxyz.norm(dim=-1) < 1e-12).sum())
    if zero_rotations:
        raise ValueError(f"{source} has {zero_rotations} of {len(gaussians)} Gaussians with a zero quaternion "
                         "(rot_0..rot_3 all 0), which is no rotation; the scene is damaged")
    overflowing = int((gaussians.log_scales > MAX_LOG_SCALE).any(dim=-1).sum())
    if overflowing:
        raise ValueError(f"{source} has {overflowing} of {len(gaussians)} Gaussians whose log scale exceeds "
                         f"{MAX_LOG_SCALE:g} (a scale of e^{MAX_LOG_SCALE:g} overflows float32 once squared); "
                         "scales must be stored as logarithms, as in the standard 3DGS PLY")


def rgb_to_sh_dc(rgb: torch.Tensor) -> torch.Tensor:
    """Inverse of `base_colors` for the DC term."""
    return (rgb - 0.5) / SH_C0
