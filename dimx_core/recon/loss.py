"""The confidence-weighted 3DGS loss: C (0.8 L1 + 0.2 (1 - SSIM)) + lambda LPIPS, per pixel, masked.

LPIPS (VGG) is the `lpips` package's network: its calibrated linear layers ship with the package, but the VGG16
backbone under them is torchvision's ImageNet file, which the package downloads and DimensionX never does. The
user places that file (LPIPS_FILE) where the caller says (the nodes: models/dimensionx/lpips/); it is read with
torch.load(weights_only=True), so no code in it runs.
"""
from __future__ import annotations

import functools
import warnings
from pathlib import Path

import torch

from ..optional import is_installed, require

L1_WEIGHT, SSIM_WEIGHT = 0.8, 0.2


SSIM_WINDOW, SSIM_SIGMA = 11, 1.5                      # the 3DGS trainers' SSIM: an 11-tap Gaussian, sigma 1.5
SSIM_C1, SSIM_C2 = 0.01 ** 2, 0.03 ** 2                  # (k L)^2 for colours in 0..1
SSIM_EPS = 1e-12                                        # kornia's, added to the denominator


@functools.lru_cache(maxsize=8)
def _ssim_window(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The normalised 1D Gaussian window, made once per device (five small kernels a step otherwise), outside
    inference mode so that a fit can save it for backward whoever asked first."""
    with torch.inference_mode(False):
        taps = torch.arange(SSIM_WINDOW, device=device, dtype=dtype) - SSIM_WINDOW // 2
        kernel = torch.exp(-taps * taps / (2 * SSIM_SIGMA ** 2))
        return kernel / kernel.sum()


def _ssim_tensor(render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The five local statistics (x, y, x^2, y^2, xy) blurred together, one depthwise convolution per axis over all
    of them. kornia blurs them one by one (five pads and ten convolutions per call): on the GPU the fit is bound by
    launching kernels (bench/RESULTS-recon-profile.md), and SSIM was a tenth of them."""
    channels, radius = render.shape[-1], SSIM_WINDOW // 2
    kernel = _ssim_window(render.device, render.dtype)
    x, y = render.permute(2, 0, 1), target.permute(2, 0, 1)
    statistics = torch.cat([x, y, x * x, y * y, x * y])[None]                     # (1, 5C, H, W)
    groups = statistics.shape[1]
    blurred = torch.nn.functional.conv2d(torch.nn.functional.pad(statistics, [radius, radius, 0, 0], mode="reflect"),
                                         kernel.view(1, 1, 1, -1).expand(groups, 1, 1, -1), groups=groups)
    blurred = torch.nn.functional.conv2d(torch.nn.functional.pad(blurred, [0, 0, radius, radius], mode="reflect"),
                                         kernel.view(1, 1, -1, 1).expand(groups, 1, -1, 1), groups=groups)
    mu_x, mu_y, xx, yy, xy = blurred[0].split(channels)
    mu_xy, mu_xx, mu_yy = mu_x * mu_y, mu_x * mu_x, mu_y * mu_y
    numerator = (2.0 * mu_xy + SSIM_C1) * (2.0 * (xy - mu_xy) + SSIM_C2)
    denominator = (mu_xx + mu_yy + SSIM_C1) * ((xx - mu_xx) + (yy - mu_yy) + SSIM_C2)
    return (numerator / (denominator + SSIM_EPS)).permute(1, 2, 0)


class _SsimCompiled(torch.autograd.Function):
    """The SSIM map as cpu_kernels' compiled loops, with its backward written out: on the CPU the convolutions,
    pads and some forty small operations of the tensor form and their backward took a sixth of a fit's step."""

    @staticmethod
    def forward(ctx, render, target):
        from . import cpu_kernels

        planes = [image.detach().permute(2, 0, 1).contiguous().numpy() for image in (render, target)]
        window = _ssim_window(render.device, render.dtype).numpy()
        with cpu_kernels.threads(torch.get_num_threads()):
            similarity, blurred = cpu_kernels.ssim(*planes, window, SSIM_C1, SSIM_C2, SSIM_EPS)
        ctx.kernel_state = (planes, window, blurred)
        return torch.from_numpy(similarity).permute(1, 2, 0)

    @staticmethod
    def backward(ctx, grad_similarity):
        from . import cpu_kernels

        planes, window, blurred = ctx.kernel_state
        with cpu_kernels.threads(torch.get_num_threads()):
            grad_render = cpu_kernels.ssim_backward(*planes, window, SSIM_C1, SSIM_C2, SSIM_EPS, blurred,
                                                    grad_similarity.permute(2, 0, 1).contiguous().numpy())
        return torch.from_numpy(grad_render).permute(1, 2, 0), None


# tensor operations anywhere torch runs, or compiled loops on the CPU (a constant target: frames are not fitted);
# the same map and gradients
SSIM_KINDS = {"tensor": _ssim_tensor, "compiled": _SsimCompiled.apply}


def ssim_map(render: torch.Tensor, target: torch.Tensor, kind: str = "auto") -> torch.Tensor:
    """(H, W, C) SSIM of two (H, W, C) images: kornia.metrics.ssim(..., 11)'s map (Gaussian window, reflect padding,
    eps 1e-12). `kind` names an entry of SSIM_KINDS, or "auto": the compiled loops on the CPU wherever numba
    imports, for float32 or float64 images larger than the window's radius (smaller ones get torch's error for
    reflect padding) and a target that needs no gradient."""
    if kind == "auto":
        compiled = (render.device.type == "cpu" and is_installed("numba") and not target.requires_grad
                    and render.dtype in (torch.float32, torch.float64) and min(render.shape[:2]) > SSIM_WINDOW // 2)
        kind = "compiled" if compiled else "tensor"
    if kind not in SSIM_KINDS:
        raise ValueError(f"the SSIM kind must be auto or one of {', '.join(SSIM_KINDS)}, got {kind!r}")
    if kind == "compiled" and render.device.type != "cpu":
        raise ValueError(f"the compiled SSIM runs on the CPU; this image is on {render.device}")
    return SSIM_KINDS[kind](render, target)


def photometric_map(render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(H, W) per-pixel 0.8 L1 + 0.2 (1 - SSIM) of two (H, W, 3) images."""
    l1 = (render - target).abs().mean(dim=-1)
    return L1_WEIGHT * l1 + SSIM_WEIGHT * (1.0 - ssim_map(render, target).mean(dim=-1))


def weighted_mean(per_pixel: torch.Tensor, confidence: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of confidence x per-pixel loss over the masked pixels (the mask restricts, the confidence weighs)."""
    if mask is None:
        return (confidence * per_pixel).mean()
    return (confidence * mask * per_pixel).sum() / mask.sum().clamp_min(1.0)


LPIPS_FILE = "vgg16-397923af.pth"  # torchvision's VGG16 IMAGENET1K_V1 weights, the backbone LPIPS (VGG) was calibrated on
# the layers of VGG16's `features` each of LPIPS's five slices holds (relu1_2, relu2_2, relu3_3, relu4_3, relu5_3)
LPIPS_SLICES = ((0, 4), (4, 9), (9, 16), (16, 23), (23, 30))


def check_lpips_weights(weights: str | Path) -> None:
    """Raise, naming the path, when the VGG16 file LPIPS needs is not there (before a fit spends time on SfM)."""
    weights = Path(weights)
    if not weights.is_file():
        raise FileNotFoundError(f"LPIPS needs torchvision's VGG16 ImageNet weights '{LPIPS_FILE}' at '{weights}', "
                                "which does not exist. DimensionX never downloads: place the file there (the one "
                                "torchvision saves as ~/.cache/torch/hub/checkpoints/" + LPIPS_FILE + "), or set the "
                                "LPIPS weight to 0")


def load_lpips(weights: str | Path, device: torch.device) -> torch.nn.Module:
    """The LPIPS (VGG) network with its VGG16 backbone read from `weights` (torchvision's state dict; the
    classifier's tensors may be left out), frozen, in eval mode on `device`."""
    lpips = require("lpips", "the LPIPS term of the loss")
    check_lpips_weights(weights)
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a pickle that is not plain tensors, a truncated file, ...
        raise ValueError(f"'{weights}' is not a readable PyTorch weights file ({type(err).__name__}: {err})") from err
    features = {key[len("features."):]: value for key, value in state.items() if key.startswith("features.")} \
        if isinstance(state, dict) else {}
    slices = {f"slice{number}.{key}": value for number, (start, stop) in enumerate(LPIPS_SLICES, 1)
              for key, value in features.items() if start <= int(key.split(".")[0]) < stop}
    with warnings.catch_warnings():  # lpips asks torchvision for an untrained VGG16 with a deprecated argument
        warnings.simplefilter("ignore", UserWarning)
        network = lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, spatial=True, verbose=False)
    try:
        network.net.load_state_dict(slices, strict=True)
    except RuntimeError as err:
        raise ValueError(f"'{weights}' is not torchvision's VGG16 state dict (its 'features.*' tensors do not fit "
                         f"VGG16: {str(err).splitlines()[0]}); LPIPS needs {LPIPS_FILE}") from err
    network = network.to(device).eval()
    for parameter in network.parameters():
        parameter.requires_grad_(False)
    return network


def lpips_map(network: torch.nn.Module, render: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(H, W) LPIPS of two (H, W, 3) images in 0..1."""
    to_input = lambda image: image.permute(2, 0, 1)[None] * 2.0 - 1.0  # noqa: E731
    return network(to_input(render), to_input(target))[0, 0]
