"""Camera-path nodes: plan, choose a director for two views, split long paths, export and import camera files."""
from __future__ import annotations

from comfy_api.latest import io, ui

from ..dimx_core.camera import Trajectory, director_choice, patterns, planner, split_motion
from ..dimx_core.camera.articulated import MAX_CLIPS
from ..dimx_core.camera.conventions import to_load3d_camera, two_views_from_load3d
from ..dimx_core.camera.estimate import estimate_relative_motion
from ..dimx_core.camera.formats import read_camera_file, write_colmap_text, write_transforms_json
from ..dimx_core.camera.paths import DEFAULT_AZIMUTH_RANGE, GENXD_HELP, PATH_PATTERNS, plan_path
from . import host
from .types import TrajectoryType, VideoModelType

CATEGORY = "DimensionX/camera"
EXPORT_FORMATS = ("transforms.json", "colmap")
PATTERN_HELP = "Camera motion of the S-Director: " + "; ".join(f"{p.name}: {p.description}" for p in patterns.TABLE)


def _camera_inputs() -> list:
    """Widgets every planner shares; their names are also the preview route's query parameters."""
    return [
        io.Float.Input("radius", default=planner.DEFAULT_RADIUS, min=0.01, max=1000.0, step=0.05,
                       tooltip="Distance from the first camera to the pivot the orbits turn around (the subject), "
                               "in scene units. Sets the scale: a dolly_in must stay short of it."),
        io.Float.Input("elevation", default=0.0, min=-89.0, max=89.0, step=1.0,
                       tooltip="Degrees the first camera looks down at the pivot (negative: up). Horizontal orbits "
                               "turn about the world's vertical and keep this elevation; other motions ignore it."),
        io.Float.Input("fov_deg", default=planner.DEFAULT_FOV_DEG, min=1.0, max=179.0, step=1.0,
                       tooltip="Horizontal field of view of the input image in degrees; sets the focal length "
                               "(60 suits most photos, 40 a 50 mm lens)."),
        io.Int.Input("width", default=0, min=0, max=8192, step=8,
                     tooltip="Width of the generated frames in pixels; 0: the connected model's (without one, "
                             f"CogVideoX-5b-I2V's {planner.DEFAULT_SIZE[0]})."),
        io.Int.Input("height", default=0, min=0, max=8192, step=8,
                     tooltip="Height of the generated frames in pixels; 0: the connected model's (without one, "
                             f"{planner.DEFAULT_SIZE[1]})."),
    ]


def _model_input():
    return VideoModelType.Input("model", optional=True,
                                tooltip="The video model the path is for (Load Video Model): frames, width and "
                                        "height left at 0 follow its videos (CogVideoX-5b-I2V: 49 frames at "
                                        "720x480; DimensionX's 360-degree model: 145 at 480x320).")


def video_geometry(model, frames: int, width: int, height: int) -> tuple[int, int, int]:
    """(frames, width, height) with every 0 replaced by the model's value, or CogVideoX-5b-I2V's without a model;
    values the user set stay as set."""
    spec = model.parts.spec if model is not None else None
    defaults = (spec.frames, spec.width, spec.height) if spec else (planner.DEFAULT_FRAMES, *planner.DEFAULT_SIZE)
    return tuple(value or default for value, default in zip((frames, width, height), defaults))


class TrajectoryPlanner(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXTrajectoryPlanner", display_name="Trajectory Planner (DimensionX)",
            category=CATEGORY,
            description="Plans the camera path an S-Director produces: one pose and one pinhole camera per "
                        "generated frame, the first being the input image's camera at the origin. Also names the "
                        "director LoRA that produces the motion.",
            inputs=[
                io.Combo.Input("pattern", options=list(PATH_PATTERNS), default="orbit_left",
                               tooltip=PATTERN_HELP + "; " + GENXD_HELP),
                io.Int.Input("frames", default=0, min=0, max=planner.MAX_FRAMES,
                             tooltip="Frames of the video; 0: the connected model's (without one, CogVideoX-5b-I2V's "
                                     f"{planner.DEFAULT_FRAMES})."),
                io.Float.Input("magnitude", default=planner.DEFAULT_ANGLE_DEG, min=0.001, max=planner.MAX_MAGNITUDE,
                               step=0.5,
                               tooltip="Total motion: degrees for rotations and orbits (typical 20-45), scene units "
                                       "for truck/pedestal/dolly (typical 0.2-1 with radius 2). The loops "
                                       "(orbit_360, orbit_360_right) and the GenXD modes do not use it."),
                *_camera_inputs(),
                io.Combo.Input("easing", options=list(planner.EASINGS), default="linear",
                               tooltip="linear: constant speed. ease: starts and stops gently (same end pose). The "
                                       "GenXD modes keep GenXD's own spacing."),
                _model_input(),
                io.Float.Input("azimuth_start", default=DEFAULT_AZIMUTH_RANGE[0], min=-3600.0, max=3600.0, step=1.0,
                               optional=True, tooltip="GenXD modes only: first azimuth of GenXD's azimuth range, in "
                                                      "degrees (growing azimuth: the camera orbits left)."),
                io.Float.Input("azimuth_end", default=DEFAULT_AZIMUTH_RANGE[1], min=-3600.0, max=3600.0, step=1.0,
                               optional=True, tooltip="GenXD modes only: last azimuth of GenXD's azimuth range, in "
                                                      "degrees (0 to 360 in orbit mode: a full circle)."),
            ],
            outputs=[TrajectoryType.Output(display_name="trajectory"),
                     io.String.Output(display_name="director",
                                      tooltip="Name of the S-Director LoRA that produces this motion.")])

    @classmethod
    def execute(cls, pattern, frames, magnitude, radius, elevation, fov_deg, width, height, easing,
                model=None, azimuth_start=DEFAULT_AZIMUTH_RANGE[0],
                azimuth_end=DEFAULT_AZIMUTH_RANGE[1]) -> io.NodeOutput:
        frames, width, height = video_geometry(model, frames, width, height)
        path = plan_path(pattern, frames, magnitude, azimuth_range=(azimuth_start, azimuth_end), radius=radius,
                         elevation=elevation, fov_deg=fov_deg, width=width, height=height, easing=easing)
        return io.NodeOutput(path, path.director or "")


class ArticulatedPathPlanner(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXArticulatedPathPlanner", display_name="Articulated Path Planner (DimensionX)",
            category=CATEGORY,
            description="Splits a large camera motion (a 120-degree orbit, a 360-degree loop) into chained clips of "
                        "small motion, as LiftImage3D does: each clip is one director video that starts from the "
                        "previous clip's last frame. Outputs the whole path and every clip in its own start frame.",
            inputs=[
                io.Combo.Input("pattern", options=list(patterns.PATTERNS), default="orbit_left", tooltip=PATTERN_HELP
                               + ". A loop is split as a full loop of the motion it repeats (orbit_360: "
                               "orbit_left; orbit_360_right: orbit_right)."),
                io.Float.Input("total", default=120.0, min=0.001, max=planner.MAX_MAGNITUDE, step=1.0,
                               tooltip="Whole motion: degrees for rotations and orbits, scene units for translations "
                                       "(not used by the loops)."),
                io.Float.Input("max_clip", default=30.0, min=0.001, max=planner.MAX_MAGNITUDE, step=1.0,
                               tooltip="Largest motion one clip may cover; the path is cut into the fewest equal "
                                       "clips below it (20-45 degrees keeps a director in its comfort zone; at "
                                       f"most {MAX_CLIPS} clips)."),
                io.Int.Input("frames_per_clip", default=0, min=0, max=planner.MAX_FRAMES,
                             tooltip="Frames of each clip, its shared first frame included; 0: the connected "
                                     f"model's (without one, {planner.DEFAULT_FRAMES})."),
                *_camera_inputs(),
                _model_input(),
            ],
            outputs=[TrajectoryType.Output(display_name="path", tooltip="The whole path, joints counted once."),
                     TrajectoryType.Output(display_name="clips", is_output_list=True,
                                           tooltip="One trajectory per clip, first pose identity; its start pose in "
                                                   "the path is in meta['start_c2w_opencv']."),
                     io.String.Output(display_name="director"),
                     io.String.Output(display_name="summary")])

    @classmethod
    def execute(cls, pattern, total, max_clip, frames_per_clip, radius, elevation, fov_deg, width,
                height, model=None) -> io.NodeOutput:
        frames_per_clip, width, height = video_geometry(model, frames_per_clip, width, height)
        with host.comfy_interrupts():
            path = split_motion(pattern, total, max_clip, frames_per_clip, hooks=host.hooks(1), radius=radius,
                                elevation=elevation, fov_deg=fov_deg, width=width, height=height)
        first, whole = path.clips[0], path.combined()
        summary = (f"{len(path.clips)} clips of {first.meta['magnitude']:g} {first.meta['unit']} ({first.pattern}, "
                   f"{len(first)} frames each, {len(whole)} distinct frames in all)")
        return io.NodeOutput(whole, path.clips, first.director, summary, ui=ui.PreviewText(summary))


class DirectorChooser(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXDirectorChooser", display_name="Director Chooser (DimensionX)",
            category=CATEGORY,
            description="Adaptive trajectory planning for sparse views: scores every S-Director's camera motion "
                        "against the relative pose of two views (estimated from two images with SIFT features, or "
                        "given) and picks the best. Scores use angles only, so the unknown scale does not matter.",
            inputs=[
                io.Image.Input("image_a", optional=True,
                               tooltip="First view, where the generation starts (the first image of a batch)."),
                io.Image.Input("image_b", optional=True,
                               tooltip="Second view, where the camera should arrive (the first image of a batch)."),
                TrajectoryType.Input("views", optional=True,
                                     tooltip="Instead of images: a trajectory whose first and last cameras are the "
                                             "two views."),
                io.String.Input("relative_pose", default="", multiline=True,
                                tooltip="Instead of images: view B's camera-to-world pose in view A's camera frame "
                                        "(OpenCV axes: x right, y down, z forward), 16 or 12 numbers."),
                io.Float.Input("fov_deg", default=planner.DEFAULT_FOV_DEG, min=1.0, max=179.0, step=1.0,
                               tooltip="Horizontal field of view of the two images in degrees."),
                io.String.Input("candidates", default="all",
                                tooltip="Directors to choose from: 'all' or 'released' (the same since 2025-08: the "
                                        "12 basic moves and 4 orbits are all published) or a comma list of the "
                                        "ones you have, such as 'orbit_left, orbit_up, pan_left'."),
                io.Int.Input("frames", default=planner.DEFAULT_FRAMES, min=2, max=planner.MAX_FRAMES, optional=True,
                             tooltip="Frames of the video that joins the two views (the model's: 49 for "
                                     "CogVideoX-5b and Fun InP): how many poses `path` has."),
            ],
            outputs=[io.String.Output(display_name="director",
                                      tooltip="The best director's name; as a Director Sampler schedule it picks "
                                              "that director among the connected ones."),
                     io.String.Output(display_name="scores", tooltip="Every candidate's score and errors, best first."),
                     TrajectoryType.Output(display_name="views",
                                           tooltip="The two views as a trajectory (translation of unit length)."),
                     TrajectoryType.Output(display_name="path",
                                           tooltip="The best director's camera path by the fitted amount, one pose "
                                                   "per frame: the poses of a video from image_a to image_b, for "
                                                   "Gaussian Reconstruct.")],
            is_output_node=True)

    @classmethod
    def execute(cls, fov_deg, candidates, relative_pose="", image_a=None, image_b=None,
                views: Trajectory | None = None, frames=planner.DEFAULT_FRAMES) -> io.NodeOutput:
        given = [name for name, present in (("image_a/image_b", image_a is not None or image_b is not None),
                                             ("views", views is not None),
                                             ("relative_pose", bool(relative_pose.strip()))) if present]
        if len(given) != 1:
            raise ValueError("give exactly one of: two images (image_a and image_b), a views trajectory, or a "
                             f"relative_pose; got {', '.join(given) if given else 'none'}")
        note, (width, height) = "", planner.DEFAULT_SIZE
        if views is not None:
            motion = director_choice.RelativeMotion.between(views.c2w_opencv[0], views.c2w_opencv[-1])
            width, height = views.width, views.height
        elif given == ["relative_pose"]:
            motion = director_choice.RelativeMotion.from_pose(director_choice.parse_pose_text(relative_pose))
        elif image_a is None or image_b is None:
            raise ValueError("connect both image_a and image_b to compare two images")
        else:
            first, second = image_a[0].cpu().numpy(), image_b[0].cpu().numpy()
            estimate = estimate_relative_motion(first, second, fov_deg)
            motion, (height, width) = estimate.motion, first.shape[:2]
            note = f"\n{estimate.describe()}"
        best, scores = director_choice.choose_director(motion, director_choice.parse_candidates(candidates))
        table = director_choice.score_table(best, scores) + note
        pair = motion.two_views(fov_deg, width, height, director=best.director)
        path = best.path(frames, fov_deg, width, height)
        return io.NodeOutput(best.director, table, pair, path, ui=ui.PreviewText(table))


class TrajectoryExport(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXTrajectoryExport", display_name="Trajectory Export (DimensionX)",
            category=CATEGORY,
            description="Writes a camera path for other tools into a new folder under ComfyUI's output directory: "
                        "nerfstudio transforms.json (gsplat, nerfstudio, Postshot) or COLMAP text (sparse/0/"
                        "cameras.txt, images.txt, empty points3D.txt). Frames go to images/frame_00000.png...",
            inputs=[TrajectoryType.Input("trajectory", tooltip="The camera path to write."),
                    io.Combo.Input("format", options=list(EXPORT_FORMATS), default="transforms.json",
                                   tooltip="transforms.json: nerfstudio/gsplat/Postshot. colmap: COLMAP text model "
                                           "in sparse/0/."),
                    io.String.Input("filename_prefix", default="dimensionx/trajectory",
                                    tooltip="Folder name under ComfyUI's output directory; a number is appended "
                                            "(trajectory_00001_) so nothing is overwritten.")],
            outputs=[io.String.Output(display_name="folder", tooltip="The folder that was written.")],
            is_output_node=True)

    @classmethod
    def execute(cls, trajectory: Trajectory, format, filename_prefix) -> io.NodeOutput:
        if format not in EXPORT_FORMATS:
            raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {format!r}")

        def write(folder):
            if format == "colmap":
                write_colmap_text(folder / "sparse" / "0", trajectory)
            else:
                write_transforms_json(folder / "transforms.json", trajectory)

        folder = host.write_output_folder(filename_prefix, write)
        text = f"{len(trajectory)} cameras ({trajectory.pattern}) written to {folder}"
        return io.NodeOutput(str(folder), ui=ui.PreviewText(text))


class TrajectoryLoad(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXTrajectoryLoad", display_name="Trajectory Load (DimensionX)",
            category=CATEGORY,
            description="Reads a camera path from ComfyUI's input directory: a nerfstudio transforms.json or a "
                        "COLMAP text folder (cameras.txt + images.txt, pinhole cameras), e.g. to reuse a path "
                        "exported earlier or one tracked from a real video.",
            inputs=[io.Combo.Input("file", options=host.input_camera_files(),
                                   tooltip="A *transforms*.json file or a folder with COLMAP cameras.txt and "
                                           "images.txt, inside ComfyUI's input folder (refresh after adding one).")],
            outputs=[TrajectoryType.Output(display_name="trajectory"),
                     io.String.Output(display_name="info")])

    @classmethod
    def execute(cls, file) -> io.NodeOutput:
        trajectory, names = read_camera_file(host.listed_file(file, host.input_camera_files(), "file"))
        info = (f"{len(trajectory)} cameras, {trajectory.width}x{trajectory.height}, pattern {trajectory.pattern}, "
                f"first image {names[0]}")
        return io.NodeOutput(trajectory, info, ui=ui.PreviewText(info))


class TrajectoryToLoad3DCamera(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXTrajectoryToLoad3DCamera", display_name="Trajectory to Load3D Camera (DimensionX)",
            category=CATEGORY,
            description="One frame of a camera path as ComfyUI's LOAD3D_CAMERA, so the core Preview 3D node "
                        "can show a model or scene from that camera (three.js axes: y up, looking down -z).",
            inputs=[TrajectoryType.Input("trajectory", tooltip="The camera path."),
                    io.Int.Input("frame", default=0, min=0, max=100000,
                                 tooltip="Which frame's camera (0 = the input image's camera).")],
            outputs=[io.Load3DCamera.Output(display_name="camera_info")])

    @classmethod
    def execute(cls, trajectory: Trajectory, frame) -> io.NodeOutput:
        return io.NodeOutput(to_load3d_camera(trajectory, frame))


class Load3DCamerasToViews(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXLoad3DCamerasToViews", display_name="Load3D Cameras to Views (DimensionX)",
            category=CATEGORY,
            description="Two cameras framed in ComfyUI's Load 3D viewer as a two-view trajectory (B relative to "
                        "A, A at the origin), e.g. to ask the Director Chooser which S-Director moves from "
                        "one framing to the other.",
            inputs=[io.Load3DCamera.Input("camera_a", tooltip="The starting view (a Load 3D camera_info)."),
                    io.Load3DCamera.Input("camera_b", tooltip="The view to reach."),
                    io.Int.Input("width", default=planner.DEFAULT_SIZE[0], min=16, max=8192, step=8,
                                 tooltip="Image width the cameras are made for."),
                    io.Int.Input("height", default=planner.DEFAULT_SIZE[1], min=16, max=8192, step=8,
                                 tooltip="Image height the cameras are made for."),
                    io.Float.Input("fallback_fov_deg", default=50.0, min=1.0, max=179.0,
                                   tooltip="Vertical field of view used when the camera does not carry one "
                                           "(older ComfyUI); three.js's default is 50.")],
            outputs=[TrajectoryType.Output(display_name="views")])

    @classmethod
    def execute(cls, camera_a, camera_b, width, height, fallback_fov_deg) -> io.NodeOutput:
        return io.NodeOutput(two_views_from_load3d(camera_a, camera_b, width, height, fallback_fov_deg))


NODES: list[type[io.ComfyNode]] = [TrajectoryPlanner, ArticulatedPathPlanner, DirectorChooser, TrajectoryExport,
                                   TrajectoryLoad, TrajectoryToLoad3DCamera, Load3DCamerasToViews]
