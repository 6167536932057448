"""The pure-PyTorch reference rasterizer: exact EWA splatting with gsplat's math, differentiable by autograd.

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
It is dense: inside an image block every pixel meets every Gaussian whose footprint overlaps the block.
Blocks are split until (pixels x Gaussians) fits a budget, and when a view's total work is large each block
is checkpointed under autograd, so memory stays bounded on large views (the GPU fallback without gsplat).
"""
from __future__ import annotations

import torch
from torch.utils.checkpoint import checkpoint

from .gaussians import SH_C0

ALPHA_THRESHOLD = 1.0 / 255.0
MAX_ALPHA = 0.999
MIN_TRANSMITTANCE = 1e-4
MIN_BLOCK = 8  # pixels per side below which a block is never split
SH_C1 = 0.4886025119029199
SH_C2 = (1.0925484305920792, -1.0925484305920792, 0.31539156525252005, -1.0925484305920792, 0.5462742152960396)
SH_C3 = (-0.5900435899266435, 2.890611442640554, -0.4570457994644658, 0.3731763325901154,
         -0.4570457994644658, 1.445305721320277, -0.5900435899266435)


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


def project(means, quats, scales, opacities, viewmats, Ks, width, height, *, eps2d=0.3, near_plane=0.01,
            far_plane=1e10, radius_clip=0.0):
    """EWA projection of N Gaussians into C cameras: radii (C,N,2) int32, means2d (C,N,2), depths (C,N),
    conics (C,N,3) as (a, b, c) of the inverse 2D covariance."""
    rotations = quat_to_rotmat(quats)
    m = rotations * scales[:, None, :]
    covars = m @ m.transpose(-1, -2)                                    # (N, 3, 3)
    r, t = viewmats[:, None, :3, :3], viewmats[:, None, :3, 3]          # (C, 1, 3, 3), (C, 1, 3)
    means_c = (r @ means[None, :, :, None])[..., 0] + t                 # (C, N, 3)
    covars_c = r @ covars[None] @ r.transpose(-1, -2)                   # (C, N, 3, 3)
    x, y, depth = means_c.unbind(-1)
    in_depth = (depth >= near_plane) & (depth <= far_plane)
    z = torch.where(in_depth, depth, torch.ones_like(depth))  # no 1/0 in the graph of culled Gaussians
    fx, fy, cx, cy = (Ks[:, None, 0, 0], Ks[:, None, 1, 1], Ks[:, None, 0, 2], Ks[:, None, 1, 2])
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    tx = z * torch.minimum(torch.maximum(x / z, -(cx / fx + 0.3 * tan_fovx)), (width - cx) / fx + 0.3 * tan_fovx)
    ty = z * torch.minimum(torch.maximum(y / z, -(cy / fy + 0.3 * tan_fovy)), (height - cy) / fy + 0.3 * tan_fovy)
    zeros = torch.zeros_like(z)
    jacobian = torch.stack([fx / z, zeros, -fx * tx / (z * z),
                            zeros, fy / z, -fy * ty / (z * z)], dim=-1).reshape(*z.shape, 2, 3)
    cov2d = jacobian @ covars_c @ jacobian.transpose(-1, -2)            # (C, N, 2, 2)
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
    a, b, c = cov2d[..., 0, 0] + eps2d, cov2d[..., 0, 1], cov2d[..., 1, 1] + eps2d
    det = a * c - b * b
    safe_det = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([c / safe_det, -b / safe_det, a / safe_det], dim=-1)

    with torch.no_grad():
        opacity = opacities.detach()[None].expand_as(z)
        extend = torch.sqrt(2.0 * torch.log(opacity.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)).clamp_max(3.33)
        radius = torch.stack([torch.ceil(extend * a.clamp_min(0).sqrt()),
                              torch.ceil(extend * c.clamp_min(0).sqrt())], dim=-1)
        mx, my = means2d[..., 0], means2d[..., 1]
        visible = (in_depth & (det > 0) & (opacity >= ALPHA_THRESHOLD)
                   & ((radius[..., 0] > radius_clip) | (radius[..., 1] > radius_clip))
                   & (mx + radius[..., 0] > 0) & (mx - radius[..., 0] < width)
                   & (my + radius[..., 1] > 0) & (my - radius[..., 1] < height))
        radii = torch.where(visible[..., None], radius, torch.zeros_like(radius)).to(torch.int32)
    return radii, means2d, depth, conics


def _composite_block(pixels, means2d, conics, opacities, colors, background):
    """Front-to-back compositing of depth-sorted Gaussians over a (P, 2) set of pixel centres."""
    dx = means2d[None, :, 0] - pixels[:, None, 0]                      # (P, M)
    dy = means2d[None, :, 1] - pixels[:, None, 1]
    sigma = 0.5 * (conics[:, 0] * dx * dx + conics[:, 2] * dy * dy) + conics[:, 1] * dx * dy
    alpha = torch.clamp_max(opacities * torch.exp(-sigma), MAX_ALPHA)
    alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, torch.zeros_like(alpha))
    transmittance = torch.cumprod(1.0 - alpha, dim=1)                   # after each Gaussian
    before = torch.cat([torch.ones_like(transmittance[:, :1]), transmittance[:, :-1]], dim=1)
    weights = alpha * before * (transmittance > MIN_TRANSMITTANCE)
    coverage = weights.sum(dim=1, keepdim=True)
    return weights @ colors + (1.0 - coverage) * background, coverage


def _blocks(x0, y0, x1, y1, boxes, ids, max_elements):
    """Split the pixel rectangle until pixels x overlapping Gaussians fits the budget; yield (rect, ids)."""
    # generous by one pixel: an extra Gaussian only costs time, a missing one would change the image
    inside = ((boxes[ids, 0] < x1 + 1) & (boxes[ids, 1] > x0 - 1) & (boxes[ids, 2] < y1 + 1)
              & (boxes[ids, 3] > y0 - 1))
    ids = ids[inside]
    w, h = x1 - x0, y1 - y0
    if w * h * max(len(ids), 1) <= max_elements or max(w, h) <= MIN_BLOCK:
        yield (x0, y0, x1, y1), ids
        return
    if w >= h:
        mid = x0 + w // 2
        yield from _blocks(x0, y0, mid, y1, boxes, ids, max_elements)
        yield from _blocks(mid, y0, x1, y1, boxes, ids, max_elements)
    else:
        mid = y0 + h // 2
        yield from _blocks(x0, y0, x1, mid, boxes, ids, max_elements)
        yield from _blocks(x0, mid, x1, y1, boxes, ids, max_elements)


def _rasterize_view(radii, means2d, depths, conics, opacities, colors, background, width, height, block_elements,
                    checkpoint_elements):
    device, dtype = means2d.device, means2d.dtype
    visible = torch.nonzero(radii[:, 0] > 0, as_tuple=True)[0]
    order = visible[torch.argsort(depths.detach()[visible], stable=True)]
    # footprint box in pixel-index coordinates: pixel column j is inside when |j + 0.5 - x| <= radius
    centre, radius = means2d.detach()[order], radii[order].to(dtype)
    boxes = torch.stack([centre[:, 0] - radius[:, 0] - 0.5, centre[:, 0] + radius[:, 0] - 0.5,
                         centre[:, 1] - radius[:, 1] - 0.5, centre[:, 1] + radius[:, 1] - 0.5], dim=-1)
    blocks = list(_blocks(0, 0, width, height, boxes, torch.arange(len(order), device=device), block_elements))
    work = sum((x1 - x0) * (y1 - y0) * len(ids) for (x0, y0, x1, y1), ids in blocks)
    use_checkpoint = torch.is_grad_enabled() and work > checkpoint_elements
    pieces, indices = [], []
    for (x0, y0, x1, y1), ids in blocks:
        ys, xs = torch.meshgrid(torch.arange(y0, y1, device=device), torch.arange(x0, x1, device=device),
                                indexing="ij")
        pixels = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=-1).to(dtype) + 0.5
        chosen = order[ids]
        args = (pixels, means2d[chosen], conics[chosen], opacities[chosen], colors[chosen], background)
        rgb, coverage = (checkpoint(_composite_block, *args, use_reentrant=False) if use_checkpoint
                         else _composite_block(*args))
        pieces.append(torch.cat([rgb, coverage], dim=-1))
        indices.append((ys * width + xs).reshape(-1))
    values = torch.cat(pieces)
    flat = values.new_zeros(width * height, values.shape[-1]).index_copy(0, torch.cat(indices), values)
    image = flat.reshape(height, width, -1)
    return image[..., :-1], image[..., -1:]


def rasterization(means, quats, scales, opacities, colors, viewmats, Ks, width, height, *, sh_degree=None,
                  backgrounds=None, near_plane=0.01, far_plane=1e10, eps2d=0.3, radius_clip=0.0,
                  block_elements=None, checkpoint_elements=1 << 24):
    """Render N Gaussians into C views, like gsplat.rasterization(..., packed=False).

    means (N,3), quats (N,4) wxyz, scales (N,3) linear, opacities (N,) in 0..1, colors (N,D) or SH (N,K,3)
    with `sh_degree`, viewmats (C,4,4) world-to-camera (OpenCV), Ks (C,3,3), backgrounds (C,D) or None.
    Returns colours (C,H,W,D), alphas (C,H,W,1) and meta with radii, means2d (retain_grad() on it gives the
    screen-space gradients densification uses), depths, conics, width, height, n_cameras.
    `block_elements` bounds pixels x Gaussians per dense block (small blocks cull best on CPU, larger ones
    launch fewer kernels on GPU); above `checkpoint_elements` in a view, blocks are recomputed in backward.
    """
    if block_elements is None:
        block_elements = 1 << 20 if means.is_cuda else 1 << 16
    radii, means2d, depths, conics = project(means, quats, scales, opacities, viewmats, Ks, width, height,
                                             eps2d=eps2d, near_plane=near_plane, far_plane=far_plane,
                                             radius_clip=radius_clip)
    if sh_degree is not None:
        camera_centres = torch.linalg.inv(viewmats)[:, :3, 3]
        directions = means[None] - camera_centres[:, None]                  # (C, N, 3)
        view_colors = torch.clamp_min(evaluate_sh(sh_degree, directions, colors[None].expand(len(viewmats),
                                                                                             *colors.shape)) + 0.5, 0)
    else:
        view_colors = colors[None].expand(len(viewmats), *colors.shape)
    if backgrounds is None:
        backgrounds = view_colors.new_zeros(len(viewmats), view_colors.shape[-1])
    renders, alphas = [], []
    for view in range(len(viewmats)):
        rgb, alpha = _rasterize_view(radii[view], means2d[view], depths[view], conics[view], opacities,
                                     view_colors[view], backgrounds[view], width, height, block_elements,
                                     checkpoint_elements)
        renders.append(rgb)
        alphas.append(alpha)
    meta = {"radii": radii, "means2d": means2d, "depths": depths, "conics": conics, "width": width,
            "height": height, "n_cameras": len(viewmats), "gaussian_ids": None, "camera_ids": None}
    return torch.stack(renders), torch.stack(alphas), meta
