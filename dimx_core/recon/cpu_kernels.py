"""The CPU's kernels: gsplat's projection, SH colours and per-tile compositing, forward and backward, and the
loss's SSIM, as loops that numba compiles.

On the CPU the tensor formulation in reference.py spends most of a small view's time in the overhead of some
hundreds of operations, not in arithmetic. These loops do what gsplat's CUDA kernels do: project and shade a
Gaussian per task; list the Gaussians of each tile front to back, composite its pixels with early termination,
and in the backward walk them back to front recovering the transmittance, a tile per task, its pixels evaluated
together in vector registers. numba compiles with the LLVM its wheel ships, so no C compiler is needed; the
machine code is cached beside this file (or in numba's user cache) on first use, which takes some 40 seconds
once per import name and float type. The math and its constants are reference.py's and loss.py's (passed in, so this
module imports nothing of the pack).
"""
from __future__ import annotations

import contextlib
import hashlib
import math
import threading
import typing

import numba
import numpy as np
from numba.core import caching, types
from numba.extending import overload

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


# numba asks the locators in turn; this one answers for this module's kernels only. numba has no public hook for
# a locator (its NUMBA_CACHE_LOCATOR_CLASSES, from 0.68, is process-wide and read from the environment), so this
# uses the list it keeps, unchanged in name since 0.57.
caching.CacheImpl._locator_classes.insert(0, _CachePerImportName)


@contextlib.contextmanager
def threads(count: int):
    """Run the kernels inside on `count` threads (torch's count, capped at numba's pool), one caller at a time."""
    with _ONE_AT_A_TIME:
        numba.set_num_threads(max(1, min(count, numba.config.NUMBA_NUM_THREADS)))
        yield


@numba.njit(cache=True, nogil=True, parallel=True)
def tile_lists(means2d, radii, conics, opacities, order, width, height, tile, alpha_threshold):
    """gsplat's intersection lists, for every tile the Gaussians of `order` (front to back) whose footprint box
    holds one of its pixel centres, in that order, less those whose alpha stays below `alpha_threshold` over the
    whole rectangle of the tile's pixel centres (they add nothing to it, forward or backward; a fifth of the pairs
    gsplat lists). Returns the lists' starts (tiles + 1) and the Gaussians."""
    tiles_x, tiles_y = (width + tile - 1) // tile, (height + tile - 1) // tile
    boxes = np.empty((len(order), 4), np.int64)
    candidates = np.zeros(len(order) + 1, np.int64)  # each Gaussian's first tile of its box, counted over all
    for rank in range(len(order)):
        gaussian = order[rank]
        # pixel column j is covered when |j + 0.5 - x| <= radius
        x_first = max(math.ceil(means2d[gaussian, 0] - radii[gaussian, 0] - 0.5), 0)
        x_last = min(math.floor(means2d[gaussian, 0] + radii[gaussian, 0] - 0.5), width - 1)
        y_first = max(math.ceil(means2d[gaussian, 1] - radii[gaussian, 1] - 0.5), 0)
        y_last = min(math.floor(means2d[gaussian, 1] + radii[gaussian, 1] - 0.5), height - 1)
        if x_last < x_first or y_last < y_first:
            boxes[rank] = 1, 0, 1, 0  # no tiles
        else:
            boxes[rank] = x_first // tile, x_last // tile, y_first // tile, y_last // tile
        candidates[rank + 1] = candidates[rank] + (boxes[rank, 1] - boxes[rank, 0] + 1) * (
            boxes[rank, 3] - boxes[rank, 2] + 1)
    reaches = np.empty(candidates[-1], np.bool_)
    for rank in numba.prange(len(order)):
        gaussian = order[rank]
        # alpha = opacity exp(-sigma) reaches the threshold where sigma <= log(opacity / threshold)
        highest = math.log(opacities[gaussian] / alpha_threshold) + 1e-6
        box_width = boxes[rank, 1] - boxes[rank, 0] + 1
        for tile_y in range(boxes[rank, 2], boxes[rank, 3] + 1):
            for tile_x in range(boxes[rank, 0], boxes[rank, 1] + 1):
                left, top = tile_x * tile, tile_y * tile
                # the place computed, not counted: numba takes a counter in a parallel loop for a reduction
                candidate = candidates[rank] + (tile_y - boxes[rank, 2]) * box_width + tile_x - boxes[rank, 0]
                reaches[candidate] = _lowest_sigma(
                    left + 0.5 - means2d[gaussian, 0], min(left + tile, width) - 0.5 - means2d[gaussian, 0],
                    top + 0.5 - means2d[gaussian, 1], min(top + tile, height) - 0.5 - means2d[gaussian, 1],
                    conics[gaussian, 0], conics[gaussian, 1], conics[gaussian, 2]) <= highest
    starts = np.zeros(tiles_x * tiles_y + 1, np.int64)
    for rank in range(len(order)):
        candidate = candidates[rank]
        for tile_y in range(boxes[rank, 2], boxes[rank, 3] + 1):
            for tile_x in range(boxes[rank, 0], boxes[rank, 1] + 1):
                starts[tile_y * tiles_x + tile_x + 1] += reaches[candidate]
                candidate += 1
    starts = np.cumsum(starts)
    filled = starts[:-1].copy()
    gaussians = np.empty(starts[-1], np.int64)
    for rank in range(len(order)):
        candidate = candidates[rank]
        for tile_y in range(boxes[rank, 2], boxes[rank, 3] + 1):
            for tile_x in range(boxes[rank, 0], boxes[rank, 1] + 1):
                if reaches[candidate]:
                    index = tile_y * tiles_x + tile_x
                    gaussians[filled[index]] = order[rank]
                    filled[index] += 1
                candidate += 1
    return starts, gaussians


@numba.njit(cache=True, nogil=True)
def _lowest_sigma(dx_first, dx_last, dy_first, dy_last, conic_a, conic_b, conic_c):
    """The least sigma = (a dx^2 + c dy^2) / 2 + b dx dy over the rectangle of offsets from a Gaussian's centre:
    0 where it holds the centre, else on an edge, each edge's least at its clamped stationary point (the conic is
    positive definite; -inf where it is not, so that nothing is left out)."""
    if conic_a <= 0.0 or conic_c <= 0.0 or conic_a * conic_c <= conic_b * conic_b:
        return -math.inf
    if dx_first <= 0.0 <= dx_last and dy_first <= 0.0 <= dy_last:
        return 0.0
    lowest = math.inf
    for dx in (dx_first, dx_last):
        dy = min(max(-conic_b * dx / conic_c, dy_first), dy_last)
        lowest = min(lowest, 0.5 * (conic_a * dx * dx + conic_c * dy * dy) + conic_b * dx * dy)
    for dy in (dy_first, dy_last):
        dx = min(max(-conic_b * dy / conic_a, dx_first), dx_last)
        lowest = min(lowest, 0.5 * (conic_a * dx * dx + conic_c * dy * dy) + conic_b * dx * dy)
    return lowest


def _real(value, like):
    """`value` in the float type of `like` (an array or a float). numba types a float literal as float64, which
    would turn a float32 kernel's arithmetic into float64, half as many values to a vector register."""
    return np.asarray(like).dtype.type(value)


@overload(_real, inline="always")
def _real_compiled(value, like):
    real = like.dtype if isinstance(like, types.Array) else like
    return lambda value, like: real(value)


@numba.njit(cache=True, nogil=True)
def _pixel_centres(left, top, columns, rows, like):
    """The centres of a tile's pixels, row by row (a table: no integer division in the loops over them), in the
    float type of `like`."""
    xs, ys = np.empty(rows * columns, like.dtype), np.empty(rows * columns, like.dtype)
    for row in range(rows):
        for column in range(columns):
            xs[row * columns + column], ys[row * columns + column] = left + column + 0.5, top + row + 0.5
    return xs, ys


_TAYLOR_EXP = tuple(1 / math.factorial(power) for power in range(11, -1, -1))  # 1 / k!, the highest power first


@numba.njit(cache=True, nogil=True, inline="always")
def _falloff(sigma):
    """exp(-sigma) for 0 <= sigma <= 6, the whole range where an alpha can reach 1/255 (opacity <= 1); larger
    sigmas give exp(-6), under the threshold all the same. Written out because math.exp is a scalar call into libm
    that keeps LLVM from evaluating a tile's pixels together in vector registers (numba vectorizes it only with
    Intel's SVML, which exists for x86 alone): exp(-sigma / 16) by its Taylor series to degree 11, then squared
    four times, within 2e-13 of exp in float64 (float32 rounds it the way it rounds math.exp)."""
    x = -min(sigma, _real(6.0, sigma)) * _real(0.0625, sigma)
    series = _real(0.0, sigma)
    for coefficient in _TAYLOR_EXP:  # Horner's scheme
        series = series * x + _real(coefficient, sigma)
    series *= series
    series *= series
    series *= series
    return series * series


@numba.njit(cache=True, nogil=True, inline="always")
def _alpha(x, y, mx, my, conic_a, conic_b, conic_c, opacity, max_alpha):
    """A Gaussian's exp(-sigma) and alpha at the pixel centre (x, y); zero where sigma < 0, which gsplat skips."""
    dx, dy = x - mx, y - my
    sigma = _real(0.5, x) * (conic_a * dx * dx + conic_c * dy * dy) + conic_b * dx * dy
    falloff = _falloff(sigma) if sigma >= _real(0.0, x) else _real(0.0, x)
    return falloff, min(max_alpha, opacity * falloff)


# The loops over a tile's pixels below use selects, not branches, and keep the loops over channels apart: so LLVM
# runs each of them on several pixels at once.

@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy", fastmath=_FAST)
def composite(starts, gaussians, means2d, conics, opacities, colors, background, width, height, tile,
              alpha_threshold, max_alpha, min_transmittance):
    """Front-to-back compositing, a tile per task: each Gaussian of the tile's list is read once and evaluated
    at all the tile's pixels, in the colours' float type. Returns the image (H, W, D + 1: colours over the
    background and the coverage), and per pixel the end of its list that it reached and its final transmittance."""
    tiles_x = (width + tile - 1) // tile
    channels = colors.shape[1]
    zero, one = _real(0.0, colors), _real(1.0, colors)
    alpha_threshold, max_alpha = _real(alpha_threshold, colors), _real(max_alpha, colors)
    min_transmittance = _real(min_transmittance, colors)
    image = np.empty((height, width, channels + 1), colors.dtype)
    reached = np.empty((height, width), np.int64)
    final = np.empty((height, width), colors.dtype)
    for index in numba.prange(len(starts) - 1):
        left, top = (index % tiles_x) * tile, (index // tiles_x) * tile
        xs, ys = _pixel_centres(left, top, min(tile, width - left), min(tile, height - top), colors)
        transmittance = np.ones(len(xs), colors.dtype)  # 0 once a pixel has stopped, its last one kept below
        last_transmittance = np.zeros(len(xs), colors.dtype)
        end = np.zeros(len(xs), np.int32)  # past the last Gaussian each pixel added, counted from the list's start
        colour, weights = np.zeros((channels, len(xs)), colors.dtype), np.empty(len(xs), colors.dtype)
        for pair in range(starts[index], starts[index + 1]):
            gaussian = gaussians[pair]
            mx, my, opacity = means2d[gaussian, 0], means2d[gaussian, 1], opacities[gaussian]
            conic_a, conic_b, conic_c = conics[gaussian, 0], conics[gaussian, 1], conics[gaussian, 2]
            still_open, next_place = False, np.int32(pair + 1 - starts[index])
            for pixel in range(len(xs)):
                _, alpha = _alpha(xs[pixel], ys[pixel], mx, my, conic_a, conic_b, conic_c, opacity, max_alpha)
                before = transmittance[pixel]
                behind = before * (one - alpha)
                counts = (alpha >= alpha_threshold) & (before > zero)
                stops = counts & (behind <= min_transmittance)  # before this Gaussian: its pixel is done
                adds = counts & ~stops
                weights[pixel] = alpha * before if adds else zero
                last_transmittance[pixel] = before if stops else last_transmittance[pixel]
                transmittance[pixel] = zero if stops else (behind if adds else before)
                end[pixel] = next_place if adds else end[pixel]
                still_open |= before > zero
            for channel in range(channels):
                value = colors[gaussian, channel]
                for pixel in range(len(xs)):
                    colour[channel, pixel] += weights[pixel] * value
            if not still_open:
                break
        for pixel in range(len(xs)):
            py, px = int(ys[pixel]), int(xs[pixel])
            remaining = transmittance[pixel] if transmittance[pixel] > 0.0 else last_transmittance[pixel]
            reached[py, px], final[py, px] = starts[index] + end[pixel], remaining
            for channel in range(channels):
                image[py, px, channel] = colour[channel, pixel] + remaining * background[channel]
            image[py, px, channels] = 1.0 - remaining
    return image, reached, final


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy", fastmath=_FAST)
def composite_backward(starts, gaussians, means2d, conics, opacities, colors, background, reached, final, grad_image,
                       tile, alpha_threshold, max_alpha):
    """gsplat's backward, a tile per task: the tile's Gaussians back to front from the last one a pixel reached,
    each pixel's transmittance before a Gaussian recovered from the one after it. Returns the gradients per pair,
    field by field (means2d 2, conics 3, opacity 1, colour D; a pair belongs to one tile, so tiles write them
    without conflict), and per pixel for the background."""
    height, width = reached.shape
    tiles_x = (width + tile - 1) // tile
    channels = colors.shape[1]
    grad_pairs = np.zeros((6 + channels, len(gaussians)), colors.dtype)
    grad_background = np.empty((height, width, channels), colors.dtype)
    zero, one, half = _real(0.0, colors), _real(1.0, colors), _real(0.5, colors)
    alpha_threshold, max_alpha = _real(alpha_threshold, colors), _real(max_alpha, colors)
    for index in numba.prange(len(starts) - 1):
        left, top = (index % tiles_x) * tile, (index // tiles_x) * tile
        xs, ys = _pixel_centres(left, top, min(tile, width - left), min(tile, height - top), colors)
        transmittance, ends = np.empty(len(xs), colors.dtype), np.empty(len(xs), np.int32)  # ends from the start
        after = np.empty(len(xs), colors.dtype)  # d loss / d alpha reaching each Gaussian from all behind it
        grad_colour = np.empty((channels + 1, len(xs)), colors.dtype)
        own, weights = np.empty(len(xs), colors.dtype), np.empty(len(xs), colors.dtype)
        last = starts[index]
        for pixel in range(len(xs)):
            py, px = int(ys[pixel]), int(xs[pixel])
            ends[pixel], transmittance[pixel] = reached[py, px] - starts[index], final[py, px]
            through_background = zero
            for channel in range(channels + 1):
                grad_colour[channel, pixel] = grad_image[py, px, channel]
            for channel in range(channels):
                through_background += background[channel] * grad_colour[channel, pixel]
                grad_background[py, px, channel] = final[py, px] * grad_colour[channel, pixel]
            # the final transmittance reaches every alpha, through the background and the coverage
            after[pixel] = final[py, px] * (through_background - grad_colour[channels, pixel])
            last = max(last, reached[py, px])
        for pair in range(last - 1, starts[index] - 1, -1):
            gaussian = gaussians[pair]
            mx, my, opacity = means2d[gaussian, 0], means2d[gaussian, 1], opacities[gaussian]
            conic_a, conic_b, conic_c = conics[gaussian, 0], conics[gaussian, 1], conics[gaussian, 2]
            own[:] = zero  # its colour . d loss / d pixel colour
            for channel in range(channels):
                value = colors[gaussian, channel]
                for pixel in range(len(xs)):
                    own[pixel] += value * grad_colour[channel, pixel]
            grad_mx = grad_my = grad_a = grad_b = grad_c = grad_opacity = zero
            place = np.int32(pair - starts[index])
            for pixel in range(len(xs)):
                falloff, alpha = _alpha(xs[pixel], ys[pixel], mx, my, conic_a, conic_b, conic_c, opacity, max_alpha)
                counts = (alpha >= alpha_threshold) & (place < ends[pixel])
                before = transmittance[pixel] / (one - alpha) if counts else transmittance[pixel]
                transmittance[pixel] = before
                weight = alpha * before if counts else zero
                weights[pixel] = weight
                # d loss / d alpha: its own colour, less what it hides (the colours behind, the background); none
                # where alpha was clamped
                grad_alpha = before * own[pixel] - after[pixel] / (one - alpha)
                grad_alpha = grad_alpha if counts & (opacity * falloff < max_alpha) else zero
                after[pixel] += weight * own[pixel]
                grad_sigma = -alpha * grad_alpha
                dx, dy = xs[pixel] - mx, ys[pixel] - my
                grad_mx -= grad_sigma * (conic_a * dx + conic_b * dy)
                grad_my -= grad_sigma * (conic_c * dy + conic_b * dx)
                grad_a += grad_sigma * half * dx * dx
                grad_b += grad_sigma * dx * dy
                grad_c += grad_sigma * half * dy * dy
                grad_opacity += grad_alpha * falloff
            grad_pairs[0, pair], grad_pairs[1, pair], grad_pairs[2, pair] = grad_mx, grad_my, grad_a
            grad_pairs[3, pair], grad_pairs[4, pair], grad_pairs[5, pair] = grad_b, grad_c, grad_opacity
            for channel in range(channels):
                total = zero
                for pixel in range(len(xs)):
                    total += weights[pixel] * grad_colour[channel, pixel]
                grad_pairs[6 + channel, pair] = total
    return grad_pairs, grad_background


@numba.njit(cache=True, nogil=True, parallel=True)
def sum_by_gaussian(grad_pairs, gaussians, count):
    """Each Gaussian's gradient (count, fields): the sum over its pairs in the lists' order (the same every run),
    a field per task."""
    grads = np.zeros((len(grad_pairs), count), grad_pairs.dtype)
    for field in numba.prange(len(grad_pairs)):
        for pair in range(len(gaussians)):
            grads[field, gaussians[pair]] += grad_pairs[field, pair]
    return grads.T


# The projection's 3-vectors and 3x3 matrices (rows of 3-vectors) are tuples: values in registers, where arrays
# would be allocated on the heap for every Gaussian.

@numba.njit(cache=True, nogil=True)
def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


@numba.njit(cache=True, nogil=True)
def _scaled(vector, factor):
    return vector[0] * factor, vector[1] * factor, vector[2] * factor


@numba.njit(cache=True, nogil=True)
def _plus(a, b):
    return a[0] + b[0], a[1] + b[1], a[2] + b[2]


@numba.njit(cache=True, nogil=True)
def _transposed(matrix):
    return ((matrix[0][0], matrix[1][0], matrix[2][0]), (matrix[0][1], matrix[1][1], matrix[2][1]),
            (matrix[0][2], matrix[1][2], matrix[2][2]))


@numba.njit(cache=True, nogil=True)
def _times(matrix, vector):
    return _dot(matrix[0], vector), _dot(matrix[1], vector), _dot(matrix[2], vector)


@numba.njit(cache=True, nogil=True)
def _matmul(a, b):
    columns = _transposed(b)
    return _times(columns, a[0]), _times(columns, a[1]), _times(columns, a[2])


@numba.njit(cache=True, nogil=True)
def _matrix_plus(a, b):
    return _plus(a[0], b[0]), _plus(a[1], b[1]), _plus(a[2], b[2])


@numba.njit(cache=True, nogil=True)
def _scaled_columns(matrix, scale):
    """matrix @ diag(scale)."""
    return (_multiplied(matrix[0], scale), _multiplied(matrix[1], scale), _multiplied(matrix[2], scale))


@numba.njit(cache=True, nogil=True)
def _multiplied(a, b):
    return a[0] * b[0], a[1] * b[1], a[2] * b[2]


@numba.njit(cache=True, nogil=True)
def _rotation(quat):
    """The rotation of a quaternion (w, x, y, z) after normalising it, and its norm (at least 1e-12)."""
    norm = max(math.sqrt(quat[0] ** 2 + quat[1] ** 2 + quat[2] ** 2 + quat[3] ** 2), 1e-12)
    w, x, y, z = quat[0] / norm, quat[1] / norm, quat[2] / norm, quat[3] / norm
    return ((1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)),
            (2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)),
            (2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y))), norm


@numba.njit(cache=True, nogil=True)
def _gaussian(means, quats, scales, gaussian):
    """A Gaussian's mean, its rotation R(q) (and the quaternion's norm), its scales and R(q) S."""
    turn, norm = _rotation(quats[gaussian])
    scale = (scales[gaussian, 0], scales[gaussian, 1], scales[gaussian, 2])
    mean = (means[gaussian, 0], means[gaussian, 1], means[gaussian, 2])
    return mean, turn, norm, scale, _scaled_columns(turn, scale)


@numba.njit(cache=True, nogil=True)
def _camera(viewmats, camera):
    """A viewmat's rotation (rows) and translation."""
    v = viewmats[camera]
    return (((v[0, 0], v[0, 1], v[0, 2]), (v[1, 0], v[1, 1], v[1, 2]), (v[2, 0], v[2, 1], v[2, 2])),
            (v[0, 3], v[1, 3], v[2, 3]))


class _Ewa(typing.NamedTuple):
    """One Gaussian's EWA terms in one camera, named as in reference._ewa."""
    root_c: tuple  # W R(q) S
    mean_c: tuple  # x, y and the depth
    z: float  # the depth where it is within the planes, else 1
    in_depth: bool
    u: float
    w: float
    u_free: bool
    w_free: bool
    gain_x: float
    gain_y: float
    row_x: tuple
    row_y: tuple
    a: float
    b: float
    c: float
    det: float


@numba.njit(cache=True, nogil=True)
def _ewa(mean, scaled_turn, rotation, translation, K, width, height, eps2d, near_plane, far_plane):
    """reference._ewa for one Gaussian and one camera, the same operations in the same order."""
    mean_c = _plus(_times(rotation, mean), translation)
    root_c = _matmul(rotation, scaled_turn)
    x, y, depth = mean_c
    in_depth = near_plane <= depth <= far_plane
    z = depth if in_depth else 1.0
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    x_over_z, y_over_z = x / z, y / z
    u = min(max(x_over_z, -(cx / fx + 0.3 * tan_fovx)), (width - cx) / fx + 0.3 * tan_fovx)
    w = min(max(y_over_z, -(cy / fy + 0.3 * tan_fovy)), (height - cy) / fy + 0.3 * tan_fovy)
    gain_x, gain_y = fx / z, fy / z
    row_x = _scaled(_plus(root_c[0], _scaled(root_c[2], -u)), gain_x)
    row_y = _scaled(_plus(root_c[1], _scaled(root_c[2], -w)), gain_y)
    a, b, c = _dot(row_x, row_x) + eps2d, _dot(row_x, row_y), _dot(row_y, row_y) + eps2d
    return _Ewa(root_c, mean_c, z, in_depth, u, w, u == x_over_z, w == y_over_z, gain_x, gain_y, row_x, row_y, a,
                b, c, a * c - b * b)


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def project(means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
            radius_clip, alpha_threshold):
    """reference._Project's forward, a Gaussian per task: radii (C, N, 2), means2d (C, N, 2), depths (C, N) and
    conics (C, N, 3)."""
    cameras, count = len(viewmats), len(means)
    radii = np.zeros((cameras, count, 2), np.int32)
    means2d = np.empty((cameras, count, 2), means.dtype)
    depths = np.empty((cameras, count), means.dtype)
    conics = np.empty((cameras, count, 3), means.dtype)
    for gaussian in numba.prange(count):
        _project_one(gaussian, means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane,
                     far_plane, radius_clip, alpha_threshold, radii, means2d, depths, conics)
    return radii, means2d, depths, conics


# Each kernel's task is a function of its own: numba's analysis of parallel loops does not follow the tuples.

@numba.njit(cache=True, nogil=True)
def _project_one(gaussian, means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane,
                 far_plane, radius_clip, alpha_threshold, radii, means2d, depths, conics):
    mean, _, _, _, scaled_turn = _gaussian(means, quats, scales, gaussian)
    opacity = opacities[gaussian]
    extend = min(math.sqrt(2.0 * math.log(max(opacity, alpha_threshold) / alpha_threshold)), 3.33)
    for camera in range(len(viewmats)):
        rotation, translation = _camera(viewmats, camera)
        t = _ewa(mean, scaled_turn, rotation, translation, Ks[camera], width, height, eps2d, near_plane, far_plane)
        safe_det = t.det if t.det > 0 else 1.0
        mx, my = t.gain_x * t.mean_c[0] + Ks[camera, 0, 2], t.gain_y * t.mean_c[1] + Ks[camera, 1, 2]
        means2d[camera, gaussian, 0], means2d[camera, gaussian, 1] = mx, my
        depths[camera, gaussian] = t.mean_c[2]
        conics[camera, gaussian, 0] = t.c / safe_det
        conics[camera, gaussian, 1] = -t.b / safe_det
        conics[camera, gaussian, 2] = t.a / safe_det
        radius_x = math.ceil(extend * math.sqrt(max(t.a, 0.0)))
        radius_y = math.ceil(extend * math.sqrt(max(t.c, 0.0)))
        if (t.in_depth and t.det > 0 and opacity >= alpha_threshold
                and (radius_x > radius_clip or radius_y > radius_clip)
                and mx + radius_x > 0 and mx - radius_x < width and my + radius_y > 0 and my - radius_y < height):
            radii[camera, gaussian, 0], radii[camera, gaussian, 1] = radius_x, radius_y


@numba.njit(cache=True, nogil=True)
def _outer(a, b):
    return _scaled(b, a[0]), _scaled(b, a[1]), _scaled(b, a[2])


@numba.njit(cache=True, nogil=True)
def _quat_backward(quat, norm, grad_turn):
    """reference._quat_backward for one quaternion: d loss / d quat from d loss / d R(quat)."""
    w, x, y, z = quat[0] / norm, quat[1] / norm, quat[2] / norm, quat[3] / norm
    (g0, g1, g2), (g3, g4, g5), (g6, g7, g8) = grad_turn
    grad_w = 2 * (-z * g1 + y * g2 + z * g3 - x * g5 - y * g6 + x * g7)
    grad_x = 2 * (y * g1 + z * g2 + y * g3 - 2 * x * g4 - w * g5 + z * g6 + w * g7 - 2 * x * g8)
    grad_y = 2 * (-2 * y * g0 + x * g1 + w * g2 + x * g3 + z * g5 - w * g6 + z * g7 - 2 * y * g8)
    grad_z = 2 * (-2 * z * g0 - w * g1 + x * g2 + w * g3 - 2 * z * g4 + y * g5 + x * g6 + y * g7)
    along = w * grad_w + x * grad_x + y * grad_y + z * grad_z
    return ((grad_w - along * w) / norm, (grad_x - along * x) / norm, (grad_y - along * y) / norm,
            (grad_z - along * z) / norm)


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def project_backward(means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane, far_plane, grad_means2d,
                     grad_depths, grad_conics):
    """reference._Project's backward, a Gaussian per task (its forward terms computed again): gradients for the
    means, quats and scales, and per camera and Gaussian the 12 of its viewmat's top rows (the rotation row by
    row, then the translation), which the caller sums over the Gaussians."""
    cameras, count = len(viewmats), len(means)
    grad_means = np.empty((count, 3), means.dtype)
    grad_quats = np.empty((count, 4), means.dtype)
    grad_scales = np.empty((count, 3), means.dtype)
    grad_viewmats = np.empty((cameras, count, 12), means.dtype)
    for gaussian in numba.prange(count):
        _project_backward_one(gaussian, means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane,
                              far_plane, grad_means2d, grad_depths, grad_conics, grad_means, grad_quats, grad_scales,
                              grad_viewmats)
    return grad_means, grad_quats, grad_scales, grad_viewmats


@numba.njit(cache=True, nogil=True)
def _project_backward_one(gaussian, means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
                          grad_means2d, grad_depths, grad_conics, grad_means, grad_quats, grad_scales, grad_viewmats):
    mean, turn, norm, scale, scaled_turn = _gaussian(means, quats, scales, gaussian)
    zero = (0.0, 0.0, 0.0)
    grad_mean, grad_scaled_turn = zero, (zero, zero, zero)
    for camera in range(len(viewmats)):
        rotation, translation = _camera(viewmats, camera)
        t = _ewa(mean, scaled_turn, rotation, translation, Ks[camera], width, height, eps2d, near_plane, far_plane)
        # conic = (c, -b, a) / det with det = a c - b^2 (a constant 1 where det <= 0)
        grad_a_inv, grad_b_inv, grad_c_inv = (grad_conics[camera, gaussian, 0], grad_conics[camera, gaussian, 1],
                                              grad_conics[camera, gaussian, 2])
        det = t.det if t.det > 0 else 1.0
        grad_det = -(grad_a_inv * (t.c / det) + grad_b_inv * (-t.b / det) + grad_c_inv * (t.a / det)) / det
        grad_det = grad_det if t.det > 0 else 0.0
        grad_a = grad_c_inv / det + grad_det * t.c
        grad_b = -grad_b_inv / det - 2 * t.b * grad_det
        grad_c = grad_a_inv / det + grad_det * t.a
        grad_row_x = _plus(_scaled(t.row_x, 2 * grad_a), _scaled(t.row_y, grad_b))
        grad_row_y = _plus(_scaled(t.row_y, 2 * grad_c), _scaled(t.row_x, grad_b))
        # the rows of J W R S: (fx/z)(M0 - u M2) and (fy/z)(M1 - w M2)
        grad_root = (_scaled(grad_row_x, t.gain_x), _scaled(grad_row_y, t.gain_y),
                     _plus(_scaled(grad_row_x, -(t.gain_x * t.u)), _scaled(grad_row_y, -(t.gain_y * t.w))))
        grad_u = -t.gain_x * _dot(grad_row_x, t.root_c[2]) if t.u_free else 0.0
        grad_w = -t.gain_y * _dot(grad_row_y, t.root_c[2]) if t.w_free else 0.0
        grad_x = grad_means2d[camera, gaussian, 0] * t.gain_x + grad_u / t.z
        grad_y = grad_means2d[camera, gaussian, 1] * t.gain_y + grad_w / t.z
        through_z = -(_dot(grad_row_x, t.row_x) + _dot(grad_row_y, t.row_y) + grad_x * t.mean_c[0]
                      + grad_y * t.mean_c[1]) / t.z
        grad_mean_c = (grad_x, grad_y, grad_depths[camera, gaussian] + (through_z if t.in_depth else 0.0))
        rotation_t = _transposed(rotation)
        grad_mean = _plus(grad_mean, _times(rotation_t, grad_mean_c))
        grad_scaled_turn = _matrix_plus(grad_scaled_turn, _matmul(rotation_t, grad_root))
        grad_rotation = _matrix_plus(_outer(grad_mean_c, mean), _matmul(grad_root, _transposed(scaled_turn)))
        for row in range(3):
            for column in range(3):
                grad_viewmats[camera, gaussian, 3 * row + column] = grad_rotation[row][column]
            grad_viewmats[camera, gaussian, 9 + row] = grad_mean_c[row]
    for axis in range(3):
        grad_means[gaussian, axis] = grad_mean[axis]
        grad_scales[gaussian, axis] = (grad_scaled_turn[0][axis] * turn[0][axis]
                                       + grad_scaled_turn[1][axis] * turn[1][axis]
                                       + grad_scaled_turn[2][axis] * turn[2][axis])
    grad_quat = _quat_backward(quats[gaussian], norm, _scaled_columns(grad_scaled_turn, scale))
    for part in range(4):
        grad_quats[gaussian, part] = grad_quat[part]


@numba.njit(cache=True, nogil=True)
def _sh_basis(x, y, z, c):
    """reference.evaluate_sh's 16 basis functions at the unit direction (x, y, z); `c` holds SH_C0, SH_C1, SH_C2
    and SH_C3 in a row."""
    xx, yy, zz = x * x, y * y, z * z
    return (c[0], -c[1] * y, c[1] * z, -c[1] * x,
            c[2] * x * y, c[3] * y * z, c[4] * (2 * zz - xx - yy), c[5] * x * z, c[6] * (xx - yy),
            c[7] * y * (3 * xx - yy), c[8] * x * y * z, c[9] * y * (4 * zz - xx - yy),
            c[10] * z * (2 * zz - 3 * xx - 3 * yy), c[11] * x * (4 * zz - xx - yy), c[12] * z * (xx - yy),
            c[13] * x * (xx - 3 * yy))


@numba.njit(cache=True, nogil=True)
def _sh_basis_backward(x, y, z, c, g):
    """d loss / d (x, y, z) from d loss / d each basis function (`g`, 16)."""
    xx, yy, zz = x * x, y * y, z * z
    grad_x = -c[1] * g[3] + c[2] * y * g[4] - 2 * c[4] * x * g[6] + c[5] * z * g[7] + 2 * c[6] * x * g[8]
    grad_y = -c[1] * g[1] + c[2] * x * g[4] + c[3] * z * g[5] - 2 * c[4] * y * g[6] - 2 * c[6] * y * g[8]
    grad_z = c[1] * g[2] + c[3] * y * g[5] + 4 * c[4] * z * g[6] + c[5] * x * g[7]
    grad_x += (6 * c[7] * x * y * g[9] + c[8] * y * z * g[10] - 2 * c[9] * x * y * g[11] - 6 * c[10] * x * z * g[12]
               + c[11] * (4 * zz - 3 * xx - yy) * g[13] + 2 * c[12] * x * z * g[14] + 3 * c[13] * (xx - yy) * g[15])
    grad_y += (3 * c[7] * (xx - yy) * g[9] + c[8] * x * z * g[10] + c[9] * (4 * zz - xx - 3 * yy) * g[11]
               - 6 * c[10] * y * z * g[12] - 2 * c[11] * x * y * g[13] - 2 * c[12] * y * z * g[14]
               - 6 * c[13] * x * y * g[15])
    grad_z += (c[8] * x * y * g[10] + 8 * c[9] * y * z * g[11] + c[10] * (6 * zz - 3 * xx - 3 * yy) * g[12]
               + 8 * c[11] * x * z * g[13] + c[12] * (xx - yy) * g[14])
    return grad_x, grad_y, grad_z


@numba.njit(cache=True, nogil=True)
def _unit_direction(means, gaussian, centres, camera):
    """The direction from a camera's centre to a Gaussian, normalised as torch's normalize does, and its norm."""
    direction = (means[gaussian, 0] - centres[camera, 0], means[gaussian, 1] - centres[camera, 1],
                 means[gaussian, 2] - centres[camera, 2])
    norm = max(math.sqrt(_dot(direction, direction)), 1e-12)
    return _scaled(direction, 1.0 / norm), norm


@numba.njit(cache=True, nogil=True)
def _shade(basis, coeffs, gaussian, channel, terms):
    """One colour channel before the offset and the clamp: the basis against the coefficients."""
    total = 0.0
    for term in range(terms):
        total += basis[term] * coeffs[gaussian, term, channel]
    return total


@numba.njit(cache=True, nogil=True)
def _passed(grad_colours, camera, gaussian, channel, basis, coeffs, terms):
    """The colour's gradient where max(. + 0.5, 0) lets it through: where its input is >= 0, as torch's
    clamp_min."""
    if _shade(basis, coeffs, gaussian, channel, terms) + 0.5 >= 0.0:
        return grad_colours[camera, gaussian, channel]
    return 0.0


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def sh_colours(means, coeffs, centres, seen, degree, constants):
    """max(SH + 0.5, 0) of the Gaussians `seen` in each camera (C, N, 3; zero for the others; coeffs (N, K, 3)), a
    Gaussian per task: reference.evaluate_sh at the directions from the camera centres."""
    cameras, terms = len(centres), (degree + 1) ** 2
    colours = np.zeros((cameras, len(means), 3), coeffs.dtype)
    for place in numba.prange(len(seen)):
        _sh_colours_one(seen[place], means, coeffs, centres, terms, constants, colours)
    return colours


@numba.njit(cache=True, nogil=True)
def _sh_colours_one(gaussian, means, coeffs, centres, terms, constants, colours):
    for camera in range(len(centres)):
        (x, y, z), _ = _unit_direction(means, gaussian, centres, camera)
        basis = _sh_basis(x, y, z, constants)
        for channel in range(3):
            colours[camera, gaussian, channel] = max(_shade(basis, coeffs, gaussian, channel, terms) + 0.5, 0.0)


@numba.njit(cache=True, nogil=True)
def _basis_grad(coeffs, gaussian, term, terms, grad):
    """d loss / d one basis function: its coefficients against the colour's gradient (none past the degree)."""
    if term >= terms:
        return 0.0
    return (coeffs[gaussian, term, 0] * grad[0] + coeffs[gaussian, term, 1] * grad[1]
            + coeffs[gaussian, term, 2] * grad[2])


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy")
def sh_colours_backward(means, coeffs, centres, seen, degree, constants, grad_colours):
    """sh_colours' backward, a Gaussian per task: gradients for the coefficients (N, K, 3), the means (N, 3) and
    per camera and seen Gaussian for the camera's centre (C, S, 3), which the caller sums."""
    cameras, terms = len(centres), (degree + 1) ** 2
    grad_coeffs = np.zeros(coeffs.shape, coeffs.dtype)
    grad_means = np.zeros(means.shape, means.dtype)
    grad_centres = np.empty((cameras, len(seen), 3), means.dtype)
    for place in numba.prange(len(seen)):
        _sh_colours_backward_one(place, seen[place], means, coeffs, centres, terms, constants, grad_colours,
                                 grad_coeffs, grad_means, grad_centres)
    return grad_coeffs, grad_means, grad_centres


@numba.njit(cache=True, nogil=True)
def _sh_colours_backward_one(place, gaussian, means, coeffs, centres, terms, constants, grad_colours, grad_coeffs,
                             grad_means, grad_centres):
    grad_mean = (0.0, 0.0, 0.0)
    for camera in range(len(centres)):
        unit, norm = _unit_direction(means, gaussian, centres, camera)
        basis = _sh_basis(unit[0], unit[1], unit[2], constants)
        grad = (_passed(grad_colours, camera, gaussian, 0, basis, coeffs, terms),
                _passed(grad_colours, camera, gaussian, 1, basis, coeffs, terms),
                _passed(grad_colours, camera, gaussian, 2, basis, coeffs, terms))
        for term in range(terms):
            for channel in range(3):
                grad_coeffs[gaussian, term, channel] += basis[term] * grad[channel]
        grad_basis = (
            _basis_grad(coeffs, gaussian, 0, terms, grad), _basis_grad(coeffs, gaussian, 1, terms, grad),
            _basis_grad(coeffs, gaussian, 2, terms, grad), _basis_grad(coeffs, gaussian, 3, terms, grad),
            _basis_grad(coeffs, gaussian, 4, terms, grad), _basis_grad(coeffs, gaussian, 5, terms, grad),
            _basis_grad(coeffs, gaussian, 6, terms, grad), _basis_grad(coeffs, gaussian, 7, terms, grad),
            _basis_grad(coeffs, gaussian, 8, terms, grad), _basis_grad(coeffs, gaussian, 9, terms, grad),
            _basis_grad(coeffs, gaussian, 10, terms, grad), _basis_grad(coeffs, gaussian, 11, terms, grad),
            _basis_grad(coeffs, gaussian, 12, terms, grad), _basis_grad(coeffs, gaussian, 13, terms, grad),
            _basis_grad(coeffs, gaussian, 14, terms, grad), _basis_grad(coeffs, gaussian, 15, terms, grad))
        grad_unit = _sh_basis_backward(unit[0], unit[1], unit[2], constants, grad_basis)
        # through torch's normalize, x / max(|x|, 1e-12)
        along = _dot(unit, grad_unit) if norm > 1e-12 else 0.0
        grad_direction = _scaled(_plus(grad_unit, _scaled(unit, -along)), 1.0 / norm)
        grad_mean = _plus(grad_mean, grad_direction)
        for axis in range(3):
            grad_centres[camera, place, axis] = -grad_direction[axis]
    for axis in range(3):
        grad_means[gaussian, axis] = grad_mean[axis]


# The loss's SSIM (loss.ssim_map): each of the five local statistics of a colour channel is a plane that one task
# blurs along its rows and then its columns, reflecting at the borders; the backward runs the blur's adjoint.

@numba.njit(cache=True, nogil=True)
def _reflected(index, size):
    """torch's "reflect" padding: -1 reads 1, size reads size - 2 (the pad is less than the size)."""
    if index < 0:
        return -index
    if index >= size:
        return 2 * (size - 1) - index
    return index


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _blur(plane, window, out):
    """`plane` (H, W) blurred by the 1D `window` along its rows, then along its columns, into `out`."""
    height, width = plane.shape
    radius = len(window) // 2
    across = np.zeros_like(plane)
    padded = np.empty(width + 2 * radius, plane.dtype)
    for row in range(height):
        for place in range(len(padded)):
            padded[place] = plane[row, _reflected(place - radius, width)]
        for tap in range(len(window)):
            weight = window[tap]
            for column in range(width):
                across[row, column] += weight * padded[column + tap]
    out[:] = 0
    for row in range(height):
        for tap in range(len(window)):
            weight, source = window[tap], _reflected(row + tap - radius, height)
            for column in range(width):
                out[row, column] += weight * across[source, column]


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _blur_adjoint(grad_out, window, grad_plane):
    """_blur's transpose: d loss / d plane from d loss / d out."""
    height, width = grad_out.shape
    radius = len(window) // 2
    grad_across = np.zeros_like(grad_out)
    for row in range(height):
        for tap in range(len(window)):
            weight, source = window[tap], _reflected(row + tap - radius, height)
            for column in range(width):
                grad_across[source, column] += weight * grad_out[row, column]
    padded = np.empty(width + 2 * radius, grad_out.dtype)
    for row in range(height):
        padded[:] = 0
        for tap in range(len(window)):
            weight = window[tap]
            for column in range(width):
                padded[column + tap] += weight * grad_across[row, column]
        grad_plane[row, :] = 0
        for place in range(len(padded)):
            grad_plane[row, _reflected(place - radius, width)] += padded[place]


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy", fastmath=_FAST)
def ssim(render, target, window, c1, c2, eps):
    """loss.ssim_map of two (C, H, W) images: the map (C, H, W), and the blurred statistics (5, C, H, W: the
    means of x, y, x^2, y^2 and xy) its backward reads."""
    channels, height, width = render.shape
    blurred = np.empty((5, channels, height, width), render.dtype)
    for task in numba.prange(5 * channels):
        statistic, channel = task // channels, task % channels
        x, y = render[channel], target[channel]
        plane = x if statistic == 0 else y if statistic == 1 else x * x if statistic == 2 else (
            y * y if statistic == 3 else x * y)
        _blur(plane, window, blurred[statistic, channel])
    c1, c2, eps = _real(c1, render), _real(c2, render), _real(eps, render)
    two = _real(2.0, render)
    similarity = np.empty_like(render)
    for row in numba.prange(height):
        for channel in range(channels):
            for column in range(width):
                mu_x, mu_y = blurred[0, channel, row, column], blurred[1, channel, row, column]
                mu_xy, mu_xx, mu_yy = mu_x * mu_y, mu_x * mu_x, mu_y * mu_y
                numerator = (two * mu_xy + c1) * (two * (blurred[4, channel, row, column] - mu_xy) + c2)
                denominator = (mu_xx + mu_yy + c1) * ((blurred[2, channel, row, column] - mu_xx)
                                                      + (blurred[3, channel, row, column] - mu_yy) + c2)
                similarity[channel, row, column] = numerator / (denominator + eps)
    return similarity, blurred


@numba.njit(cache=True, nogil=True, parallel=True, error_model="numpy", fastmath=_FAST)
def ssim_backward(render, target, window, c1, c2, eps, blurred, grad_similarity):
    """ssim's backward: d loss / d render (C, H, W) from d loss / d map (the target is a constant)."""
    channels, height, width = render.shape
    c1, c2, eps = _real(c1, render), _real(c2, render), _real(eps, render)
    two = _real(2.0, render)
    # d loss / d the blurred means of x, x^2 and xy (y's statistics lead to the target only)
    grad_blurred = np.empty((3, channels, height, width), render.dtype)
    for row in numba.prange(height):
        for channel in range(channels):
            for column in range(width):
                mu_x, mu_y = blurred[0, channel, row, column], blurred[1, channel, row, column]
                mu_xy, mu_xx, mu_yy = mu_x * mu_y, mu_x * mu_x, mu_y * mu_y
                luminance, structure = two * mu_xy + c1, two * (blurred[4, channel, row, column] - mu_xy) + c2
                energy = mu_xx + mu_yy + c1
                spread = (blurred[2, channel, row, column] - mu_xx) + (blurred[3, channel, row, column] - mu_yy) + c2
                denominator = energy * spread + eps
                grad = grad_similarity[channel, row, column] / denominator
                similarity = luminance * structure
                # d map / d luminance, structure, energy, spread, each times the map's gradient
                grad_luminance, grad_structure = grad * structure, grad * luminance
                grad_energy = -grad * similarity * spread / denominator
                grad_spread = -grad * similarity * energy / denominator
                grad_blurred[0, channel, row, column] = two * (mu_y * (grad_luminance - grad_structure)
                                                               + mu_x * (grad_energy - grad_spread))
                grad_blurred[1, channel, row, column] = grad_spread
                grad_blurred[2, channel, row, column] = two * grad_structure
    grad_statistics = np.empty_like(grad_blurred)
    for task in numba.prange(3 * channels):
        statistic, channel = task // channels, task % channels
        _blur_adjoint(grad_blurred[statistic, channel], window, grad_statistics[statistic, channel])
    grad_render = np.empty_like(render)
    for channel in numba.prange(channels):
        for row in range(height):
            for column in range(width):
                grad_render[channel, row, column] = (
                    grad_statistics[0, channel, row, column]
                    + two * render[channel, row, column] * grad_statistics[1, channel, row, column]
                    + target[channel, row, column] * grad_statistics[2, channel, row, column])
    return grad_render
