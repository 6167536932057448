"""The confidence-weighted 3DGS loss: C (0.8 L1 + 0.2 (1 - SSIM)) + lambda LPIPS, per pixel, masked.

LPIPS needs torchvision's VGG16 ImageNet weights, which the `lpips` package does not ship and DimensionX
never downloads: it is used only when the weights file is already in torch's hub cache.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

L1_WEIGHT, SSIM_WEIGHT = 0.8, 0.2


def photometric_map(render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(H, W) per-pixel 0.8 L1 + 0.2 (1 - SSIM) of two (H, W, 3) images."""
    import kornia

    l1 = (render - target).abs().mean(dim=-1)
    ssim = kornia.metrics.ssim(render.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None], 11)[0].mean(dim=0)
    return L1_WEIGHT * l1 + SSIM_WEIGHT * (1.0 - ssim)


def weighted_mean(per_pixel: torch.Tensor, confidence: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of confidence x per-pixel loss over the masked pixels (the mask restricts, the confidence weighs)."""
    if mask is None:
        return (confidence * per_pixel).mean()
    return (confidence * mask * per_pixel).sum() / mask.sum().clamp_min(1.0)


def vgg16_weights_path() -> Path:
    from torchvision.models import VGG16_Weights

    return Path(torch.hub.get_dir()) / "checkpoints" / Path(VGG16_Weights.IMAGENET1K_V1.url).name


def load_lpips(device: torch.device) -> tuple[torch.nn.Module | None, str]:
    """The LPIPS (VGG) network if it can be built from local files only, and a sentence saying what happened."""
    if importlib.util.find_spec("lpips") is None:
        return None, ("LPIPS off: the 'lpips' package is not installed (pip install lpips); it also needs "
                      "torchvision's VGG16 ImageNet weights, which DimensionX never downloads")
    weights = vgg16_weights_path()
    if not weights.is_file():
        return None, (f"LPIPS off: torchvision's VGG16 ImageNet weights are not at {weights} (the lpips package "
                      f"does not ship them and DimensionX never downloads); place {weights.name} there to use it")
    try:
        import lpips

        network = lpips.LPIPS(net="vgg", spatial=True, verbose=False).to(device).eval()
    except Exception as err:  # noqa: BLE001 - a broken local file must not stop the reconstruction
        return None, f"LPIPS off: the local weights could not be loaded ({type(err).__name__}: {err})"
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network, "LPIPS on (VGG16 from the local torch hub cache)"


def lpips_map(network: torch.nn.Module, render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(H, W) LPIPS of two (H, W, 3) images in 0..1."""
    to_input = lambda image: image.permute(2, 0, 1)[None] * 2.0 - 1.0  # noqa: E731
    return network(to_input(render), to_input(target))[0, 0]
