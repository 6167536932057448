"""The fit's cameras: each step's world-to-camera matrix, kept as planned or refined jointly with the scene.

Refinement is gsplat's trainer's pose_opt (a correction per camera, Adam at 1e-5 decaying 100x over the fit) with
three changes:
- one parameter per camera, so Adam moves a camera only at the steps that see it (with one (N, 6) tensor every
  camera had a gradient, zeros but the viewed row's, and Adam's momentum moved all of them at every step);
- the correction's rotation in closed form (Rodrigues) for the one camera a step sees, in few operations:
  torch.linalg.matrix_exp chooses its series on the host from the matrix's norm, a device sync every step on
  CUDA. The fit is bound by launching kernels, and every operation here is one more launch forward and backward: on
  CUDA the correction runs as one CUDA graph each way (graphed_correction);
- anchors: cameras that keep their planned pose and so fix the frame the scene is fitted in (the caller picks
  cameras the fit sees: an anchor that is never rendered fixes nothing, and the refined cameras and the scene then
  drift together off the plan, which held-out views at planned poses pay for; bench/RESULTS-recon-plain-cpu.md).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Iterable

import numpy as np
import torch

POSE_LEARNING_RATE = 1e-5  # gsplat trainer's pose_opt_lr: radians (and scene-scale units) per step
POSE_LEARNING_RATE_DECAY = 0.01  # over the whole fit, as gsplat's trainer decays pose_opt_lr (and the means' rate)


@functools.lru_cache(maxsize=8)
def _constants(device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """(skew map, 3x3 identity, a rigid matrix's last row, the sinc arguments' scales) on `device`, made once: a
    tensor made from Python values in each step would be a host-to-device copy every step. (w @ skew map) read as
    3x3 row-major is [w]x."""
    with torch.inference_mode(False):
        skew = torch.tensor([[0, 0, 0], [0, 0, -1], [0, 1, 0], [0, 0, 1], [0, 0, 0], [-1, 0, 0], [0, -1, 0],
                             [1, 0, 0], [0, 0, 0]], dtype=dtype, device=device).T
        return (skew, torch.eye(3, dtype=dtype, device=device),
                torch.tensor([[0, 0, 0, 1]], dtype=dtype, device=device),
                torch.tensor([1 / math.pi, 0.5 / math.pi], dtype=dtype, device=device))


def rotation_exp(rotvec: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) exp([w]x) of rotation vectors (N, 3), by Rodrigues: I + sinc(t) [w]x + (1 - cos t) / t^2 [w]x^2
    with t = |w| and (1 - cos t) / t^2 = sinc(t / 2)^2 / 2, both finite with finite gradients at w = 0 (where every
    correction starts). Written out, in few operations, because the fit is bound by launching kernels: kornia's
    axis_angle_to_rotation_matrix builds the matrix entry by entry (~60 small kernels a call)."""
    skew_map, eye, _, scales = _constants(rotvec.device, rotvec.dtype)
    skew = (rotvec @ skew_map).unflatten(-1, (3, 3))
    angle = torch.linalg.vector_norm(rotvec, dim=-1, keepdim=True)  # its gradient at 0 is 0, not nan
    sincs = torch.sinc(angle * scales)[:, :, None, None]  # (N, 2, 1, 1): sinc(t), sinc(t / 2) (numpy's sinc)
    first = torch.addcmul(eye, sincs[:, 0], skew)
    return torch.addcmul(first, sincs[:, 1].square(), skew @ skew, value=0.5)


def _rigid(rotation: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
    """(N, 4, 4) [[rotation, position], [0, 0, 0, 1]] from (N, 3, 3) and (N, 3, 1)."""
    bottom = _constants(rotation.device, rotation.dtype)[2]
    return torch.cat([torch.cat([rotation, position], dim=-1), bottom.expand(len(rotation), 1, 4)], dim=-2)


def refined_c2w(c2w: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """c2w @ [exp([w]x) | t]: delta (N, 6) = (w, t), a rotation vector and a translation in each camera's frame."""
    rotation = c2w[:, :3, :3]
    return _rigid(rotation @ rotation_exp(delta[:, :3]), torch.baddbmm(c2w[:, :3, 3:], rotation, delta[:, 3:, None]))


def corrected_world_to_camera(planned_w2c: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The inverse of refined_c2w(c2w, delta) from the planned world-to-camera P = c2w^-1: the correction
    [R | t] is inverted in closed form, [R^T | -R^T t] P, whose top rows are R^T (P[:3] - t (0, 0, 0, 1)) - four
    operations after the rotation, where inverting the corrected pose took a dozen."""
    planned_top, bottom = planned_w2c[:, :3], planned_w2c[:, 3:]
    shifted = torch.addcmul(planned_top, delta[:, 3:, None], bottom, value=-1.0)
    return torch.cat([rotation_exp(delta[:, :3]).transpose(1, 2) @ shifted, bottom], dim=1)


def graphed_correction(device: torch.device):
    """corrected_world_to_camera for one camera; on CUDA replayed as one CUDA graph forward and one backward
    (torch.cuda.make_graphed_callables) instead of ~40 small kernels launched one by one: a 7000-step fit of the
    ball at 720x480 on the H200 took 65.2 s launched op by op, 56.1 s graphed, 43.2 s with the poses kept
    (bench/RESULTS-recon-poses-device.md). A graph owns its buffers: one per CameraPoses."""
    if device.type != "cuda":
        return corrected_world_to_camera
    sample = (torch.eye(4, device=device)[None], torch.zeros(1, 6, device=device, requires_grad=True))
    return torch.cuda.make_graphed_callables(corrected_world_to_camera, sample)


FUSED_ADAM_DEVICES = ("cuda", "cpu")  # where torch has one fused Adam kernel per step (tested here on both)


def adam(params, *, lr: float, device: torch.device, **options) -> torch.optim.Adam:
    """Adam, fused where the device has it: a fit's step is bound by its many small operations (on the GPU by
    launches, bench/RESULTS-recon-profile.md; on the CPU by the same), and the unfused step is a dozen per tensor."""
    return torch.optim.Adam(params, lr=lr, fused=device.type in FUSED_ADAM_DEVICES, **options)


def world_to_camera(c2w: torch.Tensor) -> torch.Tensor:
    """Inverse of rigid (N, 4, 4) poses without a general matrix inverse."""
    rotation_t = c2w[:, :3, :3].transpose(1, 2)
    return _rigid(rotation_t, -(rotation_t @ c2w[:, :3, 3:]))


def orthonormal(rotations: np.ndarray) -> np.ndarray:
    """Nearest rotations (float32 products drift by ~1e-7, the Trajectory check allows 1e-4)."""
    u, _, vt = np.linalg.svd(rotations)
    return u @ vt


class CameraPoses:
    """World-to-camera matrices of the fit's cameras (OpenCV c2w in), planned or refined.

    Kept: every matrix is computed once, a step only slices it. Refined: one (1, 6) correction per camera with its
    own Adam state, cameras in `anchors` never move; `steps` sets the learning rate's decay."""

    def __init__(self, c2w_opencv: np.ndarray, *, device: torch.device, refine: bool, anchors: Iterable[int] = (),
                 scale: float = 1.0, steps: int = 1):
        self.c2w = torch.as_tensor(c2w_opencv, dtype=torch.float32, device=device)
        self.planned = world_to_camera(self.c2w)
        self.anchors = sorted({int(view) % len(self.c2w) for view in anchors})
        self.deltas = [torch.nn.Parameter(torch.zeros(1, 6, device=device)) for _ in range(len(self.c2w))]
        self.optimizer = self.decay = None
        self._correct = None  # the correction's forward and backward, made at the first refined step
        if refine:
            self.optimizer = adam([self.deltas[view] for view in range(len(self.c2w)) if view not in self.anchors],
                                  lr=POSE_LEARNING_RATE * max(scale, 1e-3), device=device)
            self.decay = torch.optim.lr_scheduler.ExponentialLR(
                self.optimizer, gamma=POSE_LEARNING_RATE_DECAY ** (1.0 / max(1, steps)))

    @property
    def refined(self) -> bool:
        return self.optimizer is not None

    def world_to_camera(self, view: int) -> torch.Tensor:
        """(1, 4, 4) world-to-camera of camera `view`, with its correction when poses are refined."""
        if not self.refined or view in self.anchors:
            return self.planned[view:view + 1]
        if self._correct is None:
            self._correct = graphed_correction(self.c2w.device)
        return self._correct(self.planned[view:view + 1], self.deltas[view])

    def step(self) -> None:
        if self.optimizer is not None:
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.decay.step()

    def c2w_opencv(self) -> np.ndarray:
        """(N, 4, 4) float64 camera-to-world poses as fitted (orthonormal rotations)."""
        with torch.no_grad():
            deltas = torch.cat(self.deltas)
            deltas[self.anchors] = 0.0
            fitted = refined_c2w(self.c2w, deltas).cpu().double().numpy()
        fitted[:, :3, :3] = orthonormal(fitted[:, :3, :3])
        return fitted
