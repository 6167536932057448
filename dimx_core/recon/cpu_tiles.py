"""The CPU's compositor: gsplat's per-tile forward and backward as loops that numba compiles.

On the CPU the tensor formulation in reference.py spends most of a small view's time in the overhead of some
hundreds of operations, not in arithmetic. These loops do what gsplat's CUDA kernels do, one tile per task: list
the Gaussians of each tile front to back, composite its pixels with early termination, and in the backward walk
them back to front recovering the transmittance. A tile's pixels are evaluated together in vector registers.
numba compiles with the LLVM its wheel ships, so no C compiler is needed; the machine code is cached beside this
file (or in numba's user cache) on first use, which takes some 20 seconds once per import name. The math and its constants are
reference.py's (passed in, so this module imports nothing of the pack).
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import threading

import numba
import numpy as np
from numba.core import caching

# fused multiply-adds and sums in any order (over a tile's pixels, the same order every run); no assumptions
# about NaN or infinity
_FAST = {"contract", "reassoc", "nsz", "arcp"}
# numba's workqueue threading layer (the one every platform has) runs one parallel kernel at a time
_ONE_AT_A_TIME = threading.Lock()


class _CachePerImportName(caching._CacheLocator):
    """numba's own cache location, with this module's import name in the file names. A cached kernel records the
    name its module was imported by and imports it again on loading, so a cache written where ComfyUI imports the
    pack by its folder's path fails to load where the CLI imports dimx_core, and the other way round."""

    def __init__(self, located: caching._CacheLocator, import_name: str):
        self._located = located
        self._name_digest = hashlib.sha1(import_name.encode()).hexdigest()[:12]

    def ensure_cache_path(self):
        self._located.ensure_cache_path()

    def get_cache_path(self):
        return self._located.get_cache_path()

    def get_source_stamp(self):
        return self._located.get_source_stamp()

    def get_disambiguator(self):
        return f"{self._located.get_disambiguator()}-{self._name_digest}"

    @classmethod
    def from_function(cls, py_func, py_file):
        if py_func.__module__ != __name__:
            return None
        for locator in caching.CacheImpl._locator_classes:
            located = None if locator is cls else locator.from_function(py_func, py_file)
            if located is not None:
                return cls(located, __name__)
        return None


# numba asks the locators in turn; this one answers for this module's kernels only
caching.CacheImpl._locator_classes.insert(0, _CachePerImportName)


@contextlib.contextmanager
def threads(count: int):
    """Run the kernels inside on `count` threads (torch's count, capped at numba's pool), one caller at a time."""
    with _ONE_AT_A_TIME:
        numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))
        yield


@numba.njit(cache=True, nogil=True)
def tile_lists(means2d, radii, order, width, height, tile):
    """gsplat's intersection lists: for every tile, the Gaussians of `order` (front to back) whose footprint box
    holds one of its pixel centres, in that order. Returns the lists' starts (tiles + 1) and the Gaussians."""
    tiles_x, tiles_y = (width + tile - 1) // tile, (height + tile - 1) // tile
    boxes = np.empty((len(order), 4), np.int64)
    starts = np.zeros(tiles_x * tiles_y + 1, np.int64)
    for rank in range(len(order)):
        gaussian = order[rank]
        # pixel column j is covered when |j + 0.5 - x| <= radius
        x_first = max(math.ceil(means2d[gaussian, 0] - radii[gaussian, 0] - 0.5), 0)
        x_last = min(math.floor(means2d[gaussian, 0] + radii[gaussian, 0] - 0.5), width - 1)
        y_first = max(math.ceil(means2d[gaussian, 1] - radii[gaussian, 1] - 0.5), 0)
        y_last = min(math.floor(means2d[gaussian, 1] + radii[gaussian, 1] - 0.5), height - 1)
        if x_last < x_first or y_last < y_first:
            boxes[rank] = 1, 0, 1, 0  # no tiles
            continue
        boxes[rank] = x_first // tile, x_last // tile, y_first // tile, y_last // tile
        for tile_y in range(boxes[rank, 2], boxes[rank, 3] + 1):
            for tile_x in range(boxes[rank, 0], boxes[rank, 1] + 1):
                starts[tile_y * tiles_x + tile_x + 1] += 1
    starts = np.cumsum(starts)
    filled = starts[:-1].copy()
    gaussians = np.empty(starts[-1], np.int64)
    for rank in range(len(order)):
        for tile_y in range(boxes[rank, 2], boxes[rank, 3] + 1):
            for tile_x in range(boxes[rank, 0], boxes[rank, 1] + 1):
                index = tile_y * tiles_x + tile_x
                gaussians[filled[index]] = order[rank]
                filled[index] += 1
    return starts, gaussians


@numba.njit(cache=True, nogil=True)
def _pixel_centres(left, top, columns, rows):
    """The centres of a tile's pixels, row by row (a table: no integer division in the loops over them)."""
    xs, ys = np.empty(rows * columns), np.empty(rows * columns)
    for row in range(rows):
        for column in range(columns):
            xs[row * columns + column], ys[row * columns + column] = left + column + 0.5, top + row + 0.5
    return xs, ys


@numba.njit(cache=True, nogil=True, inline="always")
def _falloff(sigma):
    """exp(-sigma) for 0 <= sigma <= 6, the whole range where an alpha can reach 1/255 (opacity <= 1); larger
    sigmas give exp(-6), under the threshold all the same. Written out because math.exp is a scalar call into libm
    that keeps LLVM from evaluating a tile's pixels together in vector registers (numba vectorizes it only with
    Intel's SVML, which exists for x86 alone): exp(-sigma / 16) by its Taylor series to degree 11, then squared
    four times, within 2e-13 of exp."""
    x = -min(sigma, 6.0) * 0.0625
    series = 1.0 + x * (1.0 + x * (1 / 2 + x * (1 / 6 + x * (1 / 24 + x * (1 / 120 + x * (1 / 720 + x * (
        1 / 5040 + x * (1 / 40320 + x * (1 / 362880 + x * (1 / 3628800 + x / 39916800))))))))))
    series *= series
    series *= series
    series *= series
    return series * series


@numba.njit(cache=True, nogil=True, inline="always")
def _alpha(x, y, mx, my, conic_a, conic_b, conic_c, opacity, max_alpha):
    """A Gaussian's exp(-sigma) and alpha at the pixel centre (x, y); zero where sigma < 0, which gsplat skips."""
    dx, dy = x - mx, y - my
    sigma = 0.5 * (conic_a * dx * dx + conic_c * dy * dy) + conic_b * dx * dy
    falloff = _falloff(sigma) if sigma >= 0.0 else 0.0
    return falloff, min(max_alpha, opacity * falloff)


# The loops over a tile's pixels below use selects, not branches, and keep the loops over channels apart: so LLVM
# runs each of them on several pixels at once.

@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy", fastmath=_FAST)
def composite(starts, gaussians, means2d, conics, opacities, colors, background, width, height, tile,
              alpha_threshold, max_alpha, min_transmittance):
    """Front-to-back compositing, a tile per task: each Gaussian of the tile's list is read once and evaluated
    at all the tile's pixels. Returns the image (H, W, D + 1: colours over the background and the coverage), and
    per pixel the end of its list that it reached and its final transmittance."""
    tiles_x = (width + tile - 1) // tile
    channels = colors.shape[1]
    image = np.empty((height, width, channels + 1), colors.dtype)
    reached = np.empty((height, width), np.int64)
    final = np.empty((height, width), colors.dtype)
    for index in numba.prange(len(starts) - 1):
        left, top = (index % tiles_x) * tile, (index // tiles_x) * tile
        xs, ys = _pixel_centres(left, top, min(tile, width - left), min(tile, height - top))
        transmittance = np.ones(len(xs))  # 0 once a pixel has stopped, its last one kept in last_transmittance
        last_transmittance = np.zeros(len(xs))
        end = np.full(len(xs), starts[index])
        colour, weights = np.zeros((channels, len(xs))), np.empty(len(xs))
        for pair in range(starts[index], starts[index + 1]):
            gaussian = gaussians[pair]
            mx, my, opacity = means2d[gaussian, 0], means2d[gaussian, 1], opacities[gaussian]
            conic_a, conic_b, conic_c = conics[gaussian, 0], conics[gaussian, 1], conics[gaussian, 2]
            still_open = 0
            for pixel in range(len(xs)):
                _, alpha = _alpha(xs[pixel], ys[pixel], mx, my, conic_a, conic_b, conic_c, opacity, max_alpha)
                before = transmittance[pixel]
                behind = before * (1.0 - alpha)
                counts = (alpha >= alpha_threshold) & (before > 0.0)
                stops = counts & (behind <= min_transmittance)  # before this Gaussian: its pixel is done
                adds = counts & ~stops
                weights[pixel] = alpha * before if adds else 0.0
                last_transmittance[pixel] = before if stops else last_transmittance[pixel]
                transmittance[pixel] = 0.0 if stops else (behind if adds else before)
                end[pixel] = pair + 1 if adds else end[pixel]
                still_open += before > 0.0
            for channel in range(channels):
                value = colors[gaussian, channel]
                for pixel in range(len(xs)):
                    colour[channel, pixel] += weights[pixel] * value
            if still_open == 0:
                break
        for pixel in range(len(xs)):
            py, px = int(ys[pixel]), int(xs[pixel])
            remaining = transmittance[pixel] if transmittance[pixel] > 0.0 else last_transmittance[pixel]
            reached[py, px], final[py, px] = end[pixel], remaining
            for channel in range(channels):
                image[py, px, channel] = colour[channel, pixel] + remaining * background[channel]
            image[py, px, channels] = 1.0 - remaining
    return image, reached, final


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy", fastmath=_FAST)
def composite_backward(starts, gaussians, means2d, conics, opacities, colors, background, reached, final, grad_image,
                       tile, alpha_threshold, max_alpha):
    """gsplat's backward, a tile per task: the tile's Gaussians back to front from the last one a pixel reached,
    each pixel's transmittance before a Gaussian recovered from the one after it. Returns the gradients per pair
    (means2d 2, conics 3, opacity 1, colour D; a pair belongs to one tile, so tiles write them without conflict)
    and per pixel for the background."""
    height, width = reached.shape
    tiles_x = (width + tile - 1) // tile
    channels = colors.shape[1]
    grad_pairs = np.zeros((len(gaussians), 6 + channels), colors.dtype)
    grad_background = np.empty((height, width, channels), colors.dtype)
    for index in numba.prange(len(starts) - 1):
        left, top = (index % tiles_x) * tile, (index // tiles_x) * tile
        xs, ys = _pixel_centres(left, top, min(tile, width - left), min(tile, height - top))
        transmittance, ends = np.empty(len(xs)), np.empty(len(xs), np.int64)
        after = np.empty(len(xs))  # d loss / d alpha reaching each Gaussian from all behind it
        grad_colour = np.empty((channels + 1, len(xs)))
        own, weights = np.empty(len(xs)), np.empty(len(xs))
        last = starts[index]
        for pixel in range(len(xs)):
            py, px = int(ys[pixel]), int(xs[pixel])
            ends[pixel], transmittance[pixel] = reached[py, px], final[py, px]
            through_background = 0.0
            for channel in range(channels + 1):
                grad_colour[channel, pixel] = grad_image[py, px, channel]
            for channel in range(channels):
                through_background += background[channel] * grad_colour[channel, pixel]
                grad_background[py, px, channel] = final[py, px] * grad_colour[channel, pixel]
            # the final transmittance reaches every alpha, through the background and the coverage
            after[pixel] = final[py, px] * (through_background - grad_colour[channels, pixel])
            last = max(last, ends[pixel])
        for pair in range(last - 1, starts[index] - 1, -1):
            gaussian = gaussians[pair]
            mx, my, opacity = means2d[gaussian, 0], means2d[gaussian, 1], opacities[gaussian]
            conic_a, conic_b, conic_c = conics[gaussian, 0], conics[gaussian, 1], conics[gaussian, 2]
            own[:] = 0.0  # its colour . d loss / d pixel colour
            for channel in range(channels):
                value = colors[gaussian, channel]
                for pixel in range(len(xs)):
                    own[pixel] += value * grad_colour[channel, pixel]
            grad_mx = grad_my = grad_a = grad_b = grad_c = grad_opacity = 0.0
            for pixel in range(len(xs)):
                falloff, alpha = _alpha(xs[pixel], ys[pixel], mx, my, conic_a, conic_b, conic_c, opacity, max_alpha)
                counts = (alpha >= alpha_threshold) & (pair < ends[pixel])
                before = transmittance[pixel] / (1.0 - alpha) if counts else transmittance[pixel]
                transmittance[pixel] = before
                weight = alpha * before if counts else 0.0
                weights[pixel] = weight
                # d loss / d alpha: its own colour, less what it hides (the colours behind, the background); none
                # where alpha was clamped
                grad_alpha = before * own[pixel] - after[pixel] / (1.0 - alpha)
                grad_alpha = grad_alpha if counts & (opacity * falloff < max_alpha) else 0.0
                after[pixel] += weight * own[pixel]
                grad_sigma = -alpha * grad_alpha
                dx, dy = xs[pixel] - mx, ys[pixel] - my
                grad_mx -= grad_sigma * (conic_a * dx + conic_b * dy)
                grad_my -= grad_sigma * (conic_c * dy + conic_b * dx)
                grad_a += grad_sigma * 0.5 * dx * dx
                grad_b += grad_sigma * dx * dy
                grad_c += grad_sigma * 0.5 * dy * dy
                grad_opacity += grad_alpha * falloff
            grad_pairs[pair, 0], grad_pairs[pair, 1], grad_pairs[pair, 2] = grad_mx, grad_my, grad_a
            grad_pairs[pair, 3], grad_pairs[pair, 4], grad_pairs[pair, 5] = grad_b, grad_c, grad_opacity
            for channel in range(channels):
                total = 0.0
                for pixel in range(len(xs)):
                    total += weights[pixel] * grad_colour[channel, pixel]
                grad_pairs[pair, 6 + channel] = total
    return grad_pairs, grad_background


@numba.njit(cache=True, nogil=True)
def sum_by_gaussian(grad_pairs, gaussians, count):
    """Each Gaussian's gradient: the sum over its pairs, in the lists' order (the same every run)."""
    grads = np.zeros((count, grad_pairs.shape[1]), grad_pairs.dtype)
    for pair in range(len(gaussians)):
        for field in range(grad_pairs.shape[1]):
            grads[gaussians[pair], field] += grad_pairs[pair, field]
    return grads
