"""Articulated long paths (LiftImage3D): a large motion cut into chained clips of small motion.

A video model keeps quality over small camera motions only. A 120-degree orbit or a 360-degree loop is
therefore generated as clips: the first clip starts from the input image, every later clip starts from the
previous clip's last frame. Each clip is planned in its own first camera's frame (identity first pose: what
the director sees), together with that camera's pose in the path's world frame. Because every pattern is a
one-parameter rigid motion (patterns.py), start_k @ clip_k equals the direct path, exactly up to rounding.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..hooks import NO_HOOKS, Hooks
from . import patterns
from .planner import DEFAULT_FRAMES, MAX_FRAMES, finite_number, plan, whole_number
from .trajectory import Trajectory

MAX_CLIPS = 360  # a full loop at one degree per clip; every clip is a video of its own


@dataclass
class ArticulatedPath:
    clips: list[Trajectory]           # each in its own first camera's frame (first pose identity)
    starts: list[np.ndarray]          # (4, 4) world pose of each clip's first camera (= previous clip's last)

    def world_clip(self, index: int) -> Trajectory:
        clip = self.clips[index]
        pivot = None if clip.pivot is None else (self.starts[index] @ np.append(clip.pivot, 1.0))[:3]
        return Trajectory(self.starts[index] @ clip.c2w_opencv, clip.intrinsics, clip.width, clip.height,
                          pattern=clip.pattern, pivot=pivot, director=clip.director, meta=dict(clip.meta))

    def combined(self) -> Trajectory:
        """The whole path in world coordinates; the frame shared by two clips appears once, and a closing
        frame that repeats the very first pose is dropped (a full loop)."""
        world = [self.world_clip(i) for i in range(len(self.clips))]
        poses = np.concatenate([world[0].c2w_opencv] + [w.c2w_opencv[1:] for w in world[1:]])
        intrinsics = np.concatenate([world[0].intrinsics] + [w.intrinsics[1:] for w in world[1:]])
        if len(poses) > 2 and np.allclose(poses[-1], poses[0], atol=1e-9):
            poses, intrinsics = poses[:-1], intrinsics[:-1]
        pivots = [w.pivot for w in world]
        same_pivot = all(p is not None for p in pivots) and all(np.allclose(p, pivots[0]) for p in pivots)
        patterns_used = sorted({c.pattern for c in self.clips})
        return Trajectory(poses, intrinsics, world[0].width, world[0].height,
                          pattern=patterns_used[0] if len(patterns_used) == 1 else "articulated",
                          pivot=pivots[0] if same_pivot else None,
                          director=self.clips[0].director if len(patterns_used) == 1 else None,
                          meta={"clips": len(self.clips), "clip_patterns": [c.pattern for c in self.clips],
                                "clip_frames": len(self.clips[0])})


def chain(segments: list[tuple[str, float]], frames_per_clip: int = DEFAULT_FRAMES, hooks: Hooks = NO_HOOKS,
          **plan_options) -> ArticulatedPath:
    """Clips for `segments` [(pattern, magnitude), ...], each starting where the previous one ended.
    plan_options (radius, elevation, fov_deg, focal_px, width, height) apply to every clip; clips run at
    constant speed, since easing would stop the camera at every joint. `hooks` sees each clip and may cancel."""
    if not segments:
        raise ValueError("an articulated path needs at least one (pattern, magnitude) segment")
    if len(segments) > MAX_CLIPS:
        raise ValueError(f"an articulated path has at most {MAX_CLIPS} clips, got {len(segments)}")
    frames_per_clip = whole_number("frames_per_clip", frames_per_clip, 2, MAX_FRAMES)
    if plan_options.get("easing", "linear") != "linear":
        raise ValueError("articulated clips run at constant speed; easing must be 'linear'")
    plan_options.pop("easing", None)
    clips, starts, start = [], [], np.eye(4)
    for index, (pattern, magnitude) in enumerate(segments):
        if patterns.get(pattern).loop:
            raise ValueError(f"segment {index}: {pattern} is a closed loop; chain {patterns.unrolled(pattern)} clips "
                             "instead")
        clip = plan(pattern, frames_per_clip, magnitude, **plan_options)
        clip.meta.update(clip_index=index, clip_count=len(segments), start_c2w_opencv=start.tolist())
        clips.append(clip)
        starts.append(start)
        start = start @ clip.c2w_opencv[-1]
        hooks.step(index + 1, len(segments))
    return ArticulatedPath(clips, starts)


def split_motion(pattern: str, total: float, max_clip: float, frames_per_clip: int = DEFAULT_FRAMES,
                 hooks: Hooks = NO_HOOKS, **plan_options) -> ArticulatedPath:
    """`total` of `pattern` as the fewest equal clips of at most `max_clip` each (degrees or scene units).
    A loop pattern is split as a full loop of the motion it repeats (orbit_360: orbit_left). At most MAX_CLIPS
    clips: the count is checked before any clip is planned."""
    if patterns.get(pattern).loop:
        pattern, total = patterns.unrolled(pattern), 360.0
    plan(pattern, 2, total, **plan_options)  # the direct path must be valid (a dolly_in short of the pivot...)
    unit = patterns.get(pattern).unit
    max_clip = finite_number("max_clip", max_clip, 0.0, what=f" ({unit} per clip)")
    count = max(1, math.ceil(total / max_clip - 1e-9))
    if count > MAX_CLIPS:
        raise ValueError(f"total {total:g} / max_clip {max_clip:g} makes {count} clips, but at most {MAX_CLIPS} are "
                         f"planned (each clip is a video of its own): raise max_clip to at least "
                         f"{total / MAX_CLIPS:.4g} {unit}")
    return chain([(pattern, total / count)] * count, frames_per_clip, hooks, **plan_options)
