"""Which rasterizer runs where: never a gsplat build without CUDA."""
import pytest
import torch

from dimx_core.recon import raster


def test_cpu_uses_the_reference_and_never_touches_gsplats_build(monkeypatch):
    monkeypatch.setattr(raster, "_import_backend", lambda: pytest.fail("gsplat build attempted on CPU"))
    choice = raster.select_rasterizer("cpu")
    assert choice.name == "torch" and choice.notice is None
    if not torch.cuda.is_available():
        assert raster.gsplat_status() == "no CUDA device"
    with pytest.raises(ValueError, match="gsplat needs a CUDA device"):
        raster.select_rasterizer("cpu", prefer="gsplat")
    with pytest.raises(ValueError, match="auto, gsplat or torch"):
        raster.select_rasterizer("cpu", prefer="fast")


def test_cpu_without_numba_says_what_installing_it_gains(monkeypatch):
    monkeypatch.setattr(raster, "is_installed", lambda module: module != "numba")
    notice = raster.select_rasterizer("cpu").notice
    assert "numba is not installed" in notice and "pip install numba" in notice
    assert raster.select_rasterizer("mps").notice is None  # the tensor kernels are MPS's own


def test_build_cache_is_a_persistent_folder_keyed_by_versions(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("LOCALAPPDATA", raising=False)
    folder = raster.default_build_dir()
    assert folder.parent == tmp_path / "dimensionx" / "torch_extensions"
    assert folder.name.startswith("gsplat-") and f"torch{torch.__version__.split('+')[0]}" in folder.name
