"""Long camera paths as chained director videos (LiftImage3D's articulated trajectories).

A director keeps quality over a small camera motion only, so a 120-degree orbit is generated as several
clips: the first starts from the input image, each later one from the previous clip's last frame, each with
the S-Director of its clip's motion. The frames line up with the path planned by
dimx_core.camera.articulated (shared joint frames counted once, a loop's closing frame dropped).
"""
from __future__ import annotations

import dataclasses

import torch

from ..camera import Trajectory
from ..directors import schedule
from ..directors.adapters import Director, DirectorControl, attach
from ..hooks import NO_HOOKS, Hooks
from ..speed.options import SpeedOptions
from .components import VideoComponents
from .sampling import Offload, Place, SamplerSettings, generate


def clip_plan(path: Trajectory) -> tuple[list[str], int]:
    """The director pattern of every clip and the frames per clip, as the articulated planner recorded them."""
    patterns, frames = path.meta.get("clip_patterns"), path.meta.get("clip_frames")
    if not patterns or not frames:
        raise ValueError("this trajectory is not an articulated path: plan it with the Articulated Path Planner "
                         "(dimx articulate), whose path records its clips")
    return list(patterns), int(frames)


def _offset(hooks: Hooks, done: int, total: int) -> Hooks:
    return Hooks(progress=lambda step, steps, preview: hooks.progress(done + step, total, preview),
                 should_stop=hooks.should_stop)


def generate_chain(parts: VideoComponents, image: torch.Tensor, prompt, negative_prompt, settings: SamplerSettings,
                   path: Trajectory, directors: list[Director], *, place: Place, hooks: Hooks = NO_HOOKS,
                   speed: SpeedOptions = SpeedOptions(), offload: Offload | None = None
                   ) -> tuple[torch.Tensor, list[str]]:
    """All clips' frames, (len(path), H, W, 3), and notes. Clip k uses seed + k."""
    patterns, clip_frames = clip_plan(path)
    if clip_frames != parts.spec.frames:
        raise ValueError(f"the path's clips have {clip_frames} frames but this model makes {parts.spec.frames}: "
                         f"plan the path with frames_per_clip={parts.spec.frames}")
    by_name = {d.name: d for d in directors}
    missing = sorted(set(patterns) - set(by_name))
    if missing:
        raise ValueError(f"the path needs directors named {missing} (one per clip motion); connected: "
                         f"{sorted(by_name) or 'none'}. Name each Load Director LoRA after its motion.")
    attach(parts.transformer, [by_name[p] for p in set(patterns)], parts.spec.describe())
    total, frames, notes = len(patterns) * settings.steps, [], []
    for index, pattern in enumerate(patterns):
        control = DirectorControl(parts.transformer, [by_name[pattern]],
                                  schedule.constant([pattern], settings.steps))
        clip_settings = dataclasses.replace(settings, seed=settings.seed + index)
        result = generate(parts, image, prompt, negative_prompt, clip_settings, directors=control, place=place,
                          hooks=_offset(hooks, index * settings.steps, total), speed=speed, offload=offload)
        notes += [f"clip {index + 1}: {note}" for note in result.notes]
        frames.append(result.frames if index == 0 else result.frames[1:])  # a clip's first frame is the last one
        image = result.frames[-1]
    video = torch.cat(frames)
    if len(video) == len(path) + 1:  # a closed loop: the last frame returns to the first pose
        video = video[:-1]
    if len(video) != len(path):
        raise ValueError(f"{len(video)} frames were made for a path of {len(path)} poses")
    return video, notes
