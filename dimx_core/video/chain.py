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
from .components import VideoComponents
from .conditioning import check_end_image, fit_image
from .request import VideoRequest
from .runtime import Runtime
from .sampling import generate


def clip_plan(path: Trajectory) -> tuple[list[str], int]:
    """The director pattern of every clip and the frames per clip, as the articulated planner recorded them."""
    patterns, frames = path.meta.get("clip_patterns"), path.meta.get("clip_frames")
    if not patterns or not frames:
        raise ValueError("this trajectory is not an articulated path: plan it with the Articulated Path Planner "
                         "(dimx articulate), whose path records its clips")
    return list(patterns), int(frames)


def generate_chain(parts: VideoComponents, request: VideoRequest, path: Trajectory, runtime: Runtime
                   ) -> tuple[torch.Tensor, list[str]]:
    """All clips' frames, (len(path), H, W, 3), and notes. `request` is the first clip's (its image, prompts,
    settings) with the directors the path needs, attached, among its directors; its schedule is not used: clip k
    runs the director named after its motion, with seed + k. Its end image, if any, ends the last clip (a path
    between two views)."""
    patterns, clip_frames = clip_plan(path)
    if clip_frames != parts.spec.frames:
        raise ValueError(f"the path's clips have {clip_frames} frames but this model makes {parts.spec.frames}: "
                         f"plan the path with frames_per_clip={parts.spec.frames}")
    by_name = {d.name: d for d in request.directors}
    missing = sorted(set(patterns) - set(by_name))
    if missing:
        raise ValueError(f"the path needs directors named {missing} (one per clip motion); connected: "
                         f"{sorted(by_name) or 'none'}. Name each Load Director LoRA after its motion.")
    image, end_image, notes = request.image, request.end_image, []
    if end_image is not None:  # refused before the first clip, not after all but the last
        check_end_image(parts.spec, image, end_image)
        # both at the model's size, as every later clip's first frame is, so the last clip's two frames match
        (image, note), (end_image, _) = (fit_image(frame, parts.spec.width, parts.spec.height)
                                         for frame in (image, end_image))
        notes += [note] if note else []
    steps = request.settings.steps
    total, frames = len(patterns) * steps, []
    for index, pattern in enumerate(patterns):
        clip = dataclasses.replace(request, image=image, directors=(by_name[pattern],),
                                   end_image=end_image if index == len(patterns) - 1 else None,
                                   schedule=schedule.constant([pattern], steps),
                                   settings=dataclasses.replace(request.settings, seed=request.settings.seed + index))
        result = generate(parts, clip, runtime.with_hooks(runtime.hooks.offset(index * steps, total)))
        notes += [f"clip {index + 1}: {note}" for note in result.notes]
        frames.append(result.frames if index == 0 else result.frames[1:])  # a clip's first frame is the last one
        image = result.frames[-1]
    video = torch.cat(frames)
    if len(video) == len(path) + 1:  # a closed loop: the last frame returns to the first pose
        video = video[:-1]
    if len(video) != len(path):
        raise ValueError(f"{len(video)} frames were made for a path of {len(path)} poses")
    return video, notes
