"""The identity-preserving 4D stages of DimensionX (the paper's section on 4D scene generation)."""
import torch
from comfy_api.latest import io, ui

from ..dimx_core.directors import schedule as schedules
from ..dimx_core.identity.latents import build_guide, encode_video
from ..dimx_core.identity.multiview import (VideoCache, evenly_spaced_views, generate_multiview, per_camera,
                                            per_frame_requests)
from ..dimx_core.identity.reference import select_reference_frame
from ..dimx_core.identity.refine import refine_videos
from ..dimx_core.speed.options import SpeedOptions
from ..dimx_core.video.request import SamplerSettings, VideoRequest
from . import host, sampling_inputs
from .types import DirectorsType, IdentityGuideType, VideoModelType, WorkersType

CATEGORY = "DimensionX/4D"


def workers_input():
    return WorkersType.Input("workers", optional=True,
                             tooltip="From Workers (DimensionX): the videos run on Ray workers (one per GPU, or a "
                                     "cluster) instead of in ComfyUI's process; the same frames either way.")


class SelectReferenceFrame(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXSelectReferenceFrame", display_name="Select Reference Frame (DimensionX)",
            category=CATEGORY,
            description="Picks the frame of a T-Director video that best covers the moving parts: the largest sum "
                        "of optical-flow magnitude (classical DIS flow) over the dynamic region. That frame gets "
                        "the reference spatial video that keeps every per-frame video consistent.",
            inputs=[
                io.Image.Input("frames", tooltip="The temporal video (T-Director output), at least 2 frames."),
                io.Float.Input("flow_threshold", default=1.0, min=0.0, max=100.0, step=0.1,
                               tooltip="Pixels moving more than this (in pixels per frame) form the dynamic region "
                                       "when no mask is given. Raise it if camera shake or noise counts as motion."),
                io.Mask.Input("mask", optional=True,
                              tooltip="The dynamic object's mask from any segmentation node (one mask, or one per "
                                      "frame); replaces the flow threshold."),
            ],
            outputs=[io.Int.Output(display_name="index", tooltip="Index of the chosen frame."),
                     io.Image.Output(display_name="frame", tooltip="The chosen frame."),
                     io.Mask.Output(display_name="mask", tooltip="The dynamic region of the chosen frame."),
                     io.String.Output(display_name="scores", tooltip="Every frame's score.")],
        )

    @classmethod
    def execute(cls, frames, flow_threshold, mask=None) -> io.NodeOutput:
        with host.comfy_interrupts():
            choice = select_reference_frame(frames, mask, flow_threshold, hooks=host.hooks(len(frames) - 1))
        chosen_mask = torch.from_numpy(choice.masks[choice.index].astype("float32"))[None]
        text = choice.describe()
        return io.NodeOutput(choice.index, frames[choice.index:choice.index + 1], chosen_mask, text,
                             ui=ui.PreviewText(text))


class ReferenceLatentShare(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXReferenceLatentShare", display_name="Reference Latent Share (DimensionX)",
            category=CATEGORY,
            description="Builds DimensionX's identity guide from the reference spatial video v_ref: every per-frame "
                        "video starts from the same noisy latents z_ref = sqrt(a_t) E(v_ref) + sqrt(1-a_t) eps and, "
                        "during its first steps, is blended toward z_ref,t (z_t <- lambda z_t + (1-lambda) z_ref,t). "
                        "The noise comes from the scheduler itself, exact for CogVideoX's v-prediction.",
            inputs=[
                VideoModelType.Input("model", tooltip="The video model (its VAE encodes v_ref)."),
                io.Image.Input("reference_video", tooltip="v_ref: the S-Director video of the reference frame, at "
                                                          "the model's size and frame count."),
                io.Float.Input("start_strength", default=0.9, min=0.0, max=1.0, step=0.01,
                               tooltip="Noise level every per-frame video starts from (1 = pure noise, the "
                                       "reference is then only used by the blend). Lower keeps more of v_ref's "
                                       "layout; 0.8-0.95 is typical."),
                io.Float.Input("blend_weight", default=0.5, min=0.0, max=1.0, step=0.05,
                               tooltip="lambda: 1 keeps each video's own latents, 0 replaces them by the "
                                       "reference. The paper leaves it adjustable; 0.3-0.7 is typical."),
                io.Int.Input("blend_first_step", default=0, min=0, max=1000,
                             tooltip="First step (of the full schedule) that blends."),
                io.Int.Input("blend_last_step", default=10, min=0, max=1000,
                             tooltip="Blending stops before this step: the early steps, where layout forms "
                                     "(10 of 50 by default)."),
                io.Int.Input("seed", default=0, min=0, max=2**63 - 1,
                             tooltip="Seed of the shared noise eps (the same for every per-frame video)."),
            ],
            outputs=[IdentityGuideType.Output(display_name="guide", tooltip="For Multi-View Generate.")],
        )

    @classmethod
    def execute(cls, model, reference_video, start_strength, blend_weight, blend_first_step, blend_last_step,
                seed) -> io.NodeOutput:
        latents = encode_video(model.parts, reference_video, model.place)
        return io.NodeOutput(build_guide(latents, start_strength, blend_weight, blend_first_step, blend_last_step,
                                         seed))


class MultiViewGenerate(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXMultiViewGenerate", display_name="Multi-View Generate (DimensionX)",
            category=CATEGORY,
            description="For every frame of the temporal video, generates the S-Director video that starts from it "
                        "(same camera path, same seed, same identity guide), then regroups the N x K frames into "
                        "K per-camera videos of N frames. Finished videos are kept on disk: a cancelled or failed "
                        "run resumes where it stopped.",
            inputs=sampling_inputs.inputs(first_frame=False) + [
                io.Image.Input("temporal_frames", tooltip="The T-Director video (N frames); each starts one video. "
                                                          "Pick a subset with core batch nodes for a quicker run."),
                DirectorsType.Input("directors", tooltip="The S-Director (camera path) chain."),
                IdentityGuideType.Input("guide", optional=True,
                                        tooltip="From Reference Latent Share; without it the videos drift apart."),
                io.Int.Input("views", default=0, min=0, max=1024,
                             tooltip="Cameras kept from each video, evenly spaced (0: every frame, K = the model's "
                                     "frame count)."),
                io.Boolean.Input("resume", default=True,
                                 tooltip="Reuse videos already generated for exactly these inputs."),
                sampling_inputs.speed_input(),
                workers_input(),
            ],
            outputs=[io.Image.Output(display_name="multiview", tooltip="K per-camera videos of N frames, camera "
                                                                       "after camera."),
                     io.Int.Output(display_name="views", tooltip="K, the number of cameras (videos)."),
                     io.Int.Output(display_name="times", tooltip="N, the frames per camera video."),
                     io.String.Output(display_name="info")],
        )

    @classmethod
    def execute(cls, temporal_frames, directors, views, resume, guide=None, workers=None,
                **sampling) -> io.NodeOutput:
        run = sampling_inputs.unpack(sampling)
        model, steps = run.model, run.settings.steps
        names = [d.name for d in directors]
        kept = evenly_spaced_views(views, model.parts.spec.frames)
        total = len(temporal_frames)

        def announce(index, count, cached):
            host.progress_text(f"frame {index + 1} of {count}" + (" (from the cache)" if cached else ""))

        shared = run.request(directors, schedules.constant(names, steps), start=guide.start if guide else None,
                             blend=guide.blend if guide else None)
        with host.comfy_interrupts(), host.workers_lent(workers) as pool:
            grid = generate_multiview(model.parts, per_frame_requests(temporal_frames, shared),
                                      run.runtime(total * steps),
                                      cache=VideoCache(host.cache_folder("multiview")) if resume else None,
                                      views=kept, on_video=announce, workers=pool)
        videos = per_camera(grid)
        cameras, times = videos.shape[:2]
        info = (f"{total} per-frame videos -> {cameras} cameras x {times} frames"
                + (f"; {guide.describe()}" if guide else "; no identity guide"))
        flat = videos.reshape(cameras * times, *videos.shape[2:]).to(host.intermediate_device())
        return io.NodeOutput(flat, cameras, times, info)


class AppearanceRefine(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXAppearanceRefine", display_name="Appearance Refine (DimensionX)",
            category=CATEGORY,
            description="SDEdit with the video prior: each video's latents are noised to t0 and denoised again "
                        "with the T-Director, optionally once more from half that noise (the paper repeats it at a "
                        "middle timestep). Smooths the jitter and misalignment between per-frame videos; also "
                        "useful alone to steady a flickering video.",
            inputs=[
                VideoModelType.Input("model", tooltip="The video model."),
                io.Image.Input("frames", tooltip="One or more videos, one after another (e.g. Multi-View "
                                                 "Generate's output), at the model's size."),
                io.Int.Input("videos", default=1, min=1, max=4096,
                             tooltip="How many videos `frames` holds (connect Multi-View Generate's 'views'). Each "
                                     "may be at most the model's length; shorter ones are padded and cut back."),
                io.String.Input("prompt", multiline=True, default="", tooltip="What the videos show."),
                io.String.Input("negative_prompt", multiline=True, default="", tooltip="What to steer away from."),
                io.Float.Input("strength", default=0.5, min=0.0, max=1.0, step=0.01,
                               tooltip="t0 as a fraction of the schedule: 0 returns the input, 1 ignores it. "
                                       "0.3-0.6 smooths without changing content."),
                io.Boolean.Input("repeat", default=True,
                                 tooltip="Refine a second time from half the strength, as the paper does."),
                io.Int.Input("steps", default=50, min=1, max=1000,
                             tooltip="Steps of the full schedule (only the last `strength` part runs)."),
                io.Float.Input("guidance", default=6.0, min=0.0, max=30.0, step=0.1, tooltip="Guidance scale."),
                io.Int.Input("seed", default=0, min=0, max=2**63 - 1, control_after_generate=True,
                             tooltip="Seed of the added noise."),
                DirectorsType.Input("directors", optional=True,
                                    tooltip="The T-Director (all connected directors are active)."),
                sampling_inputs.speed_input(),
                workers_input(),
            ],
            outputs=[io.Image.Output(display_name="frames", tooltip="The refined videos, in the same order.")],
        )

    @classmethod
    def execute(cls, model, frames, videos, prompt, negative_prompt, strength, repeat, steps, guidance, seed,
                directors=None, speed=None, workers=None) -> io.NodeOutput:
        if len(frames) % videos:
            raise ValueError(f"{len(frames)} frames do not split into {videos} videos of equal length")
        chain, speed = tuple(directors or ()), speed or SpeedOptions()
        settings = SamplerSettings(steps=steps, guidance=guidance, seed=seed)  # the model's own solver and CFG
        shared = VideoRequest(None, model.prompt_states(prompt, "prompt"),
                              model.prompt_states(negative_prompt, "negative_prompt"), settings,
                              sampling_inputs.attached(model, chain),
                              schedules.constant([d.name for d in chain], steps), lossy=speed.lossy())
        batch = frames.reshape(videos, len(frames) // videos, *frames.shape[1:])
        passes = 2 if repeat else 1
        with host.comfy_interrupts(), host.workers_lent(workers) as pool:
            refined = refine_videos(model.parts, batch, shared, strength, repeat,
                                    sampling_inputs.runtime(model, speed, videos * passes * steps), workers=pool)
        return io.NodeOutput(refined.reshape(frames.shape).to(host.intermediate_device()))


NODES = [SelectReferenceFrame, ReferenceLatentShare, MultiViewGenerate, AppearanceRefine]
