"""Pose refinement's closed-form pieces: the rotation exponential (Rodrigues) against torch.linalg.matrix_exp, values
and gradients, and each step's world-to-camera against a general matrix inverse."""
import numpy as np
import pytest
import torch

from dimx_core.camera import plan
from dimx_core.recon.pose_refinement import CameraPoses, corrected_world_to_camera, refined_c2w, rotation_exp


def skew(rotvec: torch.Tensor) -> torch.Tensor:
    zero = torch.zeros_like(rotvec[:, 0])
    x, y, z = rotvec.unbind(-1)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).view(-1, 3, 3)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_rotation_exp_is_the_matrix_exponential_from_tiny_to_large_angles(dtype, atol):
    directions = torch.nn.functional.normalize(torch.randn(6, 3, generator=torch.Generator().manual_seed(0),
                                                           dtype=torch.float64), dim=-1)
    angles = torch.tensor([0.0, 1e-8, 1e-4, 0.05, 1.0, 3.1], dtype=torch.float64)[:, None]
    rotvec = (directions * angles).to(dtype)
    ours = rotation_exp(rotvec)
    assert ours.dtype == dtype and ours.shape == (6, 3, 3)
    torch.testing.assert_close(ours, torch.linalg.matrix_exp(skew(rotvec)), atol=atol, rtol=0)
    torch.testing.assert_close(ours @ ours.mT, torch.eye(3, dtype=dtype).expand(6, 3, 3), atol=atol, rtol=0)


def test_rotation_exp_has_matrix_exps_gradient_and_a_finite_one_at_zero():
    """Every correction starts at zero: there the gradient must be the generators', not nan."""
    weights = torch.randn(5, 3, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    rotvec = torch.randn(5, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 0.3
    rotvec[0] = 0.0
    gradients = []
    for exp in (rotation_exp, lambda w: torch.linalg.matrix_exp(skew(w))):
        leaf = rotvec.clone().requires_grad_()
        (gradient,) = torch.autograd.grad((exp(leaf) * weights).sum(), leaf)
        gradients.append(gradient)
    assert torch.isfinite(gradients[0]).all()
    torch.testing.assert_close(gradients[0], gradients[1], atol=1e-10, rtol=0)


def test_a_refined_cameras_world_to_camera_is_the_inverse_of_its_corrected_pose():
    path = plan("orbit_right", 6, 30.0, width=64, height=48)
    poses = CameraPoses(path.c2w_opencv, device=torch.device("cpu"), refine=True, anchors=(0, -1))
    with torch.no_grad():
        for delta in poses.deltas:
            delta.copy_(torch.tensor([[0.02, -0.01, 0.03, 0.05, 0.0, -0.02]]))
    c2w = torch.as_tensor(path.c2w_opencv, dtype=torch.float32)
    corrected = refined_c2w(c2w, torch.cat(poses.deltas).detach())
    for view in range(1, 5):
        torch.testing.assert_close(poses.world_to_camera(view)[0], torch.linalg.inv(corrected[view]), atol=2e-6,
                                   rtol=0)
    for anchor in (0, 5):  # the anchors keep their planned poses, in the steps and in the fitted cameras
        torch.testing.assert_close(poses.world_to_camera(anchor)[0], torch.linalg.inv(c2w[anchor]), atol=2e-6, rtol=0)
    fitted = poses.c2w_opencv()
    np.testing.assert_allclose(fitted[[0, 5]], path.c2w_opencv[[0, 5]], atol=1e-6)
    np.testing.assert_allclose(fitted[1:5], corrected[1:5].double().numpy(), atol=1e-5)
    kept = CameraPoses(path.c2w_opencv, device=torch.device("cpu"), refine=False)
    assert not kept.refined and kept.world_to_camera(3).grad_fn is None
    torch.testing.assert_close(kept.world_to_camera(3)[0], torch.linalg.inv(c2w[3]), atol=2e-6, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
def test_the_graphed_correction_has_the_eager_values_and_gradients_step_after_step():
    """The CUDA graph replays into its own buffers: each step's matrix and gradient must still be that step's."""
    path = plan("orbit_right", 6, 30.0, width=64, height=48)
    device = torch.device("cuda")
    graphed = CameraPoses(path.c2w_opencv, device=device, refine=True, anchors=(0,))
    eager = CameraPoses(path.c2w_opencv, device=device, refine=True, anchors=(0,))
    eager._correct = corrected_world_to_camera
    weights = torch.randn(4, 4, generator=torch.Generator().manual_seed(3)).to(device)
    for step, view in enumerate([1, 3, 1, 4, 2, 5, 3]):
        matrices = []
        for poses in (graphed, eager):
            matrix = poses.world_to_camera(view)
            (matrix * weights * (step + 1)).sum().backward()
            matrices.append(matrix.detach().clone())
            poses.step()
        torch.testing.assert_close(matrices[0], matrices[1], atol=1e-6, rtol=0)
        for ours, theirs in zip(graphed.deltas, eager.deltas):
            torch.testing.assert_close(ours.detach(), theirs.detach(), atol=1e-7, rtol=0)
    assert any(delta.abs().max() > 0 for delta in graphed.deltas[1:])
    assert graphed.deltas[0].abs().max() == 0

