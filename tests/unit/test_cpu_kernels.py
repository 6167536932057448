"""The compiled kernels' tile lists leave out exactly the pairs that add nothing, and their cache holds one entry
per import name: ComfyUI imports the pack by its folder's path, the CLI imports dimx_core, and a kernel cached
under one name must not be loaded under the other."""
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("numba")
from dimx_core.recon import cpu_kernels, reference  # noqa: E402

CPU_TILES = Path(__file__).resolve().parents[2] / "dimx_core" / "recon" / "cpu_kernels.py"

# the lists of one Gaussian covering the first of four 16-pixel tiles, then the cache's hits and misses
LISTS = """
import numpy as np
starts, gaussians = module.tile_lists(np.array([[4.0, 4.0]]), np.array([[2, 2]], np.int32), np.array([[1.0, 0, 1]]),
                                      np.array([0.9]), np.array([0]), 32, 32, 16, 1 / 255)
assert starts.tolist() == [0, 1, 1, 1, 1] and gaussians.tolist() == [0], (starts, gaussians)
stats = module.tile_lists.stats
print(len(stats.cache_hits), len(stats.cache_misses))
"""
# as ComfyUI loads a custom node: a module named by its path, registered under that name only
BY_PATH = """
import importlib.util, sys
name = {folder!r} + "/custom_nodes/dimensionx.cpu_kernels"
spec = importlib.util.spec_from_file_location(name, {file!r})
module = importlib.util.module_from_spec(spec)
sys.modules[name] = module
spec.loader.exec_module(module)
"""
BY_NAME = """
import sys
sys.path.insert(0, {folder!r})
import cpu_kernels as module
"""


def _hits_and_misses(importer: str, folder: Path) -> tuple[int, int]:
    script = textwrap.dedent(importer).format(folder=str(folder), file=str(folder / "cpu_kernels.py")) + LISTS
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    hits, misses = done.stdout.split()
    return int(hits), int(misses)


def test_a_kernel_cached_under_one_import_name_compiles_again_under_another_and_both_reload(tmp_path):
    shutil.copy(CPU_TILES, tmp_path / "cpu_kernels.py")
    assert _hits_and_misses(BY_PATH, tmp_path) == (0, 1)
    # numba's own locator would hand this process the entry above, whose import of its module fails
    assert _hits_and_misses(BY_NAME, tmp_path) == (0, 1)
    assert _hits_and_misses(BY_PATH, tmp_path) == (1, 0)
    assert _hits_and_misses(BY_NAME, tmp_path) == (1, 0)
    indexes = sorted(path.name for path in (tmp_path / "__pycache__").glob("cpu_kernels.tile_lists-*.nbi"))
    assert len(indexes) == 2, indexes


@pytest.mark.parametrize("tile", [4, 8])
def test_the_tile_lists_keep_every_pair_whose_alpha_reaches_a_pixel_and_leave_out_many_others(tile):
    """Elongated Gaussians at every angle, near and across tile corners: every pair whose alpha reaches 1/255 at a
    pixel centre of the tile is listed, in depth order, and far fewer pairs than gsplat's boxes give."""
    generator = np.random.default_rng(3)
    count, width, height = 300, 45, 30
    means2d = generator.uniform(-4, [width + 4, height + 4], (count, 2))
    angle, long, short = generator.uniform(0, np.pi, count), generator.uniform(1, 9, count), generator.uniform(
        0.4, 2, count)
    cos, sin = np.cos(angle), np.sin(angle)
    cov = np.stack([long**2 * cos**2 + short**2 * sin**2, (long**2 - short**2) * cos * sin,
                    long**2 * sin**2 + short**2 * cos**2], axis=1)
    det = cov[:, 0] * cov[:, 2] - cov[:, 1] ** 2
    conics = np.stack([cov[:, 2] / det, -cov[:, 1] / det, cov[:, 0] / det], axis=1)
    opacities = generator.uniform(0.01, 1, count)
    extend = np.minimum(np.sqrt(2 * np.log(opacities * 255)), 3.33)
    radii = np.ceil(extend[:, None] * np.sqrt(cov[:, [0, 2]])).astype(np.int32)
    order = np.argsort(generator.uniform(size=count))
    starts, gaussians = cpu_kernels.tile_lists(means2d, radii, conics, opacities, order, width, height, tile,
                                               reference.ALPHA_THRESHOLD)
    box_starts, _ = cpu_kernels.tile_lists(means2d, radii, np.zeros_like(conics), opacities, order, width, height,
                                           tile, reference.ALPHA_THRESHOLD)  # no conic: every pair of the boxes
    assert len(gaussians) < 0.9 * box_starts[-1]
    tiles_x = (width + tile - 1) // tile
    rank = np.argsort(order)
    for index in range(len(starts) - 1):
        listed = gaussians[starts[index]:starts[index + 1]]
        assert np.all(np.diff(rank[listed]) > 0)  # front to back
        left, top = (index % tiles_x) * tile, (index // tiles_x) * tile
        xs, ys = np.meshgrid(np.arange(left, min(left + tile, width)) + 0.5,
                             np.arange(top, min(top + tile, height)) + 0.5)
        dx, dy = xs.ravel()[None] - means2d[:, :1], ys.ravel()[None] - means2d[:, 1:]
        sigma = 0.5 * (conics[:, :1] * dx * dx + conics[:, 2:] * dy * dy) + conics[:, 1:2] * dx * dy
        alpha = (opacities[:, None] * np.exp(-sigma)).max(axis=1)
        in_box = np.zeros(count, bool)
        in_box[np.abs(dx).min(axis=1) <= radii[:, 0]] = True
        in_box &= np.abs(dy).min(axis=1) <= radii[:, 1]
        reaches = alpha >= reference.ALPHA_THRESHOLD * (1 + 1e-5)
        assert set(np.nonzero(reaches & in_box)[0]) <= set(listed.tolist()), index


def test_the_least_sigma_over_a_rectangle_is_the_least_on_a_fine_grid_over_it():
    """The bound the lists are cut by: 0 with the centre inside, else the least on an edge; -inf for a conic that
    is not positive definite, so that its pairs are all kept."""
    generator = np.random.default_rng(5)
    for _ in range(200):
        covariance = generator.normal(size=(2, 2)) * 2
        covariance = covariance @ covariance.T + 0.05 * np.eye(2)
        conic_a, conic_b, conic_c = np.linalg.inv(covariance)[[0, 0, 1], [0, 1, 1]]
        dx_first, dy_first = generator.uniform(-8, 6, 2)
        dx_last, dy_last = dx_first + generator.uniform(0, 4), dy_first + generator.uniform(0, 4)
        dx, dy = np.meshgrid(np.linspace(dx_first, dx_last, 401), np.linspace(dy_first, dy_last, 401))
        grid = (0.5 * (conic_a * dx * dx + conic_c * dy * dy) + conic_b * dx * dy).min()
        lowest = cpu_kernels._lowest_sigma(dx_first, dx_last, dy_first, dy_last, conic_a, conic_b, conic_c)
        assert lowest <= grid + 1e-12 and grid - lowest < 1e-3 * max(grid, 1.0)
    assert cpu_kernels._lowest_sigma(1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0) == -np.inf
