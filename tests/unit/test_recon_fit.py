"""GaussianReconstruct on CPU: a known scene is recovered (held-out PSNR floor), inputs are checked, the loop
reports progress with previews, stops when asked, and is reproducible."""
import numpy as np
import pytest
import torch

from dimx_core.hooks import Hooks, Interrupted
from dimx_core.recon.confidence import FLOOR, flow_confidence, residual_confidence
from dimx_core.recon.files import read_ply, write_ply
from dimx_core.recon.loss import LPIPS_FILE, SSIM_KINDS, load_lpips, lpips_map, ssim_map, weighted_mean
from dimx_core.recon.synthetic import orbit_rig
from dimx_core.recon.train import ReconstructOptions, reconstruct
from tests.unit.recon_scenes import one_thread, orbit_frames  # noqa: F401 (autouse fixture)

TINY = dict(preset="fast", poses="trajectory", confidence="none", steps=4, initial_points=60)


def test_known_scene_is_recovered_on_held_out_frames(tmp_path):
    """The issue's accuracy evidence, small: 16 views of the ball-before-wall scene at 64x48, frames 0 and 8
    held out, 400 steps from 300 random points. Recorded: 23.9 dB since the shared fit loop (22.9 before: densification
    ran before the optimisers' step), 21.0 from the cube start, 20.8 / 22.6 / 21.2 for seeds 0 / 1 / 2 since the
    rasterizer drops the pairs that reach no pixel and Adam is fused on the CPU (the same image and update, other
    rounding: a fit this short and small follows it by a dB either way); the floor leaves room for that."""
    frames, trajectory = orbit_frames(64, 48, 16)
    result = reconstruct(frames, trajectory, ReconstructOptions(preset="fast", steps=400, initial_points=300,
                                                                holdout_every=8, poses="trajectory", seed=0))
    report = result.report
    assert report.heldout_frames == [0, 8]
    assert report.heldout_psnr > 20.0, report.as_text()
    assert report.gaussians > 300  # gsplat's DefaultStrategy densified on CPU tensors
    assert report.pose_source == "trajectory" and report.backend == "torch"
    scene = result.gaussians
    assert scene.sh_degree == 3 and len(scene.cameras) == 16
    assert np.allclose(scene.cameras.c2w_opencv[0], trajectory.c2w_opencv[0])  # the first camera is fixed
    back = read_ply(write_ply(tmp_path / "scene.ply", scene))
    assert torch.equal(back.means, scene.means)
    text = report.as_text()
    assert "held-out PSNR" in text and "pose refinement moved the cameras" in text


def test_fixed_poses_come_out_exactly_as_given_and_the_report_says_so():
    """poses=fixed: no camera moves (against poses=trajectory, which refines every camera but the anchor)."""
    frames, trajectory = orbit_frames(64, 48, 16)
    options = dict(TINY, steps=30)
    fixed = reconstruct(frames, trajectory, ReconstructOptions(**dict(options, poses="fixed")))
    refined = reconstruct(frames, trajectory, ReconstructOptions(**options))
    assert fixed.report.pose_source == "fixed"
    assert np.array_equal(fixed.gaussians.cameras.c2w_opencv, trajectory.c2w_opencv)
    assert "exactly as given, not refined" in fixed.report.as_text()
    assert "pose refinement moved the cameras" not in fixed.report.as_text()
    moved = np.abs(refined.gaussians.cameras.c2w_opencv - trajectory.c2w_opencv).max(axis=(1, 2))
    assert moved[0] < 1e-6 and moved[1:].max() > 1e-7


def test_frames_and_trajectory_must_pair_one_to_one():
    frames, trajectory = orbit_frames(64, 48, 16)
    with pytest.raises(ValueError, match="got 15 frames but the trajectory has 16 poses"):
        reconstruct(frames[:15], trajectory, ReconstructOptions(**TINY))


def test_frames_of_another_aspect_ratio_are_refused_and_a_proportional_size_is_scaled():
    frames, trajectory = orbit_frames(64, 48, 16)
    with pytest.raises(ValueError, match="frames are 64x40 but the trajectory was planned for 64x48"):
        reconstruct(frames[:, :40], trajectory, ReconstructOptions(**TINY))
    small = torch.nn.functional.interpolate(frames.permute(0, 3, 1, 2), size=(24, 32), mode="area")
    result = reconstruct(small.permute(0, 2, 3, 1), trajectory, ReconstructOptions(**TINY))
    assert result.gaussians.cameras.width == 32
    assert np.allclose(result.gaussians.cameras.intrinsics[0, 0, 0], trajectory.intrinsics[0, 0, 0] / 2)
    assert "intrinsics scaled" in result.report.as_text()


@pytest.mark.parametrize("mask, message", [
    (torch.ones(3, 48, 64), r"mask must be \(H, W\), \(1, H, W\) or \(16, H, W\)"),
    (torch.ones(16, 48, 60), "H, W = 48, 64"),
    (torch.zeros(1, 48, 64), "no pixel to fit"),
])
def test_masks_of_the_wrong_shape_or_empty_are_refused(mask, message):
    frames, trajectory = orbit_frames(64, 48, 16)
    with pytest.raises(ValueError, match=message):
        reconstruct(frames, trajectory, ReconstructOptions(**TINY), mask=mask)


def test_bad_frames_and_options_are_refused():
    frames, trajectory = orbit_frames(64, 48, 16)
    with pytest.raises(ValueError, match="colours in 0..1"):
        reconstruct(frames * 255, trajectory, ReconstructOptions(**TINY))
    with pytest.raises(ValueError, match=r"\(N, H, W, 3\)"):
        reconstruct(frames[..., 0], trajectory, ReconstructOptions(**TINY))
    for bad, message in ((dict(preset="ultra"), "preset must be one of fast, standard, high"),
                         (dict(poses="colmap"), "poses must be one of auto, trajectory, fixed, sfm"),
                         (dict(steps=0), "steps must be at least 1")):
        with pytest.raises(ValueError, match=message):
            reconstruct(frames, trajectory, ReconstructOptions(**{**TINY, **bad}))


def test_progress_carries_previews_and_cancel_stops_between_steps():
    frames, trajectory = orbit_frames(64, 48, 16)
    seen = []
    hooks = Hooks(progress=lambda step, total, preview: seen.append((step, total, preview)))
    reconstruct(frames, trajectory, ReconstructOptions(**{**TINY, "steps": 6, "preview_every": 3}), hooks=hooks)
    assert [s for s, _, _ in seen] == [1, 2, 3, 4, 5, 6] and {t for _, t, _ in seen} == {6}
    previews = [p for _, _, p in seen if p is not None]
    assert len(previews) == 2 and previews[0].shape == (48, 64, 3)
    stop_after = iter(range(100))
    with pytest.raises(Interrupted):
        reconstruct(frames, trajectory, ReconstructOptions(**{**TINY, "steps": 50}),
                    hooks=Hooks(should_stop=lambda: next(stop_after) >= 3))


def test_the_same_seed_gives_the_same_scene():
    frames, trajectory = orbit_frames(64, 48, 16)
    first, second = (reconstruct(frames, trajectory, ReconstructOptions(**{**TINY, "steps": 10}))
                     for _ in range(2))
    assert torch.equal(first.gaussians.means, second.gaussians.means)
    third = reconstruct(frames, trajectory, ReconstructOptions(**{**TINY, "steps": 10, "seed": 1}))
    assert not torch.equal(first.gaussians.means, third.gaussians.means)


def test_flow_confidence_trusts_consistent_motion_and_doubts_a_flickering_patch():
    rng = np.random.default_rng(0)
    texture = np.kron(rng.uniform(0, 1, (30, 40, 3)), np.ones((4, 4, 1)))  # 120 x 160, 4 px blocks
    frames = np.stack([np.roll(texture, 2 * i, axis=1)[:, 20:140] for i in range(4)]).astype(np.float32)
    frames[2, 40:80, 40:80] = rng.uniform(0, 1, (40, 40, 3))  # content that appears in one frame only
    confidence = flow_confidence(frames)
    assert confidence.shape == (4, 120, 120) and confidence.min() >= FLOOR
    assert np.median(confidence[1, 20:100, 20:100]) > 0.9
    assert confidence[2, 50:70, 50:70].mean() < 0.5


def test_residual_confidence_down_weights_outliers_linearly():
    residual = torch.full((10, 10), 0.1)
    residual[0, :5] = torch.tensor([0.15, 0.2, 0.5, 1.0, 5.0])
    weight = residual_confidence(residual)
    assert torch.allclose(weight[5], torch.ones(10))
    assert weight[0, 2] == FLOOR and weight[0, 4] == FLOOR and 0.0 < weight[0, 0] <= 1.0


def test_masked_pixels_carry_no_loss_and_no_gradient():
    per_pixel = torch.rand(6, 8, requires_grad=True)
    mask = torch.zeros(6, 8)
    mask[:, :4] = 1.0
    loss = weighted_mean(per_pixel, torch.ones(6, 8), mask)
    loss.backward()
    assert torch.allclose(loss, per_pixel[:, :4].mean())
    assert (per_pixel.grad[:, 4:] == 0).all() and (per_pixel.grad[:, :4] > 0).all()


@pytest.mark.parametrize("kind", SSIM_KINDS)
@pytest.mark.parametrize("height, width", [(48, 64), (13, 17), (6, 9)])
def test_ssim_equals_kornias_map_and_gradients(height, width, kind):
    """Both kinds (the statistics blurred in one depthwise pass per axis; the compiled loops with their backward
    written out) give kornia.metrics.ssim(..., 11)'s map and gradients (float32, reflect padding, sizes the window
    does not divide, one just above its radius)."""
    import kornia

    torch.manual_seed(height)
    render, target = torch.rand(height, width, 3, requires_grad=True), torch.rand(height, width, 3)
    weights = torch.rand(height, width, 3)
    ours = ssim_map(render, target, kind)
    (grad_ours,) = torch.autograd.grad((ours * weights).sum(), render)
    theirs = kornia.metrics.ssim(render.permute(2, 0, 1)[None], target.permute(2, 0, 1)[None], 11)[0].permute(1, 2, 0)
    (grad_theirs,) = torch.autograd.grad((theirs * weights).sum(), render)
    assert ours.shape == (height, width, 3) and -1.0 <= float(ours.detach().min()) < 0.5
    # float32 sums in another order: the compiled gradients within 2e-6 (of some 5 at most), the tensor's 1e-6
    assert torch.allclose(ours, theirs, atol=2e-6)
    assert torch.allclose(grad_ours, grad_theirs, atol=1e-6 if kind == "tensor" else 2e-6)
    assert torch.allclose(ssim_map(target, target, kind), torch.ones(height, width, 3), atol=1e-5)


def test_ssim_auto_takes_the_compiled_loops_on_the_cpu_and_refuses_unknown_kinds():
    render, target = torch.rand(20, 24, 3, requires_grad=True), torch.rand(20, 24, 3)
    auto = ssim_map(render, target)
    assert auto.grad_fn is not None and type(auto.grad_fn).__name__.startswith("_SsimCompiled")
    assert torch.equal(auto, ssim_map(render, target, "compiled"))
    # a target that is fitted too, or an image within the window's radius, takes the tensor form
    assert type(ssim_map(render, target.requires_grad_()).grad_fn).__name__ != type(auto.grad_fn).__name__
    half = render.detach().bfloat16().requires_grad_()
    assert type(ssim_map(half, target.detach().bfloat16()).grad_fn).__name__ != type(auto.grad_fn).__name__
    with pytest.raises(RuntimeError, match="[Pp]adding"):
        ssim_map(torch.rand(4, 30, 3), torch.rand(4, 30, 3))
    with pytest.raises(ValueError, match="SSIM kind must be auto or one of tensor, compiled, got 'fast'"):
        ssim_map(render, target, "fast")


@pytest.fixture(scope="module")
def vgg16_file(tmp_path_factory):
    """A VGG16 state dict in torchvision's layout (features only: the classifier is never used), random weights."""
    from torchvision.models import vgg16

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("models") / "lpips" / LPIPS_FILE
    path.parent.mkdir()
    torch.save({k: v for k, v in vgg16(weights=None).state_dict().items() if k.startswith("features.")}, path)
    return path


def test_lpips_builds_on_the_vgg16_file_the_user_placed(vgg16_file):
    network = load_lpips(vgg16_file, torch.device("cpu"))
    expected = torch.load(vgg16_file, weights_only=True)
    assert torch.equal(network.net.slice3.state_dict()["10.weight"], expected["features.10.weight"])
    assert torch.equal(network.net.slice5.state_dict()["28.bias"], expected["features.28.bias"])
    image = torch.rand(48, 64, 3)
    assert float(lpips_map(network, image, image).abs().max()) < 1e-6
    assert float(lpips_map(network, image, image.flip(1)).mean()) > 0.0


def test_lpips_without_its_file_names_the_path_and_a_foreign_file_is_refused(tmp_path):
    frames, trajectory = orbit_frames(64, 48, 16)
    missing = tmp_path / "lpips" / LPIPS_FILE
    with pytest.raises(FileNotFoundError, match=f"{LPIPS_FILE}' at '{missing}', which does not exist"):
        reconstruct(frames, trajectory, ReconstructOptions(**TINY, lpips_weight=0.1, lpips_weights=str(missing)))
    with pytest.raises(ValueError, match="needs the VGG16 weights file"):
        reconstruct(frames, trajectory, ReconstructOptions(**TINY, lpips_weight=0.1))
    other = tmp_path / "other.pth"
    torch.save({"features.0.weight": torch.zeros(3, 3)}, other)
    with pytest.raises(ValueError, match="is not torchvision's VGG16 state dict"):
        load_lpips(other, torch.device("cpu"))


def test_the_lpips_term_enters_the_fit_with_its_weight(vgg16_file):
    frames, trajectory = orbit_frames(64, 48, 16)
    plain = reconstruct(frames, trajectory, ReconstructOptions(**{**TINY, "steps": 2}))
    weighted = reconstruct(frames, trajectory, ReconstructOptions(**{**TINY, "steps": 2}, lpips_weight=0.5,
                                                                  lpips_weights=str(vgg16_file)))
    assert f"LPIPS on: weight 0.5, VGG16 from {vgg16_file}" in weighted.report.as_text()
    assert weighted.report.final_loss > plain.report.final_loss + 1e-4  # the same steps, plus 0.5 x LPIPS


def test_auto_poses_use_sfm_points_and_report_a_trajectory_20_percent_off():
    pytest.importorskip("pycolmap")
    frames, truth = orbit_frames(128, 96, 12, gaussians=2000)
    options = ReconstructOptions(preset="fast", poses="auto", steps=5, seed=0)
    right = reconstruct(frames, truth, options)
    text = right.report.as_text()
    assert right.report.pose_source == "sfm" and "-> agrees" in text and "WARNING" not in text
    assert right.report.pose_check.registered == 12
    path = np.linalg.norm(truth.positions[-1] - truth.positions[0])
    assert np.linalg.norm(right.gaussians.cameras.positions - truth.positions, axis=1).max() < 0.1 * path
    wrong = reconstruct(frames, orbit_rig(12, 36.0, 128, 96), options)
    text = wrong.report.as_text()
    assert "-> differs" in text and "WARNING: the video does not move the way the trajectory asks" in text
    assert "turns 0.8" in text  # 30 degrees rendered, 36 asked


def _psnr(rendered: torch.Tensor, truth: torch.Tensor) -> float:
    return float(-10 * torch.log10(((rendered - truth) ** 2).mean()))


def test_known_frames_outweigh_the_generated_frames_between_them():
    """Two true views with six disagreeing (tinted) frames between them, as a sparse-view video may give: weighted as
    known frames, the two views are fitted closer than when every frame counts alike."""
    from dimx_core.recon.render import render_views

    truth, trajectory = orbit_frames(64, 48, 8)
    frames = truth.clone()
    frames[1:-1] = (frames[1:-1] * 0.6 + torch.tensor([0.4, 0.0, 0.3])).clamp(0, 1)
    options = dict(preset="fast", poses="trajectory", confidence="none", steps=150, initial_points=300, seed=0)
    scores = {}
    for known in ((), (0, -1)):
        scene = reconstruct(frames, trajectory, ReconstructOptions(**options, known_frames=known)).gaussians
        rendered = render_views(scene, trajectory)
        scores[known] = [_psnr(rendered[i], truth[i]) for i in (0, -1)]
    gains = [weighted - plain for weighted, plain in zip(scores[(0, -1)], scores[()])]
    assert min(gains) > 0.3 and sum(gains) / 2 > 0.8, scores  # measured +0.65 and +1.8 dB


def test_known_frames_outside_the_video_are_refused():
    frames, trajectory = orbit_frames(64, 48, 16)
    with pytest.raises(ValueError, match=r"known_frames \[0, 16\]: there are 16 frames"):
        reconstruct(frames, trajectory, ReconstructOptions(**TINY, known_frames=(0, 16)))
