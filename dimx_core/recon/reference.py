"""The pure-PyTorch reference rasterizer: exact EWA splatting with gsplat's math and gradients.

Same inputs, outputs and conventions as `gsplat.rasterization` (classic mode, packed=False), so the two are
interchangeable and comparable:
- covariance R(q) S S^T R(q)^T, world-to-camera, then the EWA Jacobian of the pinhole projection with the
  view-frustum clamp of x/z and y/z at 1.3x the half field of view; a 0.3-pixel low-pass (eps2d) added to the
  2D covariance;
- culled: centres nearer than `near_plane` or beyond `far_plane`, opacity < 1/255, footprints off the image;
  the footprint radius is opacity-aware, ceil(min(3.33, sqrt(2 ln(255 opacity))) * sqrt(cov_ii));
- per pixel (centre at +0.5), Gaussians front to back by camera depth: alpha = min(0.999, o exp(-sigma)),
  skipped below 1/255, stopping before the Gaussian that would bring transmittance to 1e-4 or below;
  colour = sum w_i c_i + T_final * background;
- SH colours up to degree 3 with gsplat's basis and `max(sh + 0.5, 0)`.
It is tile-based like gsplat: every Gaussian is listed in the tiles (`Kernels.tile` pixels square) that hold a pixel
centre of its footprint box where its alpha reaches 1/255, and only those tiles evaluate it; since that box bounds
every pixel where its alpha does, the image is the one every pixel against every Gaussian would give. Tiles whose
lists have similar lengths are composited together as one padded tensor (few, large operations: MPS's strength);
when a view's work is large each run is checkpointed under autograd, so memory stays bounded on large views (the
GPU fallback without gsplat). On the CPU, where numba imports, cpu_kernels' compiled loops project, shade and
composite instead (`KERNELS`): same images and gradients, a fit at 64x48 in some two sevenths of the time.
"""
from __future__ import annotations

import math
import typing

import torch
from torch.utils.checkpoint import checkpoint

from ..optional import is_installed
from .gaussians import SH_C0

ALPHA_THRESHOLD = 1.0 / 255.0
MAX_ALPHA = 0.999
MIN_TRANSMITTANCE = 1e-4
RUN_GROWTH, RUN_SLACK = 1.5, 16  # tiles composited together: lists within 1.5x + 16 of each other
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)
SH_CONSTANTS = (SH_C0, SH_C1, *SH_C2, *SH_C3)  # in a row, for cpu_kernels


def evaluate_sh(degree: int, directions: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
    """Real SH of `degree` at the normalised `directions` (..., 3) weighted by `coeffs` (..., K, 3)."""
    x, y, z = torch.nn.functional.normalize(directions, dim=-1).unbind(-1)
    bases = [torch.full_like(x, SH_C0)]
    if degree >= 1:
        bases += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        bases += [SH_C2[0] * x * y, SH_C2[1] * y * z, SH_C2[2] * (2 * zz - xx - yy), SH_C2[3] * x * z,
                  SH_C2[4] * (xx - yy)]
    if degree >= 3:
        bases += [SH_C3[0] * y * (3 * xx - yy), SH_C3[1] * x * y * z, SH_C3[2] * y * (4 * zz - xx - yy),
                  SH_C3[3] * z * (2 * zz - 3 * xx - 3 * yy), SH_C3[4] * x * (4 * zz - xx - yy),
                  SH_C3[5] * z * (xx - yy), SH_C3[6] * x * (xx - 3 * yy)]
    basis = torch.stack(bases, dim=-1)  # (..., (degree+1)^2)
    return (basis[..., None] * coeffs[..., : basis.shape[-1], :]).sum(dim=-2)


def quat_to_rotmat(quats_wxyz: torch.Tensor) -> torch.Tensor:
    w, x, y, z = torch.nn.functional.normalize(quats_wxyz, dim=-1).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], dim=-1).reshape(*w.shape, 3, 3)


def _ewa(means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane, far_plane) -> dict:
    """The EWA projection's terms (see `project`): `_Project` keeps them for its backward."""
    # einsum over the camera batch only: a matmul batched over N tiny matrices is slow on the CPU
    rotation, t = viewmats[:, :3, :3], viewmats[:, None, :3, 3]         # (C, 3, 3), (C, 1, 3)
    means_c = torch.einsum("cik,nk->cni", rotation, means) + t          # (C, N, 3)
    # the 3D covariance's square root in camera axes, W R S: its projection J W R S squared is the 2D covariance
    turn = quat_to_rotmat(quats)                                        # (N, 3, 3)
    root_c = torch.einsum("cik,nkj->cnij", rotation, turn * scales[:, None, :])  # (C, N, 3, 3)
    x, y, depth = means_c.unbind(-1)
    in_depth = (depth >= near_plane) & (depth <= far_plane)
    z = torch.where(in_depth, depth, torch.ones_like(depth))  # no 1/0 for culled Gaussians
    fx, fy, cx, cy = (Ks[:, None, 0, 0], Ks[:, None, 1, 1], Ks[:, None, 0, 2], Ks[:, None, 1, 2])
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    # x/z and y/z clamped to the view frustum widened by 30%, as gsplat's Jacobian takes them
    x_over_z, y_over_z = x / z, y / z
    u = torch.minimum(torch.maximum(x_over_z, -(cx / fx + 0.3 * tan_fovx)), (width - cx) / fx + 0.3 * tan_fovx)
    w = torch.minimum(torch.maximum(y_over_z, -(cy / fy + 0.3 * tan_fovy)), (height - cy) / fy + 0.3 * tan_fovy)
    # rows of J W R S, with the EWA Jacobian J = [[fx/z, 0, -fx u/z], [0, fy/z, -fy w/z]] written out
    gain_x, gain_y = fx / z, fy / z
    row_x = gain_x[..., None] * (root_c[..., 0, :] - u[..., None] * root_c[..., 2, :])     # (C, N, 3)
    row_y = gain_y[..., None] * (root_c[..., 1, :] - w[..., None] * root_c[..., 2, :])
    means2d = torch.stack([gain_x * x + cx, gain_y * y + cy], dim=-1)
    a, b, c = (row_x * row_x).sum(-1) + eps2d, (row_x * row_y).sum(-1), (row_y * row_y).sum(-1) + eps2d
    det = a * c - b * b
    safe_det = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([c / safe_det, -b / safe_det, a / safe_det], dim=-1)
    return dict(means=means, quats=quats, scales=scales, rotation=rotation, turn=turn, root_c=root_c, x=x, y=y,
                depth=depth, in_depth=in_depth, z=z, u=u, w=w, u_free=(u == x_over_z), w_free=(w == y_over_z),
                gain_x=gain_x, gain_y=gain_y, row_x=row_x, row_y=row_y, a=a, b=b, c=c, det=det, safe_det=safe_det,
                means2d=means2d, conics=conics)


def _radii(terms: dict, opacities, width, height, radius_clip) -> torch.Tensor:
    """gsplat's opacity-aware footprint radii (C, N, 2), zero for the culled Gaussians."""
    with torch.no_grad():
        opacity = opacities.detach()[None].expand_as(terms["z"])
        extend = torch.sqrt(2.0 * torch.log(opacity.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)).clamp_max(3.33)
        radius = torch.stack([torch.ceil(extend * terms["a"].clamp_min(0).sqrt()),
                              torch.ceil(extend * terms["c"].clamp_min(0).sqrt())], dim=-1)
        mx, my = terms["means2d"][..., 0], terms["means2d"][..., 1]
        visible = (terms["in_depth"] & (terms["det"] > 0) & (opacity >= ALPHA_THRESHOLD)
                   & ((radius[..., 0] > radius_clip) | (radius[..., 1] > radius_clip))
                   & (mx + radius[..., 0] > 0) & (mx - radius[..., 0] < width)
                   & (my + radius[..., 1] > 0) & (my - radius[..., 1] < height))
        return torch.where(visible[..., None], radius, torch.zeros_like(radius)).to(torch.int32)


def project(means, quats, scales, opacities, viewmats, Ks, width, height, *, eps2d=0.3, near_plane=0.01,
            far_plane=1e10, radius_clip=0.0):
    """EWA projection of N Gaussians into C cameras: radii (C,N,2) int32, means2d (C,N,2), depths (C,N),
    conics (C,N,3) as (a, b, c) of the inverse 2D covariance. Differentiable by autograd through its operations;
    the rasterizer takes `_Project`, the same with the backward written out."""
    terms = _ewa(means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane, far_plane)
    return _radii(terms, opacities, width, height, radius_clip), terms["means2d"], terms["depth"], terms["conics"]


class _Project(torch.autograd.Function):
    """`project` with gsplat's projection backward written out (the chain rule through the conic, the EWA Jacobian
    with its frustum clamp, the camera transform and the quaternion): autograd recorded some 60 operations and ran
    twice as many backward, a fifth of a CPU fit's step. Gradients for means, quats, scales and viewmats."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
                radius_clip):
        terms = _ewa(means, quats, scales, viewmats, Ks, width, height, eps2d, near_plane, far_plane)
        radii = _radii(terms, opacities, width, height, radius_clip)
        ctx.names = tuple(terms)
        ctx.save_for_backward(*terms.values())
        ctx.mark_non_differentiable(radii)
        return radii, terms["means2d"], terms["depth"], terms["conics"]

    @staticmethod
    def backward(ctx, _, grad_means2d, grad_depths, grad_conics):
        t = dict(zip(ctx.names, ctx.saved_tensors))
        z, in_depth = t["z"], t["in_depth"]
        # conic = (c, -b, a) / det with det = a c - b^2 (a constant 1 where det <= 0)
        grad_a_inv, grad_b_inv, grad_c_inv = grad_conics.unbind(-1)
        a, b, c, det = t["a"], t["b"], t["c"], t["safe_det"]
        conic_a, conic_b, conic_c = t["conics"].unbind(-1)
        grad_det = torch.where(t["det"] > 0, -(grad_a_inv * conic_a + grad_b_inv * conic_b + grad_c_inv * conic_c)
                               / det, 0.0)
        grad_a = grad_c_inv / det + grad_det * c
        grad_b = -grad_b_inv / det - 2 * b * grad_det
        grad_c = grad_a_inv / det + grad_det * a
        row_x, row_y = t["row_x"], t["row_y"]
        grad_row_x = (2 * grad_a)[..., None] * row_x + grad_b[..., None] * row_y
        grad_row_y = (2 * grad_c)[..., None] * row_y + grad_b[..., None] * row_x
        # the rows of J W R S: (fx/z)(M0 - u M2) and (fy/z)(M1 - w M2)
        gain_x, gain_y, u, w, root_c = t["gain_x"], t["gain_y"], t["u"], t["w"], t["root_c"]
        far_row = root_c[..., 2, :]
        grad_root = torch.stack([gain_x[..., None] * grad_row_x, gain_y[..., None] * grad_row_y,
                                 -(gain_x * u)[..., None] * grad_row_x - (gain_y * w)[..., None] * grad_row_y], dim=-2)
        grad_u = torch.where(t["u_free"], -gain_x * (grad_row_x * far_row).sum(-1), 0.0)
        grad_w = torch.where(t["w_free"], -gain_y * (grad_row_y * far_row).sum(-1), 0.0)
        # the centre: means2d = (fx x/z + cx, fy y/z + cy), u = x/z and w = y/z where unclamped, depth = z
        grad_mx, grad_my = grad_means2d.unbind(-1)
        x, y = t["x"], t["y"]
        grad_x = grad_mx * gain_x + grad_u / z
        grad_y = grad_my * gain_y + grad_w / z
        through_z = -((grad_row_x * row_x).sum(-1) + (grad_row_y * row_y).sum(-1) + grad_x * x + grad_y * y) / z
        grad_z = grad_depths + torch.where(in_depth, through_z, 0.0)
        grad_means_c = torch.stack([grad_x, grad_y, grad_z], dim=-1)                   # (C, N, 3)
        rotation, turn, scales, means = t["rotation"], t["turn"], t["scales"], t["means"]
        grad_means = torch.einsum("cni,cik->nk", grad_means_c, rotation)
        grad_scaled_turn = torch.einsum("cik,cnij->nkj", rotation, grad_root)         # d / d (R(q) S)
        grad_scales = (grad_scaled_turn * turn).sum(dim=-2)
        grad_quats = _quat_backward(t["quats"], grad_scaled_turn * scales[:, None, :])
        grad_viewmats = None
        if ctx.needs_input_grad[4]:
            grad_rotation = (torch.einsum("cni,nk->cik", grad_means_c, means)
                             + torch.einsum("cnij,nkj->cik", grad_root, turn * scales[:, None, :]))
            grad_viewmats = torch.zeros(len(rotation), 4, 4, dtype=rotation.dtype, device=rotation.device)
            grad_viewmats[:, :3, :3] = grad_rotation
            grad_viewmats[:, :3, 3] = grad_means_c.sum(dim=1)
        return grad_means, grad_quats, grad_scales, None, grad_viewmats, None, None, None, None, None, None, None


def _quat_backward(quats: torch.Tensor, grad_turn: torch.Tensor) -> torch.Tensor:
    """d loss / d quats (N, 4) from d loss / d quat_to_rotmat(quats) (N, 3, 3), through the normalisation."""
    norm = quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    unit = quats / norm
    w, x, y, z = unit.unbind(-1)
    g = grad_turn.reshape(-1, 9).unbind(-1)  # row by row: g[3 i + j] = d loss / d R_ij
    grad_unit = 2 * torch.stack([
        -z * g[1] + y * g[2] + z * g[3] - x * g[5] - y * g[6] + x * g[7],
        y * g[1] + z * g[2] + y * g[3] - 2 * x * g[4] - w * g[5] + z * g[6] + w * g[7] - 2 * x * g[8],
        -2 * y * g[0] + x * g[1] + w * g[2] + x * g[3] + z * g[5] - w * g[6] + z * g[7] - 2 * y * g[8],
        -2 * z * g[0] - w * g[1] + x * g[2] + w * g[3] - 2 * z * g[4] + y * g[5] + x * g[6] + y * g[7]], dim=-1)
    return (grad_unit - unit * (unit * grad_unit).sum(-1, keepdim=True)) / norm


class _ProjectCompiled(torch.autograd.Function):
    """`_Project` as cpu_kernels' loops, a Gaussian per task, the backward computing its forward terms again: on
    the CPU the tensor formulation's some 180 small operations took a quarter of a fit's step."""

    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near_plane, far_plane,
                radius_clip):
        from . import cpu_kernels

        arrays = [tensor.detach().contiguous().numpy() for tensor in (means, quats, scales, opacities, viewmats, Ks)]
        settings = (width, height, eps2d, near_plane, far_plane)
        with cpu_kernels.threads(torch.get_num_threads()):
            radii, means2d, depths, conics = cpu_kernels.project(*arrays, *settings, radius_clip, ALPHA_THRESHOLD)
        ctx.kernel_state = (arrays, settings)
        radii = torch.from_numpy(radii)
        ctx.mark_non_differentiable(radii)
        return radii, torch.from_numpy(means2d), torch.from_numpy(depths), torch.from_numpy(conics)

    @staticmethod
    def backward(ctx, _, grad_means2d, grad_depths, grad_conics):
        from . import cpu_kernels

        (means, quats, scales, _, viewmats, Ks), settings = ctx.kernel_state
        grads = [grad.contiguous().numpy() for grad in (grad_means2d, grad_depths, grad_conics)]
        with cpu_kernels.threads(torch.get_num_threads()):
            grad_means, grad_quats, grad_scales, grad_rows = cpu_kernels.project_backward(
                means, quats, scales, viewmats, Ks, *settings, *grads)
        grad_viewmats = None
        if ctx.needs_input_grad[4]:
            grad_rows = torch.from_numpy(grad_rows).sum(dim=1)                  # (C, 12)
            grad_viewmats = grad_rows.new_zeros(len(viewmats), 4, 4)
            grad_viewmats[:, :3, :3] = grad_rows[:, :9].reshape(-1, 3, 3)
            grad_viewmats[:, :3, 3] = grad_rows[:, 9:]
        return (torch.from_numpy(grad_means), torch.from_numpy(grad_quats), torch.from_numpy(grad_scales), None,
                grad_viewmats, None, None, None, None, None, None, None)


def _shade(degree: int, means, coeffs, centres, seen) -> torch.Tensor:
    """max(SH + 0.5, 0) of the Gaussians `seen` as each camera (centres (C, 3)) sees them: (C, N, 3), zero for the
    others."""
    places = _places(seen, len(means))
    seen_means, seen_coeffs = _pick_once(means, seen, places), _pick_once(coeffs, seen, places)
    directions = seen_means[None] - centres[:, None]                          # (C, seen, 3)
    seen_colors = torch.clamp_min(evaluate_sh(degree, directions, seen_coeffs[None].expand(
        len(centres), *seen_coeffs.shape)) + 0.5, 0)
    return seen_colors.new_zeros(len(centres), len(means), 3).index_copy(1, seen, seen_colors)


class _ShadeCompiled(torch.autograd.Function):
    """`_shade` as cpu_kernels' loops, a Gaussian per task: autograd's backward of the SH took a sixth of a CPU
    fit's step."""

    @staticmethod
    def forward(ctx, means, coeffs, centres, seen, degree):
        from . import cpu_kernels

        arrays = [tensor.detach().contiguous().numpy() for tensor in (means, coeffs, centres, seen)]
        with cpu_kernels.threads(torch.get_num_threads()):
            colours = cpu_kernels.sh_colours(*arrays, degree, SH_CONSTANTS)
        ctx.kernel_state = (arrays, degree)
        return torch.from_numpy(colours)

    @staticmethod
    def backward(ctx, grad_colours):
        from . import cpu_kernels

        arrays, degree = ctx.kernel_state
        with cpu_kernels.threads(torch.get_num_threads()):
            grad_coeffs, grad_means, grad_centres = cpu_kernels.sh_colours_backward(
                *arrays, degree, SH_CONSTANTS, grad_colours.contiguous().numpy())
        return (torch.from_numpy(grad_means), torch.from_numpy(grad_coeffs),
                torch.from_numpy(grad_centres).sum(dim=1), None, None)


def _shade_compiled(degree: int, means, coeffs, centres, seen) -> torch.Tensor:
    return _ShadeCompiled.apply(means, coeffs, centres, seen, degree)


def _tile_lists(means2d, radii, depths, width, height, tile):
    """gsplat's intersection list: a (tile, Gaussian) pair for every tile with a pixel centre in the Gaussian's
    footprint box. Returns the visible Gaussians front to back (`order`), and for the pairs, made Gaussian by
    Gaussian in that order: each one's place in `order` and its tile."""
    device = means2d.device
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    visible = torch.nonzero(radii[:, 0] > 0, as_tuple=True)[0]
    order = visible[torch.argsort(depths.detach()[visible], stable=True)]
    centre, radius = means2d.detach()[order], radii[order].to(means2d.dtype)
    # pixel column j is covered when |j + 0.5 - x| <= radius: j from ceil(x - r - 0.5) to floor(x + r - 0.5)
    first = torch.ceil(centre - radius - 0.5).clamp_min(0).long()
    last = torch.minimum(torch.floor(centre + radius - 0.5).long(),
                         torch.tensor([width - 1, height - 1], device=device))
    tile_first = first.div(tile, rounding_mode="floor")
    span = (last.div(tile, rounding_mode="floor") - tile_first + 1) * (last >= first)  # tiles per axis (0: none)
    counts = span[:, 0] * span[:, 1]
    owner = torch.repeat_interleave(torch.arange(len(order), device=device), counts)
    offset = torch.arange(len(owner), device=device) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    columns = span[owner, 0]
    tile_ids = (tile_first[owner, 1] + offset // columns) * tiles_x + tile_first[owner, 0] + offset % columns
    return order, owner, tile_ids


def _exponents(means2d, conics, opacities, tile_centres):
    """Each pair's log alpha over its tile as a quadratic in the pixel's offset (u, v) from the tile's centre:
    log o - sigma = q . (1, u, v, u^2, uv, v^2), so that one matrix product evaluates it at every pixel. sigma is
    1/2 d^T conic d for the offset d from the Gaussian's centre; -inf where the opacity is zero (padding)."""
    mu, mv = (means2d - tile_centres).unbind(-1)
    a, b, c = conics.unbind(-1)
    log_opacity = torch.where(opacities > 0, torch.log(torch.where(opacities > 0, opacities, 1.0)), -torch.inf)
    return torch.stack([log_opacity - (0.5 * a * mu * mu + 0.5 * c * mv * mv + b * mu * mv), a * mu + b * mv,
                        c * mv + b * mu, -0.5 * a, -b, -0.5 * c], dim=-1)


class _CompositeTiles(torch.autograd.Function):
    """Front-to-back compositing of every tile's depth-sorted Gaussians, with gsplat's backward written out.

    Inputs: the pairs' exponent coefficients (T, L, 6) (see `_exponents`) and values (T, L, D + 1), their colours
    and a 1, for T tiles of L Gaussians each (padded with -inf exponents); the basis (P, 6) of a tile's P pixels;
    the background (D,). Output (T, P, D + 1): colours over the background, and the coverage. alpha =
    min(0.999, exp(q . basis)), zero below 1/255, and the compositing stops before the transmittance would fall
    to 1e-4. The backward is gsplat's (for each pixel, a reverse sum over the Gaussians behind) in tensor
    operations: autograd through the forward's operations keeps three times as many (T, L, P) tensors and takes
    twice as long. Not a compiled kernel: the fallback exists for machines where gsplat's kernels cannot be
    built, so it runs wherever torch runs (CPU, Apple MPS) with nothing to compile."""

    @staticmethod
    def forward(ctx, exponents, values, basis, background):
        alpha = torch.matmul(exponents, basis.T).exp_().clamp_max_(MAX_ALPHA)      # (T, L, P)
        alpha.masked_fill_(alpha < ALPHA_THRESHOLD, 0.0)
        transmittance = alpha.new_empty(alpha.shape[0], alpha.shape[1] + 1, alpha.shape[2])
        transmittance[:, 0] = 1.0
        torch.sub(1.0, alpha, out=transmittance[:, 1:])
        transmittance.cumprod_(dim=1)                                    # before each Gaussian, and after the last
        weights = (alpha * transmittance[:, :-1]).mul_(transmittance[:, 1:] > MIN_TRANSMITTANCE)
        composite = torch.matmul(weights.transpose(1, 2), values)       # (T, P, D + 1): colours and coverage
        ctx.save_for_backward(values, basis, background, alpha, weights, composite[..., -1:])
        return composite + (1.0 - composite[..., -1:]) * torch.cat([background, background.new_zeros(1)])

    @staticmethod
    def backward(ctx, grad_output):
        values, basis, background, alpha, weights, coverage = ctx.saved_tensors
        grad_rgb = grad_output[..., :-1]
        # d loss / d weight of each (Gaussian, pixel) = its values . (grad rgb, grad coverage - grad rgb . background)
        grad_weight = torch.cat([grad_rgb, grad_output[..., -1:] - (grad_rgb * background).sum(-1, keepdim=True)], -1)
        change = torch.matmul(values, grad_weight.transpose(1, 2)).mul_(weights)   # (T, L, P)
        later = change.sum(dim=1, keepdim=True) - change.cumsum(dim=1)   # from the Gaussians behind
        # d loss / d exponent = alpha x d loss / d alpha: weight x (its own change) - alpha/(1 - alpha) x later;
        # zero where alpha was clamped at 0.999 (where it was skipped, weight and alpha are zero already)
        grad_exponent = change.sub_(later.mul_(alpha).div_(1.0 - alpha)).masked_fill_(alpha >= MAX_ALPHA, 0.0)
        grad_background = ((1.0 - coverage) * grad_rgb).sum(dim=(0, 1))
        return torch.matmul(grad_exponent, basis), torch.matmul(weights, grad_weight), None, grad_background


def _runs(counts: list[int], pixels_per_tile: int, max_elements: int):
    """Runs (start, stop) of tiles sorted by list length, each composited at once: padded to its longest list, so
    a run ends when the lists grow by half (little padding) or its work would exceed `max_elements`."""
    start = 0
    for index, count in enumerate(counts):
        if index > start and (count > RUN_GROWTH * counts[start] + RUN_SLACK
                              or (index + 1 - start) * count * pixels_per_tile > max_elements):
            yield start, index
            start = index
    yield start, len(counts)


def _rasterize_view(radii, means2d, depths, conics, opacities, colors, background, width, height, tile,
                    chunk_elements, checkpoint_elements):
    device, dtype = means2d.device, means2d.dtype
    tiles_x, tiles_y = -(-width // tile), -(-height // tile)
    order, owner, tile_ids = _tile_lists(means2d, radii, depths, width, height, tile)
    # the visible Gaussians' fields front to back, then a row per pair; `owner` is sorted, so the backward's sum
    # over each Gaussian's pairs walks its rows in order
    front_to_back = _places(order, len(means2d))
    means2d, conics, opacities, colors = (_gather(_pick_once(field, order, front_to_back), owner)
                                          for field in (means2d, conics, opacities, colors))
    tile_centres = (torch.stack([tile_ids % tiles_x, tile_ids // tiles_x], dim=-1).to(dtype) + 0.5) * tile
    # one padding pair at the end (alpha 0, values 0) fills every tile's list up to the longest of its run
    exponents = torch.cat([_exponents(means2d, conics, opacities, tile_centres),
                           conics.new_tensor([[-torch.inf, 0, 0, 0, 0, 0]])])
    pair_values = torch.cat([torch.cat([colors, colors.new_ones(len(colors), 1)], dim=-1),
                             colors.new_zeros(1, colors.shape[-1] + 1)])
    ys, xs = torch.meshgrid(torch.arange(tile, device=device), torch.arange(tile, device=device), indexing="ij")
    u, v = xs.reshape(-1).to(dtype) + 0.5 - 0.5 * tile, ys.reshape(-1).to(dtype) + 0.5 - 0.5 * tile
    basis = torch.stack([torch.ones_like(u), u, v, u * u, u * v, v * v], dim=-1)      # (P, 6)
    # A footprint box is wider than its ellipse: drop the pairs whose alpha stays under 1/255 at every pixel centre
    # of their tile (a third at 64x48), which compositing would skip anyway. The margin keeps the pairs that
    # rounding could put either side of the threshold, so the image and gradients stay exact.
    with torch.no_grad():
        reaches = torch.matmul(exponents[:-1], basis.T).amax(dim=-1) >= math.log(ALPHA_THRESHOLD) - 1e-4
        kept = torch.nonzero(reaches, as_tuple=True)[0]
        by_tile = kept[torch.sort(tile_ids[kept], stable=True)[1]]  # stable: the pairs were made front to back
        per_tile = torch.bincount(tile_ids[kept], minlength=tiles_x * tiles_y)
    counts, tiles = torch.sort(per_tile, stable=True)
    counts = counts.tolist()
    runs = [(start, stop, max(counts[stop - 1], 1)) for start, stop in _runs(counts, tile * tile, chunk_elements)]
    # every run's table of pairs (its tiles x its longest list) in one gather: each pair sits in one table once
    list_start = torch.cumsum(per_tile, 0) - per_tile
    pair_at = torch.cat([by_tile, by_tile.new_tensor([len(owner)])])  # the pair at a place sorted by tile; padding
    tables = []
    for start, stop, length in runs:
        chosen, rank = tiles[start:stop], torch.arange(length, device=device)
        place = torch.where(rank < per_tile[chosen, None], list_start[chosen, None] + rank, len(by_tile))
        tables.append(pair_at[place].reshape(-1))
    table = torch.cat(tables)
    places = _places(table, len(owner) + 1, constant=len(owner))
    exponents, pair_values = _pick_once(exponents, table, places), _pick_once(pair_values, table, places)
    use_checkpoint = torch.is_grad_enabled() and len(table) * tile * tile > checkpoint_elements
    sizes = [(stop - start) * length for start, stop, length in runs]
    pieces = []
    for (start, stop, length), run_exponents, run_values in zip(runs, exponents.split(sizes), pair_values.split(sizes)):
        args = (run_exponents.reshape(stop - start, length, -1), run_values.reshape(stop - start, length, -1),
                basis, background)
        pieces.append(checkpoint(_CompositeTiles.apply, *args, use_reentrant=False) if use_checkpoint
                      else _CompositeTiles.apply(*args))
    values = torch.cat(pieces)
    values = values.new_zeros(len(per_tile), *values.shape[1:]).index_copy(0, tiles, values)
    image = values.reshape(tiles_y, tiles_x, tile, tile, -1).permute(0, 2, 1, 3, 4)
    image = image.reshape(tiles_y * tile, tiles_x * tile, -1)[:height, :width]
    return image[..., :-1], image[..., -1:]


class _CompositeCompiled(torch.autograd.Function):
    """One view's tile lists, compositing and backward as cpu_kernels' compiled loops, which stop at each pixel's
    last Gaussian and skip the ones below 1/255 as gsplat's kernels do: on the CPU the tensor formulation spends a
    small view's time in the overhead of some hundreds of operations. Output (H, W, D + 1): colours, coverage."""

    @staticmethod
    def forward(ctx, means2d, conics, opacities, colors, background, radii, order, width, height, tile):
        from . import cpu_kernels

        arrays = [tensor.detach().contiguous().numpy() for tensor in (means2d, conics, opacities, colors, background)]
        with cpu_kernels.threads(torch.get_num_threads()):
            starts, gaussians = cpu_kernels.tile_lists(arrays[0], radii.numpy(), arrays[1], arrays[2], order.numpy(),
                                                       width, height, tile, ALPHA_THRESHOLD)
            image, reached, final = cpu_kernels.composite(starts, gaussians, *arrays, width, height, tile,
                                                          ALPHA_THRESHOLD, MAX_ALPHA, MIN_TRANSMITTANCE)
        ctx.kernel_state = (arrays, starts, gaussians, reached, final, tile)
        return torch.from_numpy(image)

    @staticmethod
    def backward(ctx, grad_image):
        from . import cpu_kernels

        arrays, starts, gaussians, reached, final, tile = ctx.kernel_state
        with cpu_kernels.threads(torch.get_num_threads()):
            grad_pairs, grad_background = cpu_kernels.composite_backward(
                starts, gaussians, *arrays, reached, final, grad_image.contiguous().numpy(), tile, ALPHA_THRESHOLD,
                MAX_ALPHA)
            grads = torch.from_numpy(cpu_kernels.sum_by_gaussian(grad_pairs, gaussians, len(arrays[0])))
        grad_means2d, grad_conics, grad_opacities, grad_colors = grads.split([2, 3, 1, grads.shape[1] - 6], dim=1)
        return (grad_means2d, grad_conics, grad_opacities[:, 0], grad_colors,
                torch.from_numpy(grad_background).sum(dim=(0, 1)), None, None, None, None, None)


def _rasterize_view_compiled(radii, means2d, depths, conics, opacities, colors, background, width, height, tile,
                             chunk_elements, checkpoint_elements):
    visible = torch.nonzero(radii[:, 0] > 0, as_tuple=True)[0]
    order = visible[torch.argsort(depths.detach()[visible], stable=True)]
    image = _CompositeCompiled.apply(means2d, conics, opacities, colors, background, radii, order, width, height,
                                     tile)
    return image[..., :-1], image[..., -1:]


class _PickOnce(torch.autograd.Function):
    """rows[index] whose backward is a gather too: `places` holds each row's place in the output (len(index) where
    no gradient goes back), so the gradients go back in parallel and in a fixed order, where index_select's
    backward adds them one by one (index_add_, serial on the CPU)."""

    @staticmethod
    def forward(ctx, rows, index, places):
        ctx.save_for_backward(places)
        return rows.index_select(0, index)

    @staticmethod
    def backward(ctx, grad):
        (places,) = ctx.saved_tensors
        return torch.cat([grad, grad.new_zeros(1, *grad.shape[1:])]).index_select(0, places), None, None


def _places(index: torch.Tensor, rows: int, constant: int | None = None) -> torch.Tensor:
    """Each of `rows` rows' place in `index`, which picks every row at most once apart from the row `constant`
    (padding, no gradient); len(index) for the rows it does not pick."""
    places = torch.full((rows,), len(index), dtype=torch.long, device=index.device)
    positions = torch.arange(len(index), device=index.device)
    if constant is not None:
        keep = index != constant
        index, positions = index[keep], positions[keep]
    return places.index_put_((index,), positions)


def _pick_once(rows: torch.Tensor, index: torch.Tensor, places: torch.Tensor) -> torch.Tensor:
    """rows[index] for an index that picks each row at most once (`places` from `_places`)."""
    if torch.is_grad_enabled() and rows.requires_grad:
        return _PickOnce.apply(rows, index, places)
    return rows.index_select(0, index)


def _gather(values: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """values[index] (rows) with a backward that adds in a fixed order: the backward of advanced indexing
    (index_put_ with accumulate) runs in parallel on the CPU and sums the rows in a different order every run, so
    a fit was not reproducible; index_select's backward (index_add_) is serial over the index there."""
    return values.index_select(0, index.reshape(-1)).reshape(*index.shape, *values.shape[1:])


class Kernels(typing.NamedTuple):
    """The rasterizer's three stages: the projection (as `_Project.apply`), the SH colours (as `_shade`) and a
    view's compositing (as `_rasterize_view`), and the tile size (pixels square) that composites fastest."""
    project: typing.Callable
    shade: typing.Callable
    composite_view: typing.Callable
    tile: int


# tensor operations anywhere torch runs, or compiled loops on the CPU; the same images and gradients. A compiled
# tile's pixels are evaluated eight float32s to a vector register: 8x8 tiles fill them, where 4x4 tiles made a
# 64x48 view's lists three times as long (bench/RESULTS-recon-cpu.md, "Tile sizes").
KERNELS = {"tensor": Kernels(_Project.apply, _shade, _rasterize_view, tile=4),
           "compiled": Kernels(_ProjectCompiled.apply, _shade_compiled, _rasterize_view_compiled, tile=8)}


def _kernels(name: str, device: torch.device) -> Kernels:
    """"auto" takes the compiled loops on the CPU wherever numba imports, the tensor operations elsewhere."""
    if name == "auto":
        name = "compiled" if device.type == "cpu" and is_installed("numba") else "tensor"
    if name not in KERNELS:
        raise ValueError(f"kernels must be auto or one of {', '.join(KERNELS)}, got {name!r}")
    if name == "compiled" and device.type != "cpu":
        raise ValueError(f"the compiled kernels run on the CPU; these Gaussians are on {device}")
    return KERNELS[name]


def rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, *, sh_degree=None,
                  backgrounds=None, near_plane=0.01, far_plane=1e10, eps2d=0.3, radius_clip=0.0,
                  tile_size=None, chunk_elements=1 << 24, checkpoint_elements=1 << 24, kernels="auto"):
    """Render N Gaussians into C views, like gsplat.rasterization(..., packed=False).

    means (N,3), quats (N,4) wxyz, scales (N,3) linear, opacities (N,) in 0..1, colors (N,D) or SH (N,K,3)
    with `sh_degree`, viewmats (C,4,4) world-to-camera (OpenCV), Ks (C,3,3), backgrounds (C,D) or None.
    Returns colours (C,H,W,D), alphas (C,H,W,1) and meta with radii, means2d (retain_grad() on it gives the
    screen-space gradients densification uses), depths, conics, width, height, n_cameras.
    Tiles of `tile_size` pixels (by default the kernels' own) are composited together in runs of at most
    `chunk_elements` (tiles x longest list x pixels); above `checkpoint_elements` in a view, the runs are
    recomputed in backward. `kernels` names an entry of KERNELS or "auto" (see `_kernels`); all give the same
    images and gradients.
    """
    stages = _kernels(kernels, means.device)
    if sh_degree is not None and (colors.dim() != 3 or colors.shape[1] < (sh_degree + 1) ** 2
                                  or colors.shape[2] != 3):
        # the compiled loops read the coefficients unchecked
        raise ValueError(f"SH colours of degree {sh_degree} must be (N, K >= {(sh_degree + 1) ** 2}, 3), got "
                         f"{tuple(colors.shape)}")
    # one projection of every Gaussian, with its backward written out; the SH only of those some view sees
    radii, means2d, depths, conics = stages.project(means, quats, scales, opacities, viewmats, Ks, width, height,
                                                    eps2d, near_plane, far_plane, radius_clip)
    if sh_degree is None:
        view_colors = colors[None].expand(len(viewmats), *colors.shape)
    else:
        seen = torch.nonzero((radii > 0).any(dim=-1).any(dim=0), as_tuple=True)[0]
        view_colors = stages.shade(sh_degree, means, colors, torch.linalg.inv(viewmats)[:, :3, 3], seen)
    if backgrounds is None:
        backgrounds = view_colors.new_zeros(len(viewmats), view_colors.shape[-1])
    renders, alphas = [], []
    for view in range(len(viewmats)):
        rgb, alpha = stages.composite_view(radii[view], means2d[view], depths[view], conics[view], opacities,
                                           view_colors[view], backgrounds[view], width, height,
                                           tile_size or stages.tile, chunk_elements, checkpoint_elements)
        renders.append(rgb)
        alphas.append(alpha)
    meta = {"radii": radii, "means2d": means2d, "depths": depths, "conics": conics, "width": width,
            "height": height, "n_cameras": len(viewmats), "gaussian_ids": None, "camera_ids": None}
    return torch.stack(renders), torch.stack(alphas), meta
