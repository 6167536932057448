"""The 4D reconstruction node: DimensionX's multi-view videos -> a deformable Gaussian-splat scene."""
from __future__ import annotations

from comfy_api.latest import io

from ..dimx_core.recon.poses import POSE_MODES
from ..dimx_core.recon.train4d import PRESETS_4D, Reconstruct4DOptions, kept_cameras, reconstruct_4d
from . import host
from .recon import TRAINING_MEMORY, initial_points_input, lpips_input, lpips_weights_path
from .types import GaussiansType, TrajectoryType

CATEGORY = "DimensionX/4D"


class Gaussian4DReconstruct(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXGaussian4DReconstruct",
            display_name="Gaussian 4D Reconstruct (DimensionX)",
            category=CATEGORY,
            description="Fits a deformable Gaussian-splat scene to DimensionX's multi-view videos (the last stage "
                        "of image -> 4D): canonical Gaussians plus a HexPlane deformation field over time. A static "
                        "warm-up fits the K views of the reference time; then all K cameras x N times train "
                        "together, the K camera poses shared by every time, with the 3D stage's "
                        "confidence-weighted loss and densification. gsplat on CUDA, an exact PyTorch rasterizer "
                        "elsewhere.",
            inputs=[
                io.Image.Input("multiview", tooltip="K per-camera videos of N frames, camera after camera: Multi-View "
                                                    "Generate's output, or Appearance Refine's after it."),
                io.Int.Input("views", default=4, min=1, max=1024,
                             tooltip="K, the number of cameras: connect Multi-View Generate's 'views' output."),
                io.Int.Input("times", default=2, min=2, max=4096,
                             tooltip="N, the frames of each camera video: connect Multi-View Generate's 'times' "
                                     "output."),
                TrajectoryType.Input("trajectory",
                                     tooltip="The S-Director's camera path the multi-view videos were generated along "
                                             "(one pose per generated frame, e.g. the Trajectory Planner's). The node "
                                             "keeps the same K evenly spaced cameras that Multi-View Generate kept."),
                io.Int.Input("reference_time", default=0, min=0, max=4095,
                             tooltip="Index (0 to N-1) of the reference frame's time: the warm-up fits its K views "
                                     "and the canonical scene is the scene at that time. Connect Select Reference "
                                     "Frame's index when it chose among the same N frames."),
                io.Combo.Input("preset", options=list(PRESETS_4D), default="fast",
                               tooltip="fast: 6k steps (1.5k warm-up), 32/64 planes; standard: 14k (3k warm-up), "
                                       "64/128 planes; high: 30k with a wider field MLP. On a GPU with gsplat, fast "
                                       "takes about a minute for 8 cameras at 720x480."),
                io.Combo.Input("poses", options=list(POSE_MODES), default="auto",
                               tooltip="Camera poses, from the K views at the reference time (a still scene): auto "
                                       "checks them with SfM against the trajectory (else keeps them as given), "
                                       "trajectory refines the requested poses, fixed uses them as given, sfm "
                                       "uses SfM only. The poses are shared by every time."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1,
                             tooltip="Seed for starting points, the field's initial weights, frame order and "
                                     "densification."),
                io.Int.Input("steps", default=0, min=0, max=200_000,
                             tooltip="Optimisation steps in all (warm-up included); 0 uses the preset's count. "
                                     "The warm-up and the schedules keep their share."),
                initial_points_input(),
                lpips_input(),
            ],
            outputs=[GaussiansType.Output(display_name="gaussians",
                                          tooltip="The canonical scene (at the reference time) carrying the "
                                                  "deformation field: Save Gaussians writes one PLY per time."),
                     io.String.Output(display_name="report",
                                      tooltip="Cameras x times, stages, pose source, final loss, Gaussian count, "
                                              "field shape and rasterizer.")],
        )

    @classmethod
    def execute(cls, multiview, views, times, trajectory, reference_time, preset, poses, seed, steps,
                initial_points=0, lpips_weight=0.0) -> io.NodeOutput:
        cameras = kept_cameras(trajectory, views)
        options = Reconstruct4DOptions(preset=preset, steps=steps or None, reference_time=reference_time, seed=seed,
                                       poses=poses, initial_points=initial_points or None,
                                       device=str(host.compute_device()), lpips_weight=lpips_weight,
                                       lpips_weights=lpips_weights_path())
        with host.fitting(steps or PRESETS_4D[preset].fit.steps, TRAINING_MEMORY) as hooks:
            result = reconstruct_4d(multiview, views, times, cameras, options, hooks=hooks)
        return io.NodeOutput(result.gaussians, result.report.as_text())


NODES: list[type[io.ComfyNode]] = [Gaussian4DReconstruct]
