"""Two views to 3D, the paper's sparse-view setting: the S-Director whose motion matches the two views' pose
difference, a start/end-frame video joining the views with it, and a Gaussian fit that trusts both views as known
frames. The stages are the pack's own (camera.estimate, video.sampling, recon.train); this module only chains them,
for `dimx two-views` and for Python callers."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from ..camera.director_choice import DirectorScore, choose_director
from ..camera.estimate import TwoViewEstimate, estimate_relative_motion
from ..camera.trajectory import Trajectory
from ..directors import schedule
from ..video.components import VideoComponents
from ..video.conditioning import check_end_image
from ..video.request import VideoRequest
from ..video.runtime import Runtime
from ..video.sampling import VideoResult, generate
from .fit import Reconstruction
from .train import KNOWN_FRAMES, ReconstructOptions, reconstruct


@dataclass(frozen=True)
class TwoViewsResult:
    estimate: TwoViewEstimate
    director: DirectorScore
    trajectory: Trajectory          # the chosen director's path, one pose per generated frame
    video: VideoResult
    reconstruction: Reconstruction


def two_views_to_3d(parts: VideoComponents, request: VideoRequest, runtime: Runtime, options: ReconstructOptions,
                    *, fov_deg: float = 60.0) -> TwoViewsResult:
    """`request` holds view A as its image and view B as its end image, and the S-Directors it may use, named
    after their motions (attached); with none, the director is chosen among every motion and the base model
    runs alone. The fit's known frames are the first and the last."""
    if request.image is None or request.end_image is None:
        raise ValueError("two views to 3D needs both views: the request's image (A) and end_image (B)")
    check_end_image(parts.spec, request.image, request.end_image)  # before the pose estimate, not after it
    estimate = estimate_relative_motion(request.image.numpy(), request.end_image.numpy(), fov_deg)
    names = tuple(director.name for director in request.directors) or None
    best, _ = choose_director(estimate.motion, names)
    spec = parts.spec
    trajectory = best.path(spec.frames, fov_deg, spec.width, spec.height)
    steps = request.settings.steps
    chosen = tuple(director for director in request.directors if director.name == best.pattern)
    video = generate(parts, dataclasses.replace(request, directors=chosen, schedule=schedule.constant(
        [director.name for director in chosen], steps)), runtime)
    fit = reconstruct(video.frames, trajectory, dataclasses.replace(options,
                                                                    known_frames=KNOWN_FRAMES["first and last"]))
    return TwoViewsResult(estimate, best, trajectory, video, fit)
