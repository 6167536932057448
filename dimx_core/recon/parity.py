"""gsplat's CUDA rasterizer against the PyTorch reference on the same inputs: images and gradients.

Used by the CUDA-only test and by bench/recon_bench.py. Errors are relative in the L2 sense,
|a - b| / |b| over the whole tensor (elementwise ratios explode where values are near zero)."""
from __future__ import annotations

import math

import torch

from . import reference
from .raster import gsplat_rasterize

PARITY_TOLERANCE = 1e-4


def random_scene(count: int, width: int, height: int, *, seed: int = 0, device: str = "cuda") -> dict:
    """`count` Gaussians spread over the view of a camera at the origin, with SH degree 3 colours."""
    generator = torch.Generator(device="cpu").manual_seed(seed)
    focal = 0.5 * width / math.tan(math.radians(25.0))
    depth = torch.empty(count).uniform_(2.0, 6.0, generator=generator)
    screen = torch.rand(count, 2, generator=generator) * torch.tensor([width, height]) - torch.tensor(
        [width / 2, height / 2])
    means = torch.cat([screen * depth[:, None] / focal, depth[:, None]], dim=1)
    tensors = {
        "means": means,
        "quats": torch.randn(count, 4, generator=generator),
        "scales": torch.exp(torch.empty(count, 3).uniform_(-4.5, -2.5, generator=generator)),
        "opacities": torch.rand(count, generator=generator) * 0.9 + 0.05,
        "colors": torch.randn(count, 16, 3, generator=generator) * 0.3,
        "viewmats": torch.eye(4)[None],
        "Ks": torch.tensor([[[focal, 0.0, width / 2], [0.0, focal, height / 2], [0.0, 0.0, 1.0]]]),
    }
    return {name: value.to(device) for name, value in tensors.items()}


def _render_with_grads(rasterize, scene: dict, width: int, height: int, weights: torch.Tensor) -> dict:
    inputs = {name: value.clone().requires_grad_(name != "Ks") for name, value in scene.items()}
    image, alpha, meta = rasterize(inputs["means"], inputs["quats"], inputs["scales"], inputs["opacities"],
                                   inputs["colors"], inputs["viewmats"], inputs["Ks"], width, height, sh_degree=3,
                                   backgrounds=torch.full((1, 3), 0.25, device=weights.device))
    meta["means2d"].retain_grad()
    (image * weights).sum().backward()
    out = {"image": image.detach(), "alpha": alpha.detach(), "grad means2d": meta["means2d"].grad.detach(),
           "radii": meta["radii"].detach()}
    out.update({f"grad {name}": value.grad.detach() for name, value in inputs.items() if name != "Ks"})
    return out


def compare(count: int = 20_000, width: int = 720, height: int = 480, *, seed: int = 0,
            device: str = "cuda") -> dict[str, float]:
    """Relative L2 error of gsplat vs the reference for the image, alpha and every gradient."""
    scene = random_scene(count, width, height, seed=seed, device=device)
    weights = torch.rand(1, height, width, 3, generator=torch.Generator().manual_seed(seed + 1)).to(device)
    fast = _render_with_grads(gsplat_rasterize, scene, width, height, weights)
    exact = _render_with_grads(reference.rasterization, scene, width, height, weights)
    errors = {name: float((fast[name] - exact[name]).norm() / exact[name].norm().clamp_min(1e-12))
              for name in exact if name != "radii"}
    errors["radii mismatches"] = float((fast["radii"] != exact["radii"]).any(dim=-1).float().mean())
    return errors
