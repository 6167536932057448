"""The sampler input fragment every DimensionX sampler node shares, and its unpacking into the library's values.

A sampler node lists `inputs()` (and `speed_input()`) in its schema and takes them as `**sampling` in `execute`;
`unpack(sampling)` turns them into one `Sampling` value, which makes the run's VideoRequest (what to make) and
Runtime (how this ComfyUI process makes it). Widget names, order and defaults are part of every saved workflow
(the example workflows, the browser tests, users' files): change them only with a migration.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
from comfy_api.latest import io

from ..dimx_core.directors.adapters import DirectorRef, attach
from ..dimx_core.directors.schedule import DirectorSchedule
from ..dimx_core.speed.options import SpeedOptions
from ..dimx_core.video.conditioning import fit_prompt_states
from ..dimx_core.video.request import SamplerSettings, VideoRequest
from ..dimx_core.video.runtime import Runtime
from ..dimx_core.video.solvers import AUTO, SOLVERS
from . import host
from .types import SpeedType, VideoModelType

log = logging.getLogger("dimensionx")


def inputs(first_frame: bool = True) -> list:
    """The shared inputs, in the order the node shows them; `first_frame=False` for nodes whose videos start from
    frames of another input."""
    image = [io.Image.Input("image", tooltip="The first frame. Another size is center-cropped to the model's aspect "
                                             "ratio and resized (never stretched); a batch uses its first image.")]
    end_image = [io.Image.Input("end_image", optional=True,
                                tooltip="Optional last frame, the size of `image`: the video joins the two (two views "
                                        "of one scene). Needs a start/end-frame model such as CogVideoX-Fun InP; "
                                        "CogVideoX-5b-I2V refuses it.")]
    return [
        VideoModelType.Input("model", tooltip="From Load Video Model (DimensionX)."),
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
                         tooltip="Vary guidance over the run as the model's release did (dynamic CFG, by timestep "
                                 "value: diffusers' and SAT's schedule)."),
        io.Combo.Input("scheduler", options=[AUTO, *SOLVERS], default=AUTO,
                       tooltip=f"{AUTO}: what the model was released with (Load Video Model's info says which: "
                               "CogVideoX-5b-I2V ddim, DimensionX's 360-degree model sat_dpmpp2m). "
                               + "; ".join(f"{kind}: {solver.description}" for kind, solver in SOLVERS.items())),
        io.Int.Input("seed", default=0, min=0, max=2**63 - 1, control_after_generate=True,
                     tooltip="Seed of the starting noise; the same seed gives the same video."),
        io.Conditioning.Input("positive", optional=True,
                              tooltip="T5-XXL conditioning from a CLIP loader; replaces the prompt text if given."),
        io.Conditioning.Input("negative", optional=True,
                              tooltip="T5-XXL conditioning; replaces the negative prompt text if given."),
        *(end_image if first_frame else []),
    ]


def speed_input():
    return SpeedType.Input("speed", optional=True,
                           tooltip="From Speed Options (DimensionX): attention kernel, compile, fp8, 24 GB mode, step "
                                   "caching. Without it every lossless speed-up is on and nothing lossy.")


@dataclass(frozen=True)
class Sampling:
    """The fragment's values as the library takes them."""
    model: "host.ManagedVideoModel"
    image: torch.Tensor | None            # the first frame (H, W, 3); None for nodes without the image input
    end_image: torch.Tensor | None        # the last frame (H, W, 3) for a start/end-frame model; None: not given
    prompt: str | torch.Tensor            # text, or T5 states fitted to the model
    negative_prompt: str | torch.Tensor
    settings: SamplerSettings
    speed: SpeedOptions

    def request(self, directors=(), schedule: DirectorSchedule | None = None, **fields) -> VideoRequest:
        """The run's request; the directors are attached to the model first (a run switches resident adapters)."""
        return VideoRequest(self.image, self.prompt, self.negative_prompt, self.settings,
                            attached(self.model, directors), schedule, lossy=self.speed.lossy(),
                            end_image=self.end_image, **fields)

    def runtime(self, total_steps: int) -> Runtime:
        return runtime(self.model, self.speed, total_steps)


def attached(model: "host.ManagedVideoModel", directors) -> tuple[DirectorRef, ...]:
    """Make the connected directors resident in the model's transformer; their references for a request."""
    parts = model.parts
    return attach(parts.transformer, list(directors or ()), parts.spec.describe())


def runtime(model: "host.ManagedVideoModel", speed: SpeedOptions, total_steps: int) -> Runtime:
    """How this ComfyUI process runs: its memory manager places the modules, the node's progress bar counts
    `total_steps`, Cancel stops between steps."""
    return Runtime(place=model.place, offload=model.offload, hooks=host.hooks(total_steps), speed=speed)


def unpack(values: dict) -> Sampling:
    """A sampler node's `**sampling` keyword arguments -> Sampling; a name outside the fragment is a bug in the node."""
    fragment = inputs() + [speed_input()]
    required = {item.id for item in fragment if not item.optional} - {"image"}  # absent where frames start videos
    unknown, missing = sorted(set(values) - {item.id for item in fragment}), sorted(required - set(values))
    if unknown or missing:
        raise TypeError(f"sampler inputs: unexpected {unknown}, missing {missing}")
    model, image, end_image = values["model"], values.get("image"), values.get("end_image")
    if image is not None and image.shape[0] > 1:
        log.warning("DimensionX: %d images given; the video starts from the first", image.shape[0])
    if end_image is not None and end_image.shape[0] > 1:
        log.warning("DimensionX: %d end images given; the video ends on the first", end_image.shape[0])
    # text, or T5 states from a ComfyUI CLIP loader fitted to the model, for each side of guidance
    width, tokens = model.parts.transformer.config.text_embed_dim, model.parts.spec.text_tokens
    positive, negative = values.get("positive"), values.get("negative")
    prompt = (fit_prompt_states(positive[0][0], tokens, width, "positive") if positive
              else model.prompt_states(values["prompt"], "prompt"))
    negative_prompt = (fit_prompt_states(negative[0][0], tokens, width, "negative") if negative
                       else model.prompt_states(values["negative_prompt"], "negative_prompt"))
    settings = SamplerSettings(steps=values["steps"], guidance=values["guidance"],
                               dynamic_cfg=values["use_dynamic_cfg"], scheduler=values["scheduler"],
                               seed=values["seed"])
    return Sampling(model, None if image is None else image[0], None if end_image is None else end_image[0], prompt,
                    negative_prompt, settings, values.get("speed") or SpeedOptions())
