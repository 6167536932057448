"""The compiled kernels' cache holds one entry per import name: ComfyUI imports the pack by its folder's path, the
CLI imports dimx_core, and a kernel cached under one name must not be loaded under the other."""
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("numba")

CPU_TILES = Path(__file__).resolve().parents[2] / "dimx_core" / "recon" / "cpu_tiles.py"

# the lists of one Gaussian covering the first of four 16-pixel tiles, then the cache's hits and misses
LISTS = """
import numpy as np
starts, gaussians = module.tile_lists(np.array([[4.0, 4.0]]), np.array([[2, 2]], np.int32), np.array([0]), 32, 32,
                                      16)
assert starts.tolist() == [0, 1, 1, 1, 1] and gaussians.tolist() == [0], (starts, gaussians)
stats = module.tile_lists.stats
print(len(stats.cache_hits), len(stats.cache_misses))
"""
# as ComfyUI loads a custom node: a module named by its path, registered under that name only
BY_PATH = """
import importlib.util, sys
name = {folder!r} + "/custom_nodes/dimensionx.cpu_tiles"
spec = importlib.util.spec_from_file_location(name, {file!r})
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
"""
BY_NAME = """
import sys
sys.path.insert(0, {folder!r})
import cpu_tiles as module
"""


def _hits_and_misses(importer: str, folder: Path) -> tuple[int, int]:
    script = textwrap.dedent(importer).format(folder=str(folder), file=str(folder / "cpu_tiles.py")) + LISTS
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    hits, misses = done.stdout.split()
    return int(hits), int(misses)


def test_a_kernel_cached_under_one_import_name_compiles_again_under_another_and_both_reload(tmp_path):
    shutil.copy(CPU_TILES, tmp_path / "cpu_tiles.py")
    assert _hits_and_misses(BY_PATH, tmp_path) == (0, 1)
    # numba's own locator would hand this process the entry above, whose import of its module fails
    assert _hits_and_misses(BY_NAME, tmp_path) == (0, 1)
    assert _hits_and_misses(BY_PATH, tmp_path) == (1, 0)
    assert _hits_and_misses(BY_NAME, tmp_path) == (1, 0)
    indexes = sorted(path.name for path in (tmp_path / "__pycache__").glob("cpu_tiles.tile_lists-*.nbi"))
    assert len(indexes) == 2, indexes
