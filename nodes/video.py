import logging

import torch
from comfy_api.latest import io

from ..dimx_core.directors import schedule as schedules
from ..dimx_core.directors.adapters import DirectorControl, attach
from ..dimx_core.speed.options import SpeedOptions
from ..dimx_core.video.chain import clip_plan, generate_chain
from ..dimx_core.video.components import load_diffusers_folder
from ..dimx_core.video.conditioning import fit_prompt_states
from ..dimx_core.video.sampling import FPS, SCHEDULERS, SamplerSettings, generate
from ..dimx_core.video.single_file import load_single_files
from . import host
from .types import Directors, Speed, Trajectory, VideoModel

log = logging.getLogger("dimensionx")
SINGLE_FILES = "(single files below)"
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
                io.Combo.Input("model", options=host.list_model_folders() + [SINGLE_FILES],
                               tooltip="A diffusers folder (with model_index.json) from models/dimensionx or "
                                       f"models/diffusers, or '{SINGLE_FILES}' to use the three files below."),
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
            ],
            outputs=[VideoModel.Output(display_name="model"),
                     io.String.Output(display_name="info", tooltip="What was loaded: version, size, frames.")],
        )

    @classmethod
    def execute(cls, model, precision, transformer_file=NONE, vae_file=NONE, text_encoder_file=NONE) -> io.NodeOutput:
        dtype = PRECISIONS[precision]
        if model != SINGLE_FILES:
            parts = load_diffusers_folder(host.resolve_model_folder(model), dtype)
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
        info = f"{parts.spec.describe()}, {precision}, from {parts.source}"
        return io.NodeOutput(host.ManagedVideoModel.wrap(parts), info)


def _sampling_inputs(first_frame: bool = True) -> list:
    """Inputs every DimensionX sampler shares, in the order the node shows them."""
    image = [io.Image.Input("image", tooltip="The first frame. Another size is center-cropped to the model's aspect "
                                             "ratio and resized (never stretched); a batch uses its first image.")]
    return [
        VideoModel.Input("model", tooltip="From Load Video Model (DimensionX)."),
        *(image if first_frame else []),
        io.String.Input("prompt", multiline=True, default="",
                        tooltip="What the video shows. Describe the scene in detail (a captioning model helps); "
                                "longer than 226 tokens is cut with a warning."),
        io.String.Input("negative_prompt", multiline=True, default="",
                        tooltip="What to steer away from; empty is what DimensionX used."),
        io.Int.Input("steps", default=50, min=1, max=1000, tooltip="Denoising steps; 50 as released."),
        io.Float.Input("guidance", default=6.0, min=0.0, max=30.0, step=0.1,
                       tooltip="Classifier-free guidance; 6 as released. 1 or less turns guidance off (2x faster)."),
        io.Boolean.Input("use_dynamic_cfg", default=True,
                         tooltip="Vary guidance over the run as DimensionX did (diffusers' dynamic CFG)."),
        io.Combo.Input("scheduler", options=list(SCHEDULERS), default="ddim",
                       tooltip="ddim: CogVideoX DDIM (the model's default). dpm: CogVideoX DPM, sharper, stochastic."),
        io.Int.Input("seed", default=0, min=0, max=2**63 - 1, control_after_generate=True,
                     tooltip="Seed of the starting noise; the same seed gives the same video."),
        io.Conditioning.Input("positive", optional=True,
                              tooltip="T5-XXL conditioning from a CLIP loader; replaces the prompt text if given."),
        io.Conditioning.Input("negative", optional=True,
                              tooltip="T5-XXL conditioning; replaces the negative prompt text if given."),
    ]


def _speed_input():
    return Speed.Input("speed", optional=True,
                       tooltip="From Speed Options (DimensionX): attention kernel, compile, fp8, 24 GB mode, step "
                               "caching. Without it every lossless speed-up is on and nothing lossy.")


_OUTPUTS = [io.Image.Output(display_name="frames", tooltip="The video as an image batch."),
            io.Latent.Output(display_name="latent", tooltip="The final video latents (B, C, T, H, W)."),
            io.Float.Output(display_name="fps", tooltip="Frame rate for Create Video / Save Video (8 for CogVideoX)."),
            io.String.Output(display_name="info", tooltip="What the run did: model, directors per step, notes.")]


def _prompts(parts, prompt: str, negative_prompt: str, positive, negative) -> tuple:
    """Text, or T5 states from a ComfyUI CLIP loader fitted to the model, for each side of guidance."""
    width, tokens = parts.transformer.config.text_embed_dim, parts.spec.text_tokens
    return (fit_prompt_states(positive[0][0], tokens, width, "positive") if positive else prompt,
            fit_prompt_states(negative[0][0], tokens, width, "negative") if negative else negative_prompt)


def _run(model: "host.ManagedVideoModel", image, prompt, negative_prompt, steps, guidance, use_dynamic_cfg,
         scheduler, seed, positive, negative, directors, plan: schedules.DirectorSchedule,
         speed: SpeedOptions | None) -> io.NodeOutput:
    parts = model.parts
    if image.shape[0] > 1:
        log.warning("DimensionX: %d images given; the video starts from the first", image.shape[0])
    prompt_in, negative_in = _prompts(parts, prompt, negative_prompt, positive, negative)
    settings = SamplerSettings(steps=steps, guidance=guidance, dynamic_cfg=use_dynamic_cfg, scheduler=scheduler,
                               seed=seed)
    control = None
    if plan.segments:
        attach(parts.transformer, list(directors), parts.spec.describe())
        control = DirectorControl(parts.transformer, list(directors), plan)
    with host.comfy_interrupts():
        result = generate(parts, image[0], prompt_in, negative_in, settings, directors=control, place=model.place,
                          hooks=host.hooks(steps), speed=speed or SpeedOptions(), offload=model.offload)
    for note in result.notes:
        log.info("DimensionX: %s", note)
    info = "\n".join([parts.spec.describe(), f"directors: {plan.describe()}", *result.notes])
    latent = {"samples": result.latents.permute(0, 2, 1, 3, 4).to(host.intermediate_device())}
    return io.NodeOutput(result.frames.to(host.intermediate_device()), latent, float(result.fps), info)


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
            inputs=_sampling_inputs() + [
                _speed_input(),
                Directors.Input("directors", optional=True,
                                tooltip="Director LoRAs from Load Director LoRA. Without a schedule all of them "
                                        "are active for every step."),
                io.String.Input("schedule", multiline=True, default="", optional=True,
                                tooltip="Optional per-step schedule, one range per line, end exclusive, in steps "
                                        "or percent: '0-3: orbit_left' then '3-50: motion@0.8'. Steps no line "
                                        "covers run without directors."),
            ],
            outputs=_OUTPUTS,
        )

    @classmethod
    def execute(cls, model, image, prompt, negative_prompt, steps, guidance, use_dynamic_cfg, scheduler, seed,
                positive=None, negative=None, speed=None, directors=None, schedule="") -> io.NodeOutput:
        directors = tuple(directors or ())
        names = [d.name for d in directors]
        plan = (schedules.parse(schedule, steps, set(names)) if schedule and schedule.strip()
                else schedules.constant(names, steps))
        return _run(model, image, prompt, negative_prompt, steps, guidance, use_dynamic_cfg, scheduler, seed,
                    positive, negative, directors, plan, speed)


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
            inputs=_sampling_inputs() + [
                _speed_input(),
                Directors.Input("directors", tooltip="A chain holding the S-Director and the T-Director."),
                io.Int.Input("switch_step", default=3, min=0, max=1000,
                             tooltip="Steps steered by the S-Director before switching; the paper uses 3 of 50. "
                                     "More keeps the camera motion stronger, fewer gives motion more room."),
                io.String.Input("spatial_director", default="", optional=True,
                                tooltip="Name of the S-Director to use; empty: the only one with role S."),
                io.String.Input("temporal_director", default="", optional=True,
                                tooltip="Name of the T-Director to use; empty: the only one with role T."),
            ],
            outputs=_OUTPUTS,
        )

    @classmethod
    def execute(cls, model, image, prompt, negative_prompt, steps, guidance, use_dynamic_cfg, scheduler, seed,
                directors, switch_step, positive=None, negative=None, speed=None, spatial_director="",
                temporal_director="") -> io.NodeOutput:
        spatial = _pick(directors, "S", spatial_director.strip(), "spatial_director")
        temporal = _pick(directors, "T", temporal_director.strip(), "temporal_director")
        plan = schedules.switch_once(spatial.name, temporal.name, switch_step, steps)
        return _run(model, image, prompt, negative_prompt, steps, guidance, use_dynamic_cfg, scheduler, seed,
                    positive, negative, directors, plan, speed)


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
            inputs=_sampling_inputs() + [
                Trajectory.Input("path", tooltip="The 'path' output of the Articulated Path Planner; its clip count "
                                                 "and clip length (= the model's frames, 49) come from it."),
                Directors.Input("directors", tooltip="S-Directors named after the motions the path uses (e.g. a "
                                                     "Load Director LoRA named 'orbit_left')."),
                _speed_input(),
            ],
            outputs=[io.Image.Output(display_name="frames", tooltip="All clips, one frame per pose of the path."),
                     io.Float.Output(display_name="fps", tooltip="Frame rate for Create Video (8)."),
                     Trajectory.Output(display_name="path", tooltip="The same path, to pair with the frames."),
                     io.String.Output(display_name="info", tooltip="Clips, directors and notes.")],
        )

    @classmethod
    def execute(cls, model, image, prompt, negative_prompt, steps, guidance, use_dynamic_cfg, scheduler, seed, path,
                directors, positive=None, negative=None, speed=None) -> io.NodeOutput:
        parts = model.parts
        prompt_in, negative_in = _prompts(parts, prompt, negative_prompt, positive, negative)
        settings = SamplerSettings(steps=steps, guidance=guidance, dynamic_cfg=use_dynamic_cfg, scheduler=scheduler,
                                   seed=seed)
        clips, _ = clip_plan(path)
        with host.comfy_interrupts():
            frames, notes = generate_chain(parts, image[0], prompt_in, negative_in, settings, path, list(directors),
                                           place=model.place, hooks=host.hooks(len(clips) * steps),
                                           speed=speed or SpeedOptions(), offload=model.offload)
        info = "\n".join([f"{len(clips)} clips ({', '.join(clips)}), {len(frames)} frames", *notes])
        return io.NodeOutput(frames.to(host.intermediate_device()), float(FPS), path, info)


NODES = [LoadVideoModel, DirectorSampler, SwitchOnceSampler, ArticulatedVideo]
