"""The PyTorch reference rasterizer against closed forms, compositing rules, finite differences, and gsplat's
own PyTorch implementation of projection and spherical harmonics; every test that renders runs with each of its
kernels (tensor operations, and the compiled CPU loops)."""
import functools
import math

import pytest
import torch

from dimx_core.recon import reference
from tests.unit.recon_scenes import one_thread  # noqa: F401 (autouse fixture)


@pytest.fixture(autouse=True, params=sorted(reference.KERNELS))
def kernels(request, monkeypatch):
    monkeypatch.setattr(reference, "rasterization", functools.partial(reference.rasterization, kernels=request.param))
    return request.param


K = torch.tensor([[[40.0, 0.0, 16.0], [0.0, 40.0, 12.0], [0.0, 0.0, 1.0]]])
EYE = torch.eye(4)[None]


def gaussians(means, scales, opacities, colours, dtype=torch.float32):
    n = len(means)
    t = lambda v: torch.as_tensor(v, dtype=dtype)  # noqa: E731
    return dict(means=t(means), quats=t([[1.0, 0, 0, 0]] * n), scales=t(scales), opacities=t(opacities),
                colors=t(colours))


def render(scene, width=32, height=24, Ks=K, viewmats=EYE, **options):
    return reference.rasterization(scene["means"], scene["quats"], scene["scales"], scene["opacities"],
                                   scene["colors"], viewmats.to(scene["means"].dtype), Ks.to(scene["means"].dtype),
                                   width, height, **options)


def test_single_isotropic_gaussian_matches_the_closed_form_footprint():
    depth, scale, opacity = 4.0, 0.2, 0.8
    scene = gaussians([[0.0, 0.0, depth]], [[scale] * 3], [opacity], [[1.0, 1.0, 1.0]])
    image, alpha, meta = render(scene)
    variance = (40.0 * scale / depth) ** 2 + 0.3            # projected, plus gsplat's 0.3 px low-pass
    ys, xs = torch.meshgrid(torch.arange(24) + 0.5, torch.arange(32) + 0.5, indexing="ij")
    r2 = (xs - 16.0) ** 2 + (ys - 12.0) ** 2
    expected = opacity * torch.exp(-0.5 * r2 / variance)
    expected = torch.where(expected >= 1 / 255, expected, torch.zeros_like(expected))
    assert torch.allclose(alpha[0, ..., 0], expected, atol=1e-6)
    assert torch.allclose(image[0, ..., 1], expected, atol=1e-6)
    footprint = int((r2 <= 2 * variance * math.log(255 * opacity)).sum())
    assert int((alpha[0] > 0).sum()) == footprint
    extend = math.sqrt(2 * math.log(255 * opacity))
    assert meta["radii"][0, 0].tolist() == [math.ceil(extend * math.sqrt(variance))] * 2


def test_nearer_gaussians_are_composited_first_whatever_their_order():
    far = [[0.0, 0.0, 6.0], [[0.3] * 3], 0.6, [0.0, 0.0, 1.0]]
    near = [[0.0, 0.0, 3.0], [[0.2] * 3], 0.5, [1.0, 0.0, 0.0]]
    background = torch.tensor([[0.0, 1.0, 0.0]])
    for first, second in ((near, far), (far, near)):
        scene = gaussians([first[0], second[0]], [*first[1], *second[1]], [first[2], second[2]],
                          [first[3], second[3]])
        image, _, _ = render(scene, backgrounds=background)
        centre = image[0, 11, 15]  # pixel centre (15.5, 11.5), half a pixel off the optical axis both ways
        a_near = 0.5 * math.exp(-0.25 / ((40 * 0.2 / 3) ** 2 + 0.3))
        a_far = 0.6 * math.exp(-0.25 / ((40 * 0.3 / 6) ** 2 + 0.3))
        expected = torch.tensor([a_near, (1 - a_near) * (1 - a_far), (1 - a_near) * a_far])
        assert torch.allclose(centre, expected, atol=1e-6)


def test_compositing_stops_before_transmittance_would_fall_to_1e_4():
    # three nearly opaque layers: after the first T = 1e-3; the second would make it 1e-6, so it and all
    # later ones are skipped and the background keeps its 1e-3 share
    scene = gaussians([[0, 0, 2.0], [0, 0, 3.0], [0, 0, 4.0]], [[1.0] * 3] * 3, [1.0] * 3,
                      [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]])
    image, alpha, _ = render(scene, backgrounds=torch.tensor([[0.0, 0.0, 0.5]]))
    assert torch.allclose(image[0, 12, 16], torch.tensor([0.999, 0.0, 0.001 * 0.5]), atol=1e-6)
    assert torch.allclose(alpha[0, 12, 16, 0], torch.tensor(0.999), atol=1e-6)


def test_culling_follows_gsplat_near_plane_opacity_and_image_bounds():
    scene = gaussians([[0, 0, 0.005], [0, 0, 3.0], [50.0, 0, 3.0], [0, 0, -3.0]], [[0.1] * 3] * 4,
                      [0.9, 0.003, 0.9, 0.9], [[1.0] * 3] * 4)
    _, alpha, meta = render(scene)
    assert (meta["radii"][0] == 0).all() and alpha.abs().max() == 0


def test_gradients_agree_with_finite_differences():
    torch.manual_seed(0)
    dtype = torch.float64
    means = torch.tensor([[0.1, -0.05, 3.0], [-0.2, 0.1, 3.5], [0.05, 0.15, 4.0]], dtype=dtype)
    quats = torch.nn.functional.normalize(torch.randn(3, 4, dtype=dtype), dim=1)
    log_scales = torch.log(torch.tensor([[0.6, 0.4, 0.5], [0.5, 0.7, 0.4], [0.8, 0.5, 0.6]], dtype=dtype))
    logits = torch.tensor([0.2, -0.3, 0.4], dtype=dtype)
    sh = 0.3 * torch.randn(3, 4, 3, dtype=dtype)
    viewmat = torch.eye(4, dtype=dtype)[None]
    weights = torch.rand(10, 12, 3, dtype=dtype)
    k = torch.tensor([[[20.0, 0, 6.0], [0, 20.0, 5.0], [0, 0, 1.0]]], dtype=dtype)

    def loss(means, quats, log_scales, logits, sh, viewmat):
        image, _, _ = reference.rasterization(means, quats, log_scales.exp(), torch.sigmoid(logits), sh, viewmat,
                                              k, 12, 10, sh_degree=1)
        return (image[0] * weights).sum()

    inputs = [t.clone().requires_grad_(True) for t in (means, quats, log_scales, logits, sh, viewmat)]
    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_screen_space_mean_gradients_are_exposed_like_gsplat():
    scene = gaussians([[0.1, 0.0, 3.0], [0.0, 0.1, 5.0]], [[0.2] * 3] * 2, [0.7, 0.7], [[1.0, 0.5, 0.2]] * 2)
    scene["means"].requires_grad_(True)
    image, _, meta = render(scene)
    meta["means2d"].retain_grad()
    image.sum().backward()
    assert meta["means2d"].shape == (1, 2, 2) and meta["radii"].shape == (1, 2, 2)
    assert meta["means2d"].grad.abs().sum() > 0
    assert {"width", "height", "n_cameras", "gaussian_ids"} <= set(meta)


def dense_composite(means2d, conics, opacities, colours, depths, radii, width, height, background):
    """Every pixel against every visible Gaussian, front to back: the definition the tiles must reproduce."""
    visible = torch.nonzero(radii[:, 0] > 0)[:, 0]
    order = visible[torch.argsort(depths[visible], stable=True)]
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing="ij")
    dx = means2d[order, 0] - xs.reshape(-1, 1)
    dy = means2d[order, 1] - ys.reshape(-1, 1)
    a, b, c = conics[order].unbind(-1)
    alpha = torch.clamp_max(opacities[order] * torch.exp(-(0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy)), 0.999)
    alpha = torch.where(alpha >= 1 / 255, alpha, torch.zeros_like(alpha))
    after = torch.cumprod(1 - alpha, dim=1)
    weights = alpha * torch.cat([torch.ones_like(after[:, :1]), after[:, :-1]], dim=1) * (after > 1e-4)
    image = weights @ colours[order] + (1 - weights.sum(dim=1, keepdim=True)) * background
    return image.reshape(height, width, -1)


@pytest.mark.parametrize("tile_size, chunk_elements", [(1, 1 << 24), (4, 1 << 24), (4, 64), (8, 1 << 24), (16, 1 << 24)])
def test_tiles_reproduce_every_pixel_against_every_gaussian_with_gradients(tile_size, chunk_elements):
    """Each Gaussian only reaches the tiles its footprint box covers, tiles are composited in runs of similar list
    length (a tiny chunk budget makes one run per tile and checkpoints them): image and gradients are the dense
    definition's, for tile sizes that do not divide the 30x22 frame too."""
    torch.manual_seed(1)
    n, width, height = 120, 30, 22
    scene = dict(means=torch.randn(n, 3) * 0.4 + torch.tensor([0, 0, 3.0]), quats=torch.randn(n, 4),
                 scales=torch.rand(n, 3) * 0.1 + 0.02, opacities=torch.rand(n), colors=torch.randn(n, 3).abs())
    inputs = {name: value.clone().requires_grad_(True) for name, value in scene.items()}
    background = torch.tensor([0.2, 0.1, 0.4])
    image, alpha, meta = render(inputs, width, height, backgrounds=background[None], tile_size=tile_size,
                                chunk_elements=chunk_elements, checkpoint_elements=0 if chunk_elements < 1000 else 1 << 24)
    weights = torch.rand_like(image)
    tiled = torch.autograd.grad((image * weights).sum(), list(inputs.values()))

    radii, means2d, depths, conics = reference.project(inputs["means"], inputs["quats"], inputs["scales"],
                                                       inputs["opacities"], EYE, K, width, height)
    expected = dense_composite(means2d[0], conics[0], inputs["opacities"], inputs["colors"], depths[0], radii[0],
                               width, height, background)
    dense = torch.autograd.grad((expected * weights[0]).sum(), list(inputs.values()))
    assert int((radii[0, :, 0] > 0).sum()) > 60 and torch.equal(meta["radii"], radii)
    assert torch.allclose(image[0], expected, atol=1e-5)
    for name, got, want in zip(inputs, tiled, dense):
        assert torch.allclose(got, want, atol=1e-4, rtol=1e-3), name


def test_projection_matches_gsplats_pytorch_implementation():
    from gsplat.cuda._torch_impl import _fully_fused_projection, _quat_scale_to_covar_preci

    torch.manual_seed(2)
    n = 200
    means = torch.randn(n, 3) * torch.tensor([1.5, 1.0, 0.5]) + torch.tensor([0, 0, 3.0])
    quats, scales = torch.randn(n, 4), torch.rand(n, 3) * 0.2 + 0.01
    viewmats = torch.eye(4)[None].repeat(2, 1, 1)
    viewmats[1, :3, :3] = torch.tensor([[0.8, 0.0, 0.6], [0.0, 1.0, 0.0], [-0.6, 0.0, 0.8]])
    viewmats[1, :3, 3] = torch.tensor([0.3, -0.1, 0.5])
    ks = K.repeat(2, 1, 1)
    radii, means2d, depths, conics = reference.project(means, quats, scales, torch.ones(n), viewmats, ks, 32, 24)
    covars, _ = _quat_scale_to_covar_preci(quats, scales, compute_preci=False, triu=False)
    _, means2d_g, depths_g, conics_g, _ = _fully_fused_projection(means, covars, viewmats, ks, 32, 24)
    visible = radii[..., 0] > 0
    assert visible.sum() > 50
    assert torch.allclose(means2d[visible], means2d_g[visible], rtol=1e-5, atol=1e-4)
    assert torch.allclose(depths, depths_g, rtol=1e-6, atol=1e-6)
    assert torch.allclose(conics[visible], conics_g[visible], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("degree", [0, 1, 2, 3])
def test_spherical_harmonics_match_gsplats_basis(degree):
    from gsplat.cuda._torch_impl import _spherical_harmonics

    torch.manual_seed(degree)
    directions, coeffs = torch.randn(500, 3), torch.randn(500, 16, 3)
    ours = reference.evaluate_sh(degree, directions, coeffs)
    assert torch.allclose(ours, _spherical_harmonics(degree, directions, coeffs), atol=1e-5)


def test_gradients_are_the_same_at_every_backward_on_several_threads():
    """A fit on the CPU is reproducible: the gathers' backward adds the rows in a fixed order (advanced indexing's
    backward summed them in parallel, in a different order each run, on more than one thread)."""
    generator = torch.Generator().manual_seed(4)
    count = 3000
    scene = gaussians(torch.randn(count, 3, generator=generator) * 0.3 + torch.tensor([0.0, 0.0, 3.0]),
                      torch.rand(count, 3, generator=generator) * 0.05 + 0.01,
                      torch.rand(count, generator=generator) * 0.9 + 0.05, torch.rand(count, 3, generator=generator))
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        grads = []
        for _ in range(3):
            leaves = {name: tensor.detach().requires_grad_() for name, tensor in scene.items()}
            image, _, _ = render(leaves, width=64, height=48)
            (image * torch.linspace(0, 1, image.numel()).reshape(image.shape)).sum().backward()
            grads.append([leaf.grad for leaf in leaves.values()])
    finally:
        torch.set_num_threads(threads)
    for later in grads[1:]:
        assert all(torch.equal(a, b) for a, b in zip(grads[0], later))


def test_projection_backward_written_out_equals_autograd_through_project():
    """The rasterizer's projection (`_Project`, its backward written out) against autograd through `project`'s
    operations, in float64: Gaussians in front of two cameras, beside them (where the Jacobian's frustum clamp
    holds) and behind them, every output weighted, gradients for means, quats, scales and the cameras."""
    generator = torch.Generator().manual_seed(5)
    n = 400
    scene = dict(means=torch.randn(n, 3, generator=generator, dtype=torch.float64) * torch.tensor([3.0, 2.0, 1.5])
                 + torch.tensor([0.0, 0.0, 2.0]), quats=torch.randn(n, 4, generator=generator, dtype=torch.float64),
                 scales=torch.rand(n, 3, generator=generator, dtype=torch.float64) * 0.3 + 0.01)
    viewmats = torch.eye(4, dtype=torch.float64)[None].repeat(2, 1, 1)
    viewmats[1, :3, :3] = torch.tensor([[0.8, 0.0, 0.6], [0.0, 1.0, 0.0], [-0.6, 0.0, 0.8]], dtype=torch.float64)
    viewmats[1, :3, 3] = torch.tensor([0.3, -0.1, 0.5], dtype=torch.float64)
    ks, opacities = K.repeat(2, 1, 1).to(torch.float64), torch.full((n,), 0.5, dtype=torch.float64)
    weights = [torch.randn(2, n, size, generator=generator, dtype=torch.float64) for size in (2, 1, 3)]
    results = []
    for projection in (lambda *args: reference._Project.apply(*args, 32, 24, 0.3, 0.01, 1e10, 0.0),
                       lambda *args: reference.project(*args, 32, 24)):
        leaves = [tensor.clone().requires_grad_() for tensor in (*scene.values(), viewmats)]
        radii, means2d, depths, conics = projection(*leaves[:3], opacities, leaves[3], ks)
        loss = sum((output.reshape(2, n, -1) * weight).sum() for output, weight in
                   zip((means2d, depths, conics), weights))
        results.append((radii, means2d, conics, torch.autograd.grad(loss, leaves)))
    (radii, means2d, conics, grads), (radii_ref, means2d_ref, conics_ref, grads_ref) = results
    x_over_z = (scene["means"][:, 0] / scene["means"][:, 2]).abs()
    assert (scene["means"][:, 2] < 0.01).sum() > 20 and (x_over_z > 1.0).sum() > 50  # behind, and clamped
    assert torch.equal(radii, radii_ref) and (radii > 0).sum() > 100
    assert torch.allclose(means2d, means2d_ref) and torch.allclose(conics, conics_ref)
    for name, got, want in zip(("means", "quats", "scales", "viewmats"), grads, grads_ref):
        assert torch.allclose(got, want, rtol=1e-9, atol=1e-12), name


def opaque_scene(count, generator, dtype):
    """Gaussians in front of the camera, many of them nearly opaque, so that pixels stop early."""
    centre = torch.tensor([0, 0, 3.0], dtype=dtype)
    return dict(means=torch.randn(count, 3, generator=generator, dtype=dtype) * 0.4 + centre,
                quats=torch.randn(count, 4, generator=generator, dtype=dtype),
                scales=torch.rand(count, 3, generator=generator, dtype=dtype) * 0.12 + 0.02,
                opacities=torch.rand(count, generator=generator, dtype=dtype) ** 0.3,
                colors=torch.rand(count, 16, 3, generator=generator, dtype=dtype) - 0.3)


@pytest.mark.parametrize("kernels", ["both"])  # no autouse patch: the test names each kind of kernels
@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-11), (torch.float32, 2e-5)])
def test_compiled_and_tensor_kernels_give_the_same_image_and_gradients(kernels, dtype, tolerance):
    """The compiled loops (a Gaussian per task for the projection and the SH, then early termination per pixel
    and the transmittance recovered back to front) against the tensor operations (cumulative products), with SH
    colours, a background and two cameras, gradients for every input and the cameras; in float64 they agree to
    rounding."""
    generator = torch.Generator().manual_seed(7)
    scene = opaque_scene(400, generator, dtype)
    viewmats = torch.eye(4, dtype=dtype)[None].repeat(2, 1, 1)
    viewmats[1, :3, :3] = torch.tensor([[0.8, 0.0, 0.6], [0.0, 1.0, 0.0], [-0.6, 0.0, 0.8]], dtype=dtype)
    viewmats[1, :3, 3] = torch.tensor([1.2, -0.1, 0.5], dtype=dtype)
    backgrounds = torch.tensor([[0.2, 0.1, 0.4], [0.0, 0.5, 0.1]], dtype=dtype)
    results = []
    for name in ("tensor", "compiled"):
        leaves = {key: value.clone().requires_grad_(True)
                  for key, value in {**scene, "viewmats": viewmats, "backgrounds": backgrounds}.items()}
        image, alpha, meta = reference.rasterization(
            *list(leaves.values())[:-1], K.repeat(2, 1, 1).to(dtype), 30, 22, sh_degree=3,
            backgrounds=leaves["backgrounds"], kernels=name)
        meta["means2d"].retain_grad()
        weights = torch.linspace(-1, 1, image.numel(), dtype=dtype).reshape(image.shape)
        ((image * weights).sum() + (alpha * alpha).sum()).backward()
        results.append((image, alpha, meta["radii"], [leaf.grad for leaf in leaves.values()], meta["means2d"].grad))
    (image_t, alpha_t, radii_t, grads_t, screen_t), (image_c, alpha_c, radii_c, grads_c, screen_c) = results
    assert 0.2 < float((alpha_c > 0.99).float().mean()) < 0.9  # many pixels nearly covered: they stop early
    assert torch.equal(radii_c, radii_t) and int((radii_c > 0).sum()) > 400  # seen by both cameras
    assert torch.allclose(image_c, image_t, atol=tolerance) and torch.allclose(alpha_c, alpha_t, atol=tolerance)
    for name, got, want in zip([*leaves, "means2d"], [*grads_c, screen_c], [*grads_t, screen_t]):
        scale = float(want.abs().max())
        assert scale > 0 and torch.allclose(got, want, atol=tolerance * max(scale, 1.0), rtol=1e-3), name


@pytest.mark.parametrize("kernels", ["auto"])
def test_auto_takes_the_compiled_kernels_on_the_cpu_when_numba_imports(kernels, monkeypatch):
    assert reference._kernels(kernels, torch.device("cpu")) is reference.KERNELS["compiled"]
    assert reference._kernels(kernels, torch.device("mps")) is reference.KERNELS["tensor"]
    monkeypatch.setattr(reference, "is_installed", lambda module: module != "numba")
    assert reference._kernels("auto", torch.device("cpu")) is reference.KERNELS["tensor"]
    with pytest.raises(ValueError, match="kernels must be auto or one of tensor, compiled, got 'cuda-kernels'"):
        reference._kernels("cuda-kernels", torch.device("cpu"))
    with pytest.raises(ValueError, match="run on the CPU"):
        reference._kernels("compiled", torch.device("cuda"))


def test_sh_colours_with_too_few_coefficients_for_the_degree_are_refused():
    scene = gaussians([[0.0, 0.0, 3.0]], [[0.1] * 3], [0.9], [[[0.5, 0.5, 0.5]] * 4])
    with pytest.raises(ValueError, match=r"SH colours of degree 3 must be \(N, K >= 16, 3\), got \(1, 4, 3\)"):
        reference.rasterization(**scene, viewmats=EYE, Ks=K, width=32, height=24, sh_degree=3)
    image, _, _ = reference.rasterization(**scene, viewmats=EYE, Ks=K, width=32, height=24, sh_degree=1)
    assert float(image[0, 12, 16].max()) > 0.5  # the band-0 colour 0.5 C0 + 0.5 over the Gaussian's centre
