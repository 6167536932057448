"""Choosing the rasterizer: gsplat's CUDA kernels when they can run, else the PyTorch reference (reference.py).

gsplat ships CUDA sources and compiles them on first use (one to a few minutes, needs nvcc); the build is
cached in a persistent folder so it happens once per gsplat/torch/CUDA combination. It is never attempted
without CUDA. When it cannot be built or loaded, the reference rasterizer runs on the same GPU instead: same
images, several times slower, and the notice says how to get a prebuilt gsplat.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..hooks import NO_HOOKS, Hooks
from ..optional import is_installed
from . import reference

log = logging.getLogger(__name__)

EXPECTED_BUILD_SECONDS = 120.0
INSTALL_HINT = ("To skip compiling, install a prebuilt gsplat matching your torch and CUDA from "
                "https://docs.gsplat.studio/whl (e.g. pip install gsplat --index-url "
                "https://docs.gsplat.studio/whl/pt24cu124 for torch 2.4 + CUDA 12.4), or install the CUDA toolkit "
                "(nvcc) so gsplat can compile itself once.")


@dataclass(frozen=True)
class Rasterizer:
    """`rasterize` has gsplat.rasterization's signature (activated scales and opacities, packed=False)."""
    name: str                       # "gsplat" or "torch"
    device: torch.device
    rasterize: Callable
    notice: str | None = None       # what the user should know about this choice (speed, how to do better)

    def render(self, means, quats, log_scales, opacity_logits, sh, viewmats, Ks, width, height, *,
               sh_degree, background=None):
        backgrounds = None if background is None else background.expand(len(viewmats), 3)
        return self.rasterize(means, quats, log_scales.exp(), torch.sigmoid(opacity_logits), sh, viewmats, Ks,
                              width, height, sh_degree=sh_degree, backgrounds=backgrounds)


def gsplat_rasterize(means, quats, scales, opacities, colors, viewmats, Ks, width, height, *, sh_degree=None,
                     backgrounds=None):
    import gsplat

    # classic mode and eps2d 0.3: gsplat's defaults, which the reference rasterizer reproduces
    return gsplat.rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height,
                                sh_degree=sh_degree, backgrounds=backgrounds, packed=False, eps2d=0.3,
                                near_plane=0.01, far_plane=1e10, rasterize_mode="classic")


def default_build_dir() -> Path:
    """A persistent per-user cache, keyed by the versions a CUDA build depends on."""
    root = Path(os.environ.get("LOCALAPPDATA") or os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    gsplat_version = importlib.util.find_spec("gsplat") and importlib.metadata.version("gsplat")
    tag = f"gsplat-{gsplat_version}-torch{torch.__version__.split('+')[0]}-cuda{torch.version.cuda}"
    return root / "dimensionx" / "torch_extensions" / tag


def _nvcc_available() -> bool:
    from torch.utils.cpp_extension import CUDA_HOME

    return bool((CUDA_HOME and Path(CUDA_HOME, "bin", "nvcc").is_file()) or shutil.which("nvcc"))


class _Build:
    """The one gsplat import/compile of this process (a cancelled wait leaves it running to completion)."""
    lock = threading.Lock()
    thread: threading.Thread | None = None
    error: BaseException | None = None
    result: str | None = None       # None while unknown, "" when usable, else why not


def _import_backend() -> None:
    try:
        backend = importlib.import_module("gsplat.cuda._backend")
        if backend._C is None:
            _Build.result = "gsplat found no CUDA toolkit to compile its kernels with"
        else:
            _Build.result = ""
    except BaseException as err:  # a failed compile raises anything from OSError to RuntimeError
        _Build.error = err
        _Build.result = f"gsplat's CUDA kernels failed to build or load ({type(err).__name__}: {err})"


def gsplat_status(build_dir: str | Path | None = None, hooks: Hooks = NO_HOOKS) -> str:
    """'' when gsplat's CUDA kernels are usable, else the reason they are not. May compile them (reported as
    progress through `hooks`, interruptible while waiting) the first time."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    if importlib.util.find_spec("gsplat") is None:
        return "gsplat is not installed (pip install gsplat)"
    with _Build.lock:
        if _Build.result is not None and _Build.thread is None:
            return _Build.result
        if _Build.thread is None:
            prebuilt = importlib.util.find_spec("gsplat.csrc") is not None
            if not prebuilt and "gsplat.cuda._backend" not in sys.modules:
                if not _nvcc_available():
                    _Build.result = "gsplat has no prebuilt kernels for this install and nvcc (CUDA toolkit) is missing"
                    return _Build.result
                folder = Path(build_dir) if build_dir else default_build_dir()
                folder.mkdir(parents=True, exist_ok=True)
                os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(folder))
                cached = any(Path(os.environ["TORCH_EXTENSIONS_DIR"]).glob("**/gsplat_cuda.so"))
                log.warning("DimensionX: %s gsplat's CUDA kernels in %s%s", "loading" if cached else "compiling",
                            os.environ["TORCH_EXTENSIONS_DIR"], "" if cached else " (first use only, 1-3 minutes)")
            _Build.thread = threading.Thread(target=_import_backend, name="gsplat-build", daemon=True)
            _Build.thread.start()
        thread = _Build.thread
    started = time.monotonic()
    while thread.is_alive():
        thread.join(0.5)
        elapsed = time.monotonic() - started
        hooks.step(int(min(elapsed, 0.95 * EXPECTED_BUILD_SECONDS)), int(EXPECTED_BUILD_SECONDS))
    with _Build.lock:
        _Build.thread = None
        if _Build.result == "":
            _Build.result = _smoke_test()
        return _Build.result


def _smoke_test() -> str:
    """Run one tiny rasterization: a build for the wrong GPU architecture imports fine and fails here."""
    try:
        device = torch.device("cuda")
        image, _, _ = gsplat_rasterize(torch.tensor([[0.0, 0.0, 2.0]], device=device),
                                       torch.tensor([[1.0, 0.0, 0.0, 0.0]], device=device),
                                       torch.full((1, 3), 0.2, device=device), torch.ones(1, device=device),
                                       torch.ones(1, 3, device=device), torch.eye(4, device=device)[None],
                                       torch.tensor([[[8.0, 0, 4], [0, 8.0, 4], [0, 0, 1]]], device=device), 8, 8)
        torch.cuda.synchronize()
        return "" if image.max() > 0 else "gsplat rendered an empty test image"
    except Exception as err:  # noqa: BLE001 - any failure means: do not use gsplat
        return f"gsplat's CUDA kernels do not run on this GPU ({type(err).__name__}: {err})"


def select_rasterizer(device: torch.device | str, *, prefer: str = "auto", build_dir: str | Path | None = None,
                      hooks: Hooks = NO_HOOKS) -> Rasterizer:
    """gsplat on CUDA when usable (prefer="auto"/"gsplat"), the PyTorch reference otherwise or when
    prefer="torch". prefer="gsplat" raises when gsplat cannot run instead of falling back."""
    if prefer not in ("auto", "gsplat", "torch"):
        raise ValueError(f"rasterizer preference must be auto, gsplat or torch, got {prefer!r}")
    device = torch.device(device)
    if device.type != "cuda" or prefer == "torch":
        if prefer == "gsplat":
            raise ValueError(f"gsplat needs a CUDA device, got {device}")
        notice = None
        if device.type == "cpu" and not is_installed("numba"):
            notice = ("numba is not installed, so the CPU rasterizer and the SSIM run as tensor operations: a fit "
                      "takes some four times as long. Install it into the Python that runs ComfyUI: python -m pip "
                      "install numba")
        return Rasterizer("torch", device, reference.rasterization, notice)
    reason = gsplat_status(build_dir, hooks)
    if not reason:
        return Rasterizer("gsplat", device, gsplat_rasterize)
    if prefer == "gsplat":
        raise RuntimeError(f"gsplat cannot run: {reason}. {INSTALL_HINT}")
    notice = (f"gsplat is unavailable ({reason}); using the PyTorch reference rasterizer on the GPU instead: "
              f"same result, but more than 100x slower per step (measured on an H200 at 720x480: about 2 s per step "
              f"against 12 ms with gsplat), so use the fast preset or fewer steps. {INSTALL_HINT}")
    log.warning("DimensionX: %s", notice)
    return Rasterizer("torch", device, reference.rasterization, notice)
