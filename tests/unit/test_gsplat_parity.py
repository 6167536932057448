"""gsplat's CUDA kernels and the PyTorch reference agree (run on a CUDA machine; bench/recon_bench.py runs the
same comparison at 720x480 and records it)."""
import pytest
import torch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (gsplat)")


def test_gsplat_and_the_reference_agree_on_images_and_gradients():
    from dimx_core.recon.parity import PARITY_TOLERANCE, compare
    from dimx_core.recon.raster import gsplat_status

    reason = gsplat_status()
    assert reason == "", f"gsplat cannot run here: {reason}"
    for seed in (0, 1):
        errors = compare(count=5000, width=320, height=240, seed=seed)
        assert errors.pop("radii mismatches") < 1e-3, errors
        assert max(errors.values()) < PARITY_TOLERANCE, errors


def test_cuda_fits_pick_gsplat_and_fall_back_to_the_reference_on_the_gpu(monkeypatch):
    from dimx_core.recon import raster

    assert raster.select_rasterizer("cuda").name == "gsplat"
    monkeypatch.setattr(raster, "gsplat_status", lambda *args, **kwargs: "nvcc is missing (simulated)")
    fallback = raster.select_rasterizer("cuda")
    assert fallback.name == "torch" and fallback.device.type == "cuda"
    assert "slower" in fallback.notice and "docs.gsplat.studio/whl" in fallback.notice
    with pytest.raises(RuntimeError, match="gsplat cannot run"):
        raster.select_rasterizer("cuda", prefer="gsplat")
