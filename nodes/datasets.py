"""Dimension-variant dataset nodes: spatial clips rendered from Gaussian scenes, temporal clips curated from videos."""
from __future__ import annotations

from comfy_api.latest import io

from ..dimx_core.camera import patterns
from ..dimx_core.camera.planner import EASINGS
from ..dimx_core.datasets.clips import VIDEO_SUFFIXES
from ..dimx_core.datasets.layout import open_dataset
from ..dimx_core.datasets.settings import (SPATIAL_TEMPLATE, OccupancySettings, SpatialSettings, StillCameraTest,
                                           TemporalSettings)
from ..dimx_core.datasets.spatial import Scene, build_spatial_dataset
from ..dimx_core.datasets.temporal import curate_temporal_dataset, find_videos
from ..dimx_core.recon.files import SCENE_EXTENSIONS, load_scene
from ..dimx_core.recon.raster import select_rasterizer
from ..dimx_core.training.conditions import geometry_of
from . import host
from .types import DatasetType, GaussiansType, VideoModelType

CATEGORY = "DimensionX/training"
SPATIAL, OCCUPANCY = SpatialSettings(patterns=("orbit_left",)), OccupancySettings()
TEMPORAL, STILL = TemporalSettings(), StillCameraTest()
_OUTPUTS = [DatasetType.Output(display_name="dataset", tooltip="The dataset folder, for Train Director LoRA."),
            io.Image.Output(display_name="preview", tooltip="First, middle and last frame of each clip (up to 16)."),
            io.String.Output(display_name="report", tooltip="Every candidate clip, accepted or rejected, and why.")]


def _model_input():
    return VideoModelType.Input("model", tooltip="The model the dataset is for (Load Video Model): clips get its size "
                                             "and frame count (720x480, 49 frames for CogVideoX-5b-I2V).")


def _prefix_input(default: str):
    return io.String.Input("filename_prefix", default=default,
                           tooltip="Folder name under ComfyUI's output folder; a counter is added. The dataset "
                                   "appears there whole once it is complete (prompts.txt, videos.txt, videos/).")


def _build(filename_prefix: str, total: int, fill) -> io.NodeOutput:
    with host.comfy_interrupts(), host.result_folder(filename_prefix) as (partial, final, _):
        summary = fill(partial, host.hooks(total))
    report = f"{summary.describe()}: {final}\n{summary.report}"
    return io.NodeOutput(open_dataset(final), summary.preview.to(host.intermediate_device()), report)


class BuildSpatialDataset(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXBuildSpatialDataset",
            display_name="Build Spatial Dataset (DimensionX)",
            category=CATEGORY,
            description="Renders the training clips of an S-Director from Gaussian scenes (the paper's "
                        "spatial-variant data): start poses drawn inside the PCA box of each scene's cameras, the "
                        "chosen motions' camera paths planned from there, paths that leave the covered region or "
                        "come near a surface refused (depth rendered from the Gaussians), the rest rendered at the "
                        "model's size and frame count (gsplat on CUDA). Writes a dataset folder (prompts.txt + "
                        "videos.txt, as CogVideoX fine-tuning scripts read) with each clip's poses and the report.",
            inputs=[
                _model_input(),
                GaussiansType.Input("gaussians",
                                    tooltip="A scene with the cameras it was fitted from (Load Gaussians of a PLY "
                                            "with its <name>.transforms.json, or Gaussian Reconstruct)."),
                io.String.Input("patterns", default="orbit_left",
                                tooltip="Camera motions, comma-separated (one director usually learns one): "
                                        + ", ".join(patterns.PATTERNS)),
                io.Int.Input("clips_per_pattern", default=SPATIAL.clips_per_pattern, min=1, max=10000,
                             tooltip="Clips per motion; the paper trains on about 100. The scenes are taken in turn."),
                io.Float.Input("angle_deg", default=SPATIAL.angle_deg, min=0.5, max=359.0, step=0.5,
                               tooltip="Degrees of rotations and orbits."),
                io.Float.Input("distance_fraction", default=SPATIAL.distance_fraction, min=0.01, max=0.99,
                               step=0.01, tooltip="Translations move this fraction of the distance from the start "
                                                  "to the scene's centre."),
                io.Combo.Input("easing", options=list(EASINGS), default=SPATIAL.easing,
                               tooltip="linear: constant speed (as the directors move); ease: start and stop gently."),
                io.String.Input("captions", multiline=True, default="",
                                tooltip="Caption templates: 'orbit_left: a red car, the camera circles it' per line, "
                                        "or one text for every motion. Placeholders {scene} {pattern} {motion} "
                                        f"{{magnitude}}. Empty: '{SPATIAL_TEMPLATE}'."),
                io.String.Input("scene_name", default="scene",
                                tooltip="What {scene} says in the captions for the connected scene."),
                io.Float.Input("clearance", default=OCCUPANCY.clearance, min=0.0, max=2.0, step=0.01,
                               tooltip="Closest a path may come to a surface, as a fraction of the scene distance "
                                       "(how far the scene's cameras stand from what they look at)."),
                io.Float.Input("box_margin", default=OCCUPANCY.box_margin, min=0.0, max=2.0, step=0.01,
                               tooltip="How far past the scene's cameras a path may go (their PCA box grown by this "
                                       "fraction of the scene distance)."),
                io.Float.Input("opacity_threshold", default=OCCUPANCY.opacity_threshold, min=0.01, max=0.99,
                               step=0.01, tooltip="Accumulated opacity at which rendered depth counts as surface."),
                io.Int.Input("attempts", default=SPATIAL.attempts, min=1, max=1000,
                             tooltip="Start poses tried per clip before that clip is given up (the report says why)."),
                io.Int.Input("seed", default=0, min=0, max=2**31 - 1, tooltip="Seed of the start poses."),
                _prefix_input("DimensionX/datasets/spatial"),
                io.String.Input("extra_scenes", multiline=True, default="", optional=True,
                                tooltip="More scenes, one file per line as Load Gaussians lists them (.ply, .spz or "
                                        ".splat with cameras beside them, from input/ or '[output]')."),
            ],
            outputs=_OUTPUTS,
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, gaussians, patterns, clips_per_pattern, angle_deg, distance_fraction, easing, captions,
                scene_name, clearance, box_margin, opacity_threshold, attempts, seed, filename_prefix,
                extra_scenes="") -> io.NodeOutput:
        occupancy = OccupancySettings(opacity_threshold=opacity_threshold, clearance=clearance, box_margin=box_margin)
        settings = SpatialSettings(patterns=tuple(p.strip() for p in patterns.split(",") if p.strip()),
                                   clips_per_pattern=clips_per_pattern, angle_deg=angle_deg,
                                   distance_fraction=distance_fraction, easing=easing, attempts=attempts, seed=seed,
                                   templates=captions, occupancy=occupancy)
        scenes = [Scene(scene_name.strip() or "scene", gaussians)]
        known = host.input_or_output_files(SCENE_EXTENSIONS)
        for line in filter(None, (line.strip() for line in (extra_scenes or "").splitlines())):
            path = host.listed_file(line, known, "extra_scenes")
            scenes.append(Scene(path.stem, load_scene(path)))
        rasterizer = select_rasterizer(host.compute_device())
        geometry = geometry_of(model.parts)
        total = len(settings.patterns) * clips_per_pattern
        return _build(filename_prefix, total, lambda folder, hooks: build_spatial_dataset(
            folder, scenes, geometry, settings, rasterizer=rasterizer, hooks=hooks))


class CurateTemporalDataset(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXCurateTemporalDataset",
            display_name="Curate Temporal Dataset (DimensionX)",
            category=CATEGORY,
            description="Finds the training clips of a T-Director in your videos (the paper's temporal-variant "
                        "data): each video is cut into clips of the model's length and size, and optical flow "
                        "(OpenCV) keeps the clips whose camera stands still - most of the textured background "
                        "barely moves - while objects move. Writes a dataset folder (prompts.txt + videos.txt) "
                        "and a report with every clip's static share, background flow and verdict.",
            inputs=[
                _model_input(),
                io.Combo.Input("videos", options=host.input_folders_with(VIDEO_SUFFIXES),
                               tooltip="A folder in ComfyUI's input folder holding your videos (subfolders "
                                       "included). A <video>.txt beside a video is its caption."),
                io.Float.Input("still_px", default=STILL.still_px, min=0.01, max=20.0, step=0.01,
                               tooltip="A textured pixel moving less than this (pixels per frame, at the model's "
                                       "size) counts as still."),
                io.Float.Input("min_static_share", default=STILL.min_static_share, min=0.0, max=1.0, step=0.01,
                               tooltip="Share of the textured pixels that must stay still (in 90% of the frames)."),
                io.Float.Input("max_background_flow", default=STILL.max_background_flow, min=0.01, max=20.0,
                               step=0.01, tooltip="The median flow of the textured pixels may not exceed this "
                                                  "(pixels per frame): above it the camera moves."),
                io.Float.Input("min_texture_share", default=STILL.min_texture_share, min=0.0, max=1.0, step=0.01,
                               tooltip="Clips with less texture than this cannot be judged and are left out."),
                io.Int.Input("frame_stride", default=0, min=0, max=100,
                             tooltip="Keep every n-th frame; 0: the video's frame rate / 8 (CogVideoX plays at 8)."),
                io.Int.Input("max_clips_per_video", default=0, min=0, max=10000, tooltip="0: every clip."),
                io.String.Input("caption", default="",
                                tooltip="Caption template: {caption} is the text of <video>.txt (or the file name), "
                                        "{video} the file name. Empty: '{caption}'."),
                _prefix_input("DimensionX/datasets/temporal"),
            ],
            outputs=_OUTPUTS,
            is_output_node=True,
        )

    @classmethod
    def execute(cls, model, videos, still_px, min_static_share, max_background_flow, min_texture_share,
                frame_stride, max_clips_per_video, caption, filename_prefix) -> io.NodeOutput:
        folder = host.listed_folder(videos, host.input_folders_with(VIDEO_SUFFIXES), "videos")
        test = StillCameraTest(still_px=still_px, min_static_share=min_static_share,
                               max_background_flow=max_background_flow, min_texture_share=min_texture_share)
        settings = TemporalSettings(test=test, frame_stride=frame_stride, max_clips_per_video=max_clips_per_video,
                                    template=caption)
        files = find_videos(folder)
        geometry = geometry_of(model.parts)
        return _build(filename_prefix, len(files), lambda folder, hooks: curate_temporal_dataset(
            folder, files, geometry, settings, hooks=hooks))


NODES: list[type[io.ComfyNode]] = [BuildSpatialDataset, CurateTemporalDataset]
