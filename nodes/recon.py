"""Gaussian-splat nodes: reconstruct a scene from generated frames, save/load/preview it, and hand it to
ComfyUI's core SPLAT nodes where the host has them.

UI contract with the pack's splat viewer (js/): SaveGaussians and PreviewGaussians return
{"dimx_scene": [{"scene": {filename, subfolder, type}, "cameras": {filename, subfolder, type} | None,
"kind": "3d"}]} where scene is a standard 3DGS .ply and cameras a transforms.json (OpenGL convention).
"""
from __future__ import annotations

import os

import torch
from comfy_api.latest import io

from ..dimx_core.camera.formats import write_transforms_json
from ..dimx_core.recon.files import cameras_path, load_scene, save_scene, write_ply
from ..dimx_core.recon.poses import POSE_MODES
from ..dimx_core.recon.raster import select_rasterizer
from ..dimx_core.recon.render import render_views, turntable
from ..dimx_core.recon.train import PRESETS, ReconstructOptions, reconstruct
from . import host
from .types import Gaussians, Trajectory

CATEGORY = "DimensionX/3D"
SCENE_EXTENSIONS = (".ply", ".splat")
TRAINING_MEMORY = 6 << 30  # bytes asked of ComfyUI's memory manager before a GPU fit


def _file_entry(path: str, subfolder: str, kind: str) -> dict:
    return {"filename": os.path.basename(path), "subfolder": subfolder, "type": kind}


def _scene_ui(ply_path: str, subfolder: str, kind: str, cameras_file: str | None) -> dict:
    cameras = None if cameras_file is None else _file_entry(cameras_file, subfolder, kind)
    return {"dimx_scene": [{"scene": _file_entry(ply_path, subfolder, kind), "cameras": cameras, "kind": "3d"}]}


class GaussianReconstruct(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXGaussianReconstruct",
            display_name="Gaussian Reconstruct (DimensionX)",
            category=CATEGORY,
            description="Fits a 3D Gaussian-splat scene to the frames an S-Director generated along a camera "
                        "trajectory (DimensionX's trajectory-aware 3D stage). Camera poses come from "
                        "structure-from-motion checked against the trajectory, or from the trajectory refined "
                        "with the scene; the loss is confidence-weighted (optical-flow consistency). Uses gsplat "
                        "on CUDA, an exact PyTorch rasterizer elsewhere.",
            inputs=[
                io.Image.Input("frames", tooltip="The generated video frames, in order (one per trajectory pose)."),
                Trajectory.Input("trajectory", tooltip="The camera trajectory the video was generated along "
                                                      "(same number of poses as frames)."),
                io.Combo.Input("preset", options=list(PRESETS), default="standard",
                               tooltip="fast: 3k steps; standard: 7k steps; high: 30k steps with longer "
                                       "densification. On a GPU with gsplat, standard takes well under a minute."),
                io.Combo.Input("poses", options=list(POSE_MODES), default="auto",
                               tooltip="auto: SfM poses checked against the trajectory (refuses if the video "
                                       "contradicts it), the trajectory when SfM fails; trajectory: the requested "
                                       "poses, refined; sfm: SfM poses only."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1,
                             tooltip="Seed for starting points, view order and densification."),
                io.Int.Input("steps", default=0, min=0, max=100_000,
                             tooltip="Optimisation steps; 0 uses the preset's count. Schedules scale with it."),
                io.Int.Input("initial_points", default=0, min=0, max=2_000_000,
                             tooltip="Random starting Gaussians when SfM gives no points; 0 uses the preset's "
                                     "(30k fast, 50k standard, 100k high). Fewer is faster on a CPU."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional: white pixels are fitted, black ones ignored (one mask for all "
                                      "frames, or one per frame)."),
            ],
            outputs=[Gaussians.Output(display_name="gaussians"),
                     io.String.Output(display_name="report",
                                      tooltip="Pose source, measured disagreement with the trajectory, steps, "
                                              "final loss, Gaussian count and rasterizer.")],
        )

    @classmethod
    def execute(cls, frames, trajectory, preset, poses, seed, steps, initial_points=0, mask=None) -> io.NodeOutput:
        device = host.compute_device()
        options = ReconstructOptions(preset=preset, poses=poses, seed=seed, steps=steps or None,
                                     initial_points=initial_points or None, device=str(device))
        host.make_room(TRAINING_MEMORY)
        with host.comfy_interrupts():
            result = reconstruct(frames, trajectory, options, mask=mask,
                                 hooks=host.hooks(steps or PRESETS[preset].steps))
        return io.NodeOutput(result.gaussians, result.report.as_text())


class SaveGaussians(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXSaveGaussians",
            display_name="Save Gaussians (DimensionX)",
            category=CATEGORY,
            description="Writes the scene as a standard 3DGS PLY (SuperSplat, Spark and gsplat read it), "
                        "optionally a .splat, and the fitted cameras as transforms.json beside it, under "
                        "ComfyUI's output folder. Shows the scene in the DimensionX splat viewer.",
            inputs=[
                Gaussians.Input("gaussians", tooltip="The scene to save."),
                io.String.Input("filename_prefix", default="DimensionX/scene",
                                tooltip="Name (and subfolder) under ComfyUI's output folder; a counter is added."),
                io.Boolean.Input("splat", default=False,
                                 tooltip="Also write a .splat (no view-dependent colour, 32 bytes per Gaussian)."),
            ],
            outputs=[io.String.Output(display_name="ply_path", tooltip="Full path of the written PLY.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, gaussians, filename_prefix, splat) -> io.NodeOutput:
        path, subfolder, _ = host.result_path(filename_prefix, "ply")
        save_scene(path, gaussians, splat=splat)
        cameras = str(cameras_path(path)) if gaussians.cameras is not None else None
        return io.NodeOutput(path, ui=_scene_ui(path, subfolder, "output", cameras))


class LoadGaussians(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXLoadGaussians",
            display_name="Load Gaussians (DimensionX)",
            category=CATEGORY,
            description="Reads a Gaussian-splat scene (.ply in the 3DGS layout, or .splat) from ComfyUI's input "
                        "folder or from earlier results in the output folder, with its cameras when a "
                        "<name>.transforms.json lies beside it.",
            inputs=[io.Combo.Input("scene", options=host.input_or_output_files(SCENE_EXTENSIONS),
                                   tooltip="A .ply or .splat in ComfyUI/input, or one marked [output] that a "
                                           "Save Gaussians node wrote.")],
            outputs=[Gaussians.Output(display_name="gaussians")],
        )

    @classmethod
    def execute(cls, scene) -> io.NodeOutput:
        if scene not in host.input_or_output_files(SCENE_EXTENSIONS):
            raise ValueError(f"scene: '{scene}' is not a .ply or .splat file in ComfyUI's input or output folder; "
                             "put the file into ComfyUI/input and refresh the page")
        return io.NodeOutput(load_scene(host.annotated_path(scene)))

    @classmethod
    def fingerprint_inputs(cls, scene):
        path = host.annotated_path(scene)
        return os.path.getmtime(path) if os.path.exists(path) else scene


class PreviewGaussians(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXPreviewGaussians",
            display_name="Preview Gaussians (DimensionX)",
            category=CATEGORY,
            description="Renders the scene as frames: a turntable around it, or a fly-through along a trajectory "
                        "(the connected one, else the cameras it was fitted from). Also shows it in the "
                        "DimensionX splat viewer (the PLY goes to the temp folder).",
            inputs=[
                Gaussians.Input("gaussians", tooltip="The scene to render."),
                io.Combo.Input("path", options=["turntable", "trajectory"], default="turntable",
                               tooltip="turntable: a full circle around the scene; trajectory: the poses of the "
                                       "trajectory input, or the scene's fitted cameras when none is connected."),
                io.Int.Input("frames", default=36, min=1, max=720,
                             tooltip="Number of turntable frames (the trajectory path has its own count)."),
                io.Int.Input("width", default=512, min=16, max=4096, step=8,
                             tooltip="Turntable frame width in pixels (a trajectory renders at its own size)."),
                io.Int.Input("height", default=512, min=16, max=4096, step=8,
                             tooltip="Turntable frame height in pixels."),
                Trajectory.Input("trajectory", optional=True,
                                 tooltip="Optional poses to fly along, in the scene's frame (e.g. the trajectory "
                                         "the scene was reconstructed from, or another one planned from it)."),
            ],
            outputs=[io.Image.Output(display_name="images", tooltip="One rendered frame per pose.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, gaussians, path, frames, width, height, trajectory=None) -> io.NodeOutput:
        if path == "trajectory":
            poses = trajectory if trajectory is not None else gaussians.cameras
            if poses is None:
                raise ValueError("path 'trajectory' needs a trajectory input or a scene with fitted cameras; "
                                 "connect a trajectory or choose 'turntable'")
        else:
            poses = turntable(gaussians, frames, width, height, around=gaussians.cameras)
        with host.comfy_interrupts():
            rasterizer = select_rasterizer(host.compute_device(), hooks=host.hooks(1))
            images = render_views(gaussians, poses, rasterizer=rasterizer, hooks=host.hooks(len(poses)))
        ply, subfolder, _ = host.result_path("DimensionX/preview", "ply", temp=True)
        write_ply(ply, gaussians)
        cameras = write_transforms_json(cameras_path(ply), poses)
        return io.NodeOutput(images.to(host.intermediate_device()),
                             ui=_scene_ui(ply, subfolder, "temp", str(cameras)))


NODES: list[type[io.ComfyNode]] = [GaussianReconstruct, SaveGaussians, LoadGaussians, PreviewGaussians]

if hasattr(io, "Splat"):  # the core SPLAT type (newer ComfyUI); absent hosts simply lack this converter
    from comfy_api.latest import Types

    class GaussiansToSplat(io.ComfyNode):
        @classmethod
        def define_schema(cls):
            return io.Schema(
                node_id="DimensionXGaussiansToSplat",
                display_name="Gaussians to Splat (DimensionX)",
                category=CATEGORY,
                description="Converts a DimensionX scene into ComfyUI's core SPLAT value, so the core splat "
                            "nodes (preview, save, render, transform, merge) can use it.",
                inputs=[Gaussians.Input("gaussians", tooltip="The scene to convert.")],
                outputs=[io.Splat.Output(display_name="splat")],
            )

        @classmethod
        def execute(cls, gaussians) -> io.NodeOutput:
            scene = gaussians.to("cpu")
            splat = Types.SPLAT(positions=scene.means[None], scales=scene.scales()[None],
                                rotations=torch.nn.functional.normalize(scene.quats_wxyz, dim=-1)[None],
                                opacities=scene.opacities()[None, :, None], sh=scene.sh[None])
            return io.NodeOutput(splat)

    NODES.append(GaussiansToSplat)
