"""One image to a 4D scene without ComfyUI: the graph of workflows/image_to_4d.json, stage by stage, with its defaults.

1. temporal video: the T-Director animates the image under a still camera; its first N frames are the N times;
2. reference frame: the one whose optical flow covers the most motion; 3. reference video: the S-Director moves the
camera from it; 4. the identity guide from the reference video's latents; 5. the multi-view grid: one guided
S-Director video per time (N videos, K cameras kept); 6. appearance refinement of each camera's video with the
T-Director; 7. the 4D fit along the S-Director's camera path; 8. the scene folder.

Every video is filed under its content key in `cache` as it is made, so a run that was killed starts again where
it stopped; with `workers` the videos run on them (distributed.executor), the same frames either way.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..camera import planner
from ..directors import schedule
from ..directors.adapters import Director, attach
from ..identity.latents import build_guide, encode_video
from ..identity.multiview import VideoCache, evenly_spaced_views, generate_multiview, per_camera, per_frame_requests
from ..identity.reference import select_reference_frame
from ..identity.refine import refine_videos
from ..recon.files4d import save_scene_4d
from ..recon.train4d import Reconstruct4DOptions, kept_cameras, reconstruct_4d
from ..video.components import VideoComponents
from ..video.request import SamplerSettings, VideoRequest, content_key
from ..video.runtime import Runtime
from ..video.sampling import generate
from ..video.workers import Task, Workers


@dataclass(frozen=True)
class ImageTo4DOptions:
    """The widgets of workflows/image_to_4d.json at their real-model values (its Markdown note): 50 steps, guidance 6
    with dynamic CFG, seed 7 for the videos; the identity guide 0.9 / lambda 0.5 over steps 0-10, seed 0; refinement
    0.5, twice; an orbit_left path of 30 degrees (radius 2, 60 degree field of view); the fast 4D preset."""
    times: int
    views: int
    steps: int = 50
    guidance: float = 6.0
    seed: int = 7
    pattern: str = "orbit_left"
    magnitude: float = 30.0
    flow_threshold: float = 1.0
    start_strength: float = 0.9
    blend_weight: float = 0.5
    blend_first: int = 0
    blend_last: int = 10
    guide_seed: int = 0
    refine_strength: float = 0.5
    refine_repeat: bool = True
    refine_seed: int = 0
    preset: str = "fast"
    poses: str = "auto"
    fit_steps: int | None = None
    initial_points: int | None = None
    fit_seed: int = 0
    scene_format: str = "ply"


def _video(parts: VideoComponents, request: VideoRequest, runtime: Runtime, cache: VideoCache,
           workers: Workers | None, label: str) -> torch.Tensor:
    """One video, from the cache if it was made before; else made here or by a worker, and filed."""
    key = request.key(parts.identity)
    if cache.load(key) is None:
        if workers is None:
            cache.save(key, generate(parts, request, runtime).frames)
        else:
            workers.run(parts, [Task(key, "video", request, request.settings.steps, label)], runtime,
                        lambda task, frames, where: cache.save(key, frames, made_by=where))
    return cache.load(key)  # read back: a resumed run goes on from exactly the frames a whole run would use


def image_to_4d(parts: VideoComponents, image: torch.Tensor, prompt: str, s_director: Director, t_director: Director,
                options: ImageTo4DOptions, out: str | Path, cache: str | Path, runtime: Runtime, *,
                device: str = "cpu", workers: Workers | None = None,
                say: Callable[[str], None] = lambda text: None) -> Path:
    """image (H, W, 3) in 0..1 -> the 4D scene folder `out`; returns its manifest. `runtime` runs what runs here
    (its hooks: Cancel and a progress line per stage); `device` is where the 4D fit runs."""
    spec, steps = parts.spec, options.steps
    cache = VideoCache(cache)
    refs = attach(parts.transformer, [s_director, t_director], spec.describe())
    s_ref, t_ref = refs
    settings = SamplerSettings(steps=steps, guidance=options.guidance, seed=options.seed)
    if not 2 <= options.times <= spec.frames:
        raise ValueError(f"--times must be between 2 and the model's {spec.frames} frames, got {options.times}")

    say("1/8 temporal video (T-Director)")
    temporal = _video(parts, VideoRequest(image, prompt, settings=settings, directors=(t_ref,),
                                          schedule=schedule.constant([t_ref.name], steps)),
                      runtime, cache, workers, "temporal video")[:options.times]
    say("2/8 reference frame")
    choice = select_reference_frame(temporal, None, options.flow_threshold, hooks=runtime.hooks)
    say(f"   frame {choice.index} of the {options.times} times")
    camera = VideoRequest(None, prompt, settings=settings, directors=(s_ref,),
                          schedule=schedule.constant([s_ref.name], steps))
    say("3/8 reference video (S-Director)")
    reference = _video(parts, dataclasses.replace(camera, image=temporal[choice.index].clone()), runtime, cache,
                       workers, "reference video")
    say("4/8 identity guide")
    guide = build_guide(encode_video(parts, reference, runtime.place), options.start_strength, options.blend_weight,
                        options.blend_first, options.blend_last, options.guide_seed)
    say(f"5/8 multi-view grid: {options.times} videos")
    kept = evenly_spaced_views(options.views, spec.frames)
    requests = per_frame_requests(temporal, dataclasses.replace(camera, start=guide.start, blend=guide.blend))
    generate_multiview(parts, requests, runtime, cache=cache, workers=workers)
    grid = torch.stack([cache.load(request.key(parts.identity)) for request in requests])
    videos = per_camera(grid if kept is None else grid[:, kept])
    say(f"6/8 appearance refinement of {len(videos)} camera videos")
    motion = VideoRequest(None, prompt, settings=dataclasses.replace(settings, seed=options.refine_seed),
                          directors=(t_ref,), schedule=schedule.constant([t_ref.name], steps))
    refined_key = content_key(parts.identity, "refined", videos, motion, options.refine_strength,
                              options.refine_repeat)
    if cache.load(refined_key) is None:  # filed, then read back: a resumed run fits exactly the same frames
        cache.save(refined_key, refine_videos(parts, videos, motion, options.refine_strength, options.refine_repeat,
                                              runtime, workers=workers))
    refined = cache.load(refined_key)
    say("7/8 4D fit")
    path = planner.plan(options.pattern, spec.frames, options.magnitude, width=spec.width, height=spec.height)
    fit = Reconstruct4DOptions(preset=options.preset, steps=options.fit_steps, reference_time=choice.index,
                               seed=options.fit_seed, poses=options.poses, initial_points=options.initial_points,
                               device=device)
    flat = refined.reshape(-1, *refined.shape[2:])
    result = reconstruct_4d(flat, len(videos), options.times, kept_cameras(path, len(videos)), fit,
                            hooks=runtime.hooks)
    say("8/8 scene")
    return save_scene_4d(out, result.gaussians, scene_format=options.scene_format)
