"""Gaussian-splat nodes: reconstruct a scene from generated frames, save/load/preview it, and hand it to
ComfyUI's core SPLAT nodes where the host has them.

UI contract with the pack's splat viewer (js/): SaveGaussians and PreviewGaussians return
{"dimx_scene": [{"scene": {filename, subfolder, type}, "cameras": {filename, subfolder, type} | None,
"kind": "3d" | "4d"}]} where cameras is a transforms.json (OpenGL convention) and scene is, for "3d", a standard
3DGS .ply, for "4d", the manifest of a 4D scene folder (dimx_core/recon/files4d.py): {"kind": "dimx-4d", "times":
[...], "frames": [{filename, subfolder, type}, ...] one standard 3DGS .ply per time, "canonical", "field", ...}.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from comfy_api.latest import io

from ..dimx_core.camera.formats import write_transforms_json
from ..dimx_core.recon.files import SCENE_EXTENSIONS as SCENE_FILE_EXTENSIONS
from ..dimx_core.recon.files import SCENE_FORMATS, cameras_path, load_scene, save_scene, write_ply
from ..dimx_core.recon.gaussians import Gaussians, check_renderable
from ..dimx_core.recon.loss import LPIPS_FILE
from ..dimx_core.recon.files4d import MANIFEST_NAME, MANIFEST_SUFFIX, is_manifest, load_scene_4d, save_scene_4d
from ..dimx_core.recon.poses import POSE_MODES
from ..dimx_core.recon.raster import select_rasterizer
from ..dimx_core.recon.render import render_views, turntable
from ..dimx_core.recon.train import KNOWN_FRAMES, PRESETS, ReconstructOptions, reconstruct
from . import host
from .types import GaussiansType, TrajectoryType

CATEGORY = "DimensionX/3D"
SCENE_EXTENSIONS = (*SCENE_FILE_EXTENSIONS, MANIFEST_SUFFIX)
PREVIEW_CAMERAS = "preview.transforms.json"  # the fly-through poses, beside a previewed 4D scene
TRAINING_MEMORY = 6 << 30  # bytes asked of ComfyUI's memory manager before a GPU fit
LPIPS_FOLDER = "lpips"     # under models/dimensionx/: where the user places torchvision's VGG16 file for LPIPS


def _file_entry(path: str, subfolder: str, kind: str) -> dict:
    return {"filename": os.path.basename(path), "subfolder": subfolder, "type": kind}


def _scene_ui(scene_file: str, subfolder: str, kind: str, cameras_file: str | None, dimensions: str = "3d") -> dict:
    cameras = None if cameras_file is None else _file_entry(cameras_file, subfolder, kind)
    return {"dimx_scene": [{"scene": _file_entry(scene_file, subfolder, kind), "cameras": cameras,
                            "kind": dimensions}]}


def _save_4d(gaussians, filename_prefix: str, *, temp: bool, scene_format: str = "ply",
             poses=None) -> tuple[str, dict]:
    """A 4D scene folder under output/ (or temp/) and the viewer's ui entry; `poses` (a fly-through) become the
    shown cameras instead of the fitted ones."""
    kind = "temp" if temp else "output"
    times = len(gaussians.deformation.times)
    with host.comfy_interrupts(), host.result_folder(filename_prefix, temp=temp) as (partial, final, subfolder):
        manifest = save_scene_4d(partial, gaussians, subfolder=subfolder, kind=kind, scene_format=scene_format,
                                 hooks=host.hooks(times))
        cameras = (write_transforms_json(partial / PREVIEW_CAMERAS, poses).name if poses is not None
                   else (json.loads(manifest.read_text())["cameras"] or {}).get("filename"))
    return str(final / MANIFEST_NAME), _scene_ui(MANIFEST_NAME, subfolder, kind, cameras, "4d")


def _viewer_ply(gaussians, poses) -> dict:
    """The viewer's ui entry from a PLY of the scene in the temp folder (the viewer reads PLY), with `poses` as
    its cameras."""
    ply, subfolder, _ = host.result_path("DimensionX/preview", "ply", temp=True)
    write_ply(ply, gaussians)
    cameras = None if poses is None else str(write_transforms_json(cameras_path(ply), poses))
    return _scene_ui(ply, subfolder, "temp", cameras)


def lpips_input() -> io.Float.Input:
    return io.Float.Input("lpips_weight", default=0.0, min=0.0, max=10.0, step=0.01,
                          tooltip=f"Weight of the LPIPS term of the paper's loss (0: off). Needs torchvision's VGG16 "
                                  f"ImageNet weights, {LPIPS_FILE}, placed in ComfyUI/models/dimensionx/{LPIPS_FOLDER}/ "
                                  "(never downloaded); slower per step.")


def lpips_weights_path() -> str:
    """Where the VGG16 file for LPIPS is: the first models/dimensionx folder that has it, else where it should be
    (the fit's error then names that path)."""
    candidates = [os.path.join(root, LPIPS_FOLDER, LPIPS_FILE) for root in host.model_folder_paths()]
    return next((path for path in candidates if os.path.isfile(path)), candidates[0])


def initial_points_input() -> io.Int.Input:
    return io.Int.Input("initial_points", default=0, min=0, max=2_000_000,
                        tooltip="Random starting Gaussians when SfM gives no points; 0 uses the preset's "
                                "(30k fast, 50k standard, 100k high). The 3D fit draws them in a cube about the "
                                "scene and drops those no camera sees; the 4D fit, where every camera looks. Fewer "
                                "is faster on a CPU.")


class GaussianReconstruct(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXGaussianReconstruct",
            display_name="Gaussian Reconstruct (DimensionX)",
            category=CATEGORY,
            description="Fits a 3D Gaussian-splat scene to the frames an S-Director generated along a camera "
                        "trajectory (DimensionX's trajectory-aware 3D stage). Camera poses come from "
                        "structure-from-motion checked against the trajectory, or from the trajectory (as given, "
                        "or refined with the scene); the loss is confidence-weighted (optical-flow consistency). "
                        "Uses gsplat on CUDA, an exact PyTorch rasterizer elsewhere.",
            inputs=[
                io.Image.Input("frames", tooltip="The generated video frames, in order (one per trajectory pose)."),
                TrajectoryType.Input("trajectory", tooltip="The camera trajectory the video was generated along "
                                                           "(same number of poses as frames)."),
                io.Combo.Input("preset", options=list(PRESETS), default="standard",
                               tooltip="fast: 3k steps; standard: 7k steps; high: 30k steps with longer "
                                       "densification. On a GPU with gsplat, standard takes well under a minute."),
                io.Combo.Input("poses", options=list(POSE_MODES), default="auto",
                               tooltip="auto: SfM poses checked against the trajectory (refuses if the video "
                                       "contradicts it), the trajectory as given when SfM fails or is not to be "
                                       "trusted; trajectory: the requested poses, refined with the scene (about a "
                                       "fifth slower); fixed: the requested poses as given, not refined; sfm: SfM "
                                       "poses only."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1,
                             tooltip="Seed for starting points, view order and densification."),
                io.Int.Input("steps", default=0, min=0, max=100_000,
                             tooltip="Optimisation steps; 0 uses the preset's count. Schedules scale with it."),
                initial_points_input(),
                lpips_input(),
                io.Mask.Input("mask", optional=True,
                              tooltip="Optional: white pixels are fitted, black ones ignored (one mask for all "
                                      "frames, or one per frame)."),
                io.Combo.Input("known_frames", options=list(KNOWN_FRAMES), default="none", optional=True,
                               tooltip="Frames that are real photos, trusted over the generated ones: 'first and "
                                       "last' for a video joining two views (both weighted as known frames)."),
            ],
            outputs=[GaussiansType.Output(display_name="gaussians"),
                     io.String.Output(display_name="report",
                                      tooltip="Pose source, measured disagreement with the trajectory, steps, "
                                              "final loss, Gaussian count and rasterizer.")],
        )

    @classmethod
    def execute(cls, frames, trajectory, preset, poses, seed, steps, initial_points=0, lpips_weight=0.0,
                mask=None, known_frames="none") -> io.NodeOutput:
        if known_frames not in KNOWN_FRAMES:
            raise ValueError(f"known_frames must be one of {', '.join(KNOWN_FRAMES)}, got {known_frames!r}")
        device = host.compute_device()
        options = ReconstructOptions(preset=preset, poses=poses, seed=seed, steps=steps or None,
                                     initial_points=initial_points or None, device=str(device),
                                     lpips_weight=lpips_weight, lpips_weights=lpips_weights_path(),
                                     known_frames=KNOWN_FRAMES[known_frames])
        with host.fitting(steps or PRESETS[preset].steps, TRAINING_MEMORY) as hooks:
            result = reconstruct(frames, trajectory, options, mask=mask, hooks=hooks)
        return io.NodeOutput(result.gaussians, result.report.as_text())


class SaveGaussians(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXSaveGaussians",
            display_name="Save Gaussians (DimensionX)",
            category=CATEGORY,
            description="Writes the scene as a standard 3DGS PLY, a compact Niantic .spz or a .splat (SuperSplat, "
                        "Spark and ComfyUI's own splat nodes read them), with the fitted cameras as transforms.json "
                        "beside it, under ComfyUI's output folder. A 4D scene becomes a folder: one scene file per "
                        "fitted time, the canonical scene, the deformation field (safetensors + JSON) and a manifest "
                        "that Load Gaussians reads back. Shows the scene in the DimensionX splat viewer.",
            inputs=[
                GaussiansType.Input("gaussians", tooltip="The scene to save."),
                io.String.Input("filename_prefix", default="DimensionX/scene",
                                tooltip="Name (and subfolder) under ComfyUI's output folder; a counter is added "
                                        "(a 4D scene's folder is numbered the same way)."),
                io.Combo.Input("format", options=list(SCENE_FORMATS), default="ply",
                               tooltip="; ".join(f"{kind.name}: {kind.description}" for kind in SCENE_FORMATS.values())
                               + ". A 4D scene writes every time and the canonical scene in this format."),
            ],
            outputs=[io.String.Output(display_name="ply_path",
                                      tooltip="Full path of the written scene file (of a 4D scene: its manifest, "
                                              "scene.dimx4d.json).")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, gaussians, filename_prefix, format="ply") -> io.NodeOutput:  # noqa: A002 - the input's name
        if format not in SCENE_FORMATS:
            raise ValueError(f"format must be one of {', '.join(SCENE_FORMATS)}, got {format!r}")
        if gaussians.deformation is not None:
            manifest, ui = _save_4d(gaussians, filename_prefix, temp=False, scene_format=format)
            if format != "ply":  # the viewer plays PLY frames: it gets a copy in the temp folder
                _, ui = _save_4d(gaussians, "DimensionX/preview4d", temp=True)
            return io.NodeOutput(manifest, ui=ui)
        path, subfolder, _ = host.result_path(filename_prefix, SCENE_FORMATS[format].extension.lstrip("."))
        save_scene(path, gaussians)
        if format != "ply":
            return io.NodeOutput(path, ui=_viewer_ply(gaussians, gaussians.cameras))
        cameras = str(cameras_path(path)) if gaussians.cameras is not None else None
        return io.NodeOutput(path, ui=_scene_ui(path, subfolder, "output", cameras))


class LoadGaussians(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXLoadGaussians",
            display_name="Load Gaussians (DimensionX)",
            category=CATEGORY,
            description="Reads a Gaussian-splat scene (.ply in the 3DGS layout, .spz or .splat) from ComfyUI's input "
                        "folder or from earlier results in the output folder, with its cameras when a "
                        "<name>.transforms.json lies beside it; or a 4D scene (deformable Gaussians) from the "
                        "scene.dimx4d.json manifest Save Gaussians wrote into its folder.",
            inputs=[io.Combo.Input("scene", options=host.input_or_output_files(SCENE_EXTENSIONS),
                                   tooltip="A .ply, .spz or .splat in ComfyUI/input, or one marked [output] that a "
                                           "Save Gaussians node wrote; a scene.dimx4d.json loads a whole 4D "
                                           "scene (its time_*.ply files are single moments).")],
            outputs=[GaussiansType.Output(display_name="gaussians")],
        )

    @classmethod
    def execute(cls, scene) -> io.NodeOutput:
        path = str(host.listed_file(scene, host.input_or_output_files(SCENE_EXTENSIONS), "scene"))
        return io.NodeOutput(load_scene_4d(path) if is_manifest(path) else load_scene(path))

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
                        "(the connected one, else the cameras it was fitted from). A 4D scene is shown moving: "
                        "each frame at its own time, from the first fitted time to the last (a camera-and-time "
                        "fly-through). Also shows it in the DimensionX splat viewer (the files go to the temp "
                        "folder).",
            inputs=[
                GaussiansType.Input("gaussians", tooltip="The scene to render."),
                io.Combo.Input("path", options=["turntable", "trajectory"], default="turntable",
                               tooltip="turntable: a full circle around the scene; trajectory: the poses of the "
                                       "trajectory input, or the scene's fitted cameras when none is connected."),
                io.Int.Input("frames", default=36, min=1, max=720,
                             tooltip="Number of turntable frames (the trajectory path has its own count)."),
                io.Int.Input("width", default=512, min=16, max=4096, step=8,
                             tooltip="Turntable frame width in pixels (a trajectory renders at its own size)."),
                io.Int.Input("height", default=512, min=16, max=4096, step=8,
                             tooltip="Turntable frame height in pixels."),
                TrajectoryType.Input("trajectory", optional=True,
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
        times = None
        if gaussians.deformation is not None:
            times = np.linspace(*gaussians.deformation.field.config.time_range, len(poses)).tolist()
        with host.comfy_interrupts():
            rasterizer = select_rasterizer(host.compute_device(), hooks=host.hooks(1))
            images = render_views(gaussians, poses, times=times, rasterizer=rasterizer, hooks=host.hooks(len(poses)))
        if times is not None:
            _, ui = _save_4d(gaussians, "DimensionX/preview4d", temp=True, poses=poses)
            return io.NodeOutput(images.to(host.intermediate_device()), ui=ui)
        return io.NodeOutput(images.to(host.intermediate_device()), ui=_viewer_ply(gaussians, poses))


class GaussiansToSplat(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXGaussiansToSplat",
            display_name="Gaussians to Splat (DimensionX)",
            category=CATEGORY,
            description="Converts a DimensionX scene into ComfyUI's core SPLAT value, so the core splat "
                        "nodes (preview, save, render, transform, merge) can use it.",
            inputs=[GaussiansType.Input("gaussians", tooltip="The scene to convert.")],
            outputs=[io.Splat.Output(display_name="splat")],
        )

    @classmethod
    def execute(cls, gaussians) -> io.NodeOutput:
        from comfy_api.latest import Types  # only where the host has the core SPLAT type

        scene = gaussians.to("cpu")
        splat = Types.SPLAT(positions=scene.means[None], scales=scene.scales()[None],
                            rotations=torch.nn.functional.normalize(scene.quats_wxyz, dim=-1)[None],
                            opacities=scene.opacities()[None, :, None], sh=scene.sh[None])
        return io.NodeOutput(splat)


class SplatToGaussians(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXSplatToGaussians",
            display_name="Splat to Gaussians (DimensionX)",
            category=CATEGORY,
            description="Converts ComfyUI's core SPLAT value (from core's splat loaders, renderers and transforms) "
                        "into a DimensionX scene, for the pack's viewer, preview, save and reconstruction nodes.",
            inputs=[io.Splat.Input("splat", tooltip="A core SPLAT value (a batch of scenes)."),
                    io.Int.Input("index", default=0, min=0, max=4096,
                                 tooltip="Which scene of the SPLAT batch to take (0: the first).")],
            outputs=[GaussiansType.Output(display_name="gaussians", tooltip="The scene as DimensionX Gaussians.")],
        )

    @classmethod
    def execute(cls, splat, index=0) -> io.NodeOutput:
        batch = splat.positions.shape[0]
        if not 0 <= index < batch:
            raise ValueError(f"index {index} is outside this SPLAT batch of {batch} scene(s)")
        count = splat.positions.shape[1] if splat.counts is None else int(splat.counts[index])
        if count == 0:
            raise ValueError(f"scene {index} of this SPLAT holds no Gaussians")
        values = (splat.positions, splat.scales, splat.rotations, splat.opacities, splat.sh)
        scene = Gaussians.from_activated(*(tensor[index, :count].detach().cpu() for tensor in values))
        check_renderable(scene, "this SPLAT")
        return io.NodeOutput(scene)


NODES: list[type[io.ComfyNode]] = [GaussianReconstruct, SaveGaussians, LoadGaussians, PreviewGaussians,
                                   GaussiansToSplat, SplatToGaussians]
