import logging

import torch
from comfy_api.latest import io

from ..dimx_core.directors import schedule as schedules
from ..dimx_core.video.chain import clip_plan, generate_chain
from ..dimx_core.video.components import load_diffusers_folder
from ..dimx_core.video.sampling import FPS, generate
from ..dimx_core.video.single_file import load_single_files
from . import host, sampling_inputs
from .types import DirectorsType, TrajectoryType, VideoModelType

log = logging.getLogger("dimensionx")
SINGLE_FILES = "(single files below)"
HOST_PARTS = "(host model, clip and vae below)"
NONE = "(none)"
PRECISIONS = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


class LoadVideoModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXLoadVideoModel",
            display_name="Load Video Model (DimensionX)",
            category="DimensionX/video",
            description="Loads CogVideoX image-to-video weights (CogVideoX-5b-I2V for the DimensionX directors) "
                        "under ComfyUI's memory manager: from a diffusers folder in models/dimensionx, or from single "
                        "files you already have (transformer, VAE, T5-XXL). The model version (1.0 or 1.5) and its "
                        "size are read from the weights.",
            inputs=[
                io.Combo.Input("model", options=host.list_model_folders() + [SINGLE_FILES, HOST_PARTS],
                               tooltip="A diffusers folder (with model_index.json) from models/dimensionx or "
                                       f"models/diffusers, '{SINGLE_FILES}' to use the three files below, or "
                                       f"'{HOST_PARTS}' to use what ComfyUI already loaded."),
                io.Combo.Input("precision", options=list(PRECISIONS), default="bf16",
                               tooltip="Weight precision. bf16 is what CogVideoX-5b was trained in; fp32 for exact "
                                       "CPU runs; fp16 only on GPUs without bf16."),
                io.Combo.Input("transformer_file", options=[NONE] + host.list_files("diffusion_models"),
                               default=NONE, optional=True,
                               tooltip="Single-file mode: the CogVideoX-5b-I2V transformer from "
                                       "models/diffusion_models (diffusers or ComfyUI key names)."),
                io.Combo.Input("vae_file", options=[NONE] + host.list_files("vae"), default=NONE, optional=True,
                               tooltip="Single-file mode: the CogVideoX VAE from models/vae."),
                io.Combo.Input("text_encoder_file", options=[NONE] + host.list_files("text_encoders"), default=NONE,
                               optional=True,
                               tooltip="Single-file mode: the T5-XXL encoder (fp16/bf16) from models/text_encoders."),
                io.Model.Input("host_model", optional=True,
                               tooltip="ComfyUI's own CogVideoX-5b-I2V MODEL (Load Diffusion Model, ComfyUI 0.33 and "
                                       "newer): the samplers run on its weights, no second copy (with a model "
                                       "folder, the folder's transformer is then not loaded). Core LoRAs applied "
                                       "to it stay applied."),
                io.Clip.Input("host_clip", optional=True,
                              tooltip="ComfyUI's T5-XXL CLIP (Load CLIP, type cogvideox, sd3, mochi or ltxv): prompts "
                                      "are encoded through it with CogVideoX's 226-token padding; the folder's T5 is "
                                      "then not loaded."),
                io.Vae.Input("host_vae", optional=True,
                             tooltip="ComfyUI's CogVideoX VAE (Load VAE): used instead of the folder's."),
            ],
            outputs=[VideoModelType.Output(display_name="model"),
                     io.String.Output(display_name="info", tooltip="What was loaded: version, size, frames.")],
        )

    @classmethod
    def execute(cls, model, precision, transformer_file=NONE, vae_file=NONE, text_encoder_file=NONE,
                host_model=None, host_clip=None, host_vae=None) -> io.NodeOutput:
        dtype = PRECISIONS[precision]
        given = host.HostParts.of(host_model, host_vae, host_clip)
        if model == HOST_PARTS:
            parts = given.components()
        elif model != SINGLE_FILES:
            parts = load_diffusers_folder(host.resolve_model_folder(model), dtype, given.modules)
        elif given.modules:
            raise ValueError(f"host_model, host_clip and host_vae work with a model folder or '{HOST_PARTS}', "
                             f"not with '{SINGLE_FILES}'")
        else:
            chosen = {"transformer_file": transformer_file, "vae_file": vae_file,
                      "text_encoder_file": text_encoder_file}
            missing = [name for name, value in chosen.items() if value in (None, NONE)]
            if missing:
                raise ValueError(f"'{SINGLE_FILES}' needs {', '.join(missing)} to be chosen")
            parts = load_single_files(host.resolve_file("diffusion_models", transformer_file),
                                      host.resolve_file("vae", vae_file),
                                      host.resolve_file("text_encoders", text_encoder_file),
                                      host.t5_tokenizer_folder(), dtype)
        from_host = ", ".join(f"{name} from ComfyUI's own model" for name in given.modules)
        info = f"{parts.spec.describe()}, {precision}, from {parts.source}" + (f"; {from_host}" if from_host else "")
        info += f"\n{parts.release.describe()}"
        return io.NodeOutput(host.ManagedVideoModel.wrap(parts, given), info)


def video_output() -> list:
    """The VIDEO output, last of a node's outputs, where the host has the type."""
    return [io.Video.Output(display_name="video", tooltip="The same frames as ComfyUI's VIDEO (8 fps), for Save "
                                                          "Video.")] if host.has_core_video() else []


def with_video(values: tuple, frames: torch.Tensor, fps: float) -> tuple:
    """A node's output values, followed by the frames as a VIDEO where the host has the type (see video_output)."""
    return (*values, host.core_video(frames, fps)) if host.has_core_video() else values


def _outputs() -> list:
    return [io.Image.Output(display_name="frames", tooltip="The video as an image batch."),
            io.Latent.Output(display_name="latent", tooltip="The final video latents (B, C, T, H, W)."),
            io.Float.Output(display_name="fps", tooltip="Frame rate for Create Video / Save Video (8 for CogVideoX)."),
            io.String.Output(display_name="info", tooltip="What the run did: model, directors per step, notes."),
            *video_output()]


def _run(run: sampling_inputs.Sampling, directors, plan: schedules.DirectorSchedule) -> io.NodeOutput:
    parts = run.model.parts
    with host.comfy_interrupts():
        result = generate(parts, run.request(directors, plan), run.runtime(run.settings.steps))
    for note in result.notes:
        log.info("DimensionX: %s", note)
    info = "\n".join([parts.spec.describe(), f"directors: {plan.describe()}", *result.notes])
    latent = {"samples": result.latents.permute(0, 2, 1, 3, 4).to(host.intermediate_device())}
    frames = result.frames.to(host.intermediate_device())
    return io.NodeOutput(*with_video((frames, latent, float(result.fps), info), frames, result.fps))


class DirectorSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXDirectorSampler",
            display_name="Director Sampler (DimensionX)",
            category="DimensionX/video",
            description="One image to a video with CogVideoX image-to-video, steered by director LoRAs: none (plain "
                        "image-to-video), all connected directors for the whole run, or a per-step schedule "
                        "(e.g. an S-Director for the layout steps, then a T-Director).",
            inputs=sampling_inputs.inputs() + [
                sampling_inputs.speed_input(),
                DirectorsType.Input("directors", optional=True,
                                    tooltip="Director LoRAs from Load Director LoRA. Without a schedule all of them "
                                            "are active for every step."),
                io.String.Input("schedule", multiline=True, default="", optional=True,
                                tooltip="Optional per-step schedule, one range per line, end exclusive, in steps "
                                        "or percent: '0-3: orbit_left' then '3-50: motion@0.8'. Steps no line "
                                        "covers run without directors."),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def execute(cls, directors=None, schedule="", **sampling) -> io.NodeOutput:
        run = sampling_inputs.unpack(sampling)
        directors, steps = tuple(directors or ()), run.settings.steps
        names = [d.name for d in directors]
        plan = (schedules.parse(schedule, steps, set(names)) if schedule and schedule.strip()
                else schedules.constant(names, steps))
        return _run(run, directors, plan)


def _pick(directors, role: str, name: str, what: str):
    if name:
        found = [d for d in directors if d.name == name]
        if not found:
            raise ValueError(f"{what} '{name}' is not among the connected directors {[d.name for d in directors]}")
        return found[0]
    candidates = [d for d in directors if d.role == role]
    if len(candidates) != 1:
        raise ValueError(f"{what}: connect exactly one {role}-Director or name it "
                         f"(found {[d.name for d in candidates] or 'none'} with role {role})")
    return candidates[0]


class SwitchOnceSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXSwitchOnceSampler",
            display_name="Switch-Once Sampler (DimensionX)",
            category="DimensionX/video",
            description="The DimensionX Switch-Once composition: the S-Director steers the first steps, where the "
                        "scene's layout and camera path form, then the T-Director the rest, where motion forms — "
                        "one denoising run, solver history kept, no reload. Camera motion and object motion from "
                        "two separately trained LoRAs.",
            inputs=sampling_inputs.inputs() + [
                sampling_inputs.speed_input(),
                DirectorsType.Input("directors", tooltip="A chain holding the S-Director and the T-Director."),
                io.Int.Input("switch_step", default=3, min=0, max=1000,
                             tooltip="Steps steered by the S-Director before switching; the paper uses 3 of 50. "
                                     "More keeps the camera motion stronger, fewer gives motion more room."),
                io.String.Input("spatial_director", default="", optional=True,
                                tooltip="Name of the S-Director to use; empty: the only one with role S."),
                io.String.Input("temporal_director", default="", optional=True,
                                tooltip="Name of the T-Director to use; empty: the only one with role T."),
            ],
            outputs=_outputs(),
        )

    @classmethod
    def execute(cls, directors, switch_step, spatial_director="", temporal_director="", **sampling) -> io.NodeOutput:
        run = sampling_inputs.unpack(sampling)
        spatial = _pick(directors, "S", spatial_director.strip(), "spatial_director")
        temporal = _pick(directors, "T", temporal_director.strip(), "temporal_director")
        plan = schedules.switch_once(spatial.name, temporal.name, switch_step, run.settings.steps)
        return _run(run, directors, plan)


class ArticulatedVideo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXArticulatedVideo",
            display_name="Articulated Video (DimensionX)",
            category="DimensionX/video",
            description="Generates a long camera path (a 120-degree orbit, a full loop) as chained director videos: "
                        "the first clip starts from the image, each next clip from the previous clip's last frame, "
                        "each steered by the S-Director of its motion (LiftImage3D's articulated trajectories). The "
                        "frames match the path's poses one to one, ready for reconstruction.",
            inputs=sampling_inputs.inputs() + [
                TrajectoryType.Input("path", tooltip="The 'path' output of the Articulated Path Planner; its clip "
                                                     "count and clip length (the model's frame count) come from "
                                                     "it."),
                DirectorsType.Input("directors", tooltip="S-Directors named after the motions the path uses (e.g. a "
                                                         "Load Director LoRA named 'orbit_left')."),
                sampling_inputs.speed_input(),
            ],
            outputs=[io.Image.Output(display_name="frames", tooltip="All clips, one frame per pose of the path."),
                     io.Float.Output(display_name="fps", tooltip="Frame rate for Create Video (8)."),
                     TrajectoryType.Output(display_name="path", tooltip="The same path, to pair with the frames."),
                     io.String.Output(display_name="info", tooltip="Clips, directors and notes."),
                     *video_output()],
        )

    @classmethod
    def execute(cls, path, directors, **sampling) -> io.NodeOutput:
        run = sampling_inputs.unpack(sampling)
        clips, _ = clip_plan(path)
        with host.comfy_interrupts():
            frames, notes = generate_chain(run.model.parts, run.request(directors), path,
                                           run.runtime(len(clips) * run.settings.steps))
        info = "\n".join([f"{len(clips)} clips ({', '.join(clips)}), {len(frames)} frames", *notes])
        frames = frames.to(host.intermediate_device())
        return io.NodeOutput(*with_video((frames, float(FPS), path, info), frames, FPS))


NODES = [LoadVideoModel, DirectorSampler, SwitchOnceSampler, ArticulatedVideo]
