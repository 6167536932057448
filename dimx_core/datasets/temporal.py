"""Temporal-variant clips (paper: flow guidance): the user's videos cut into model-length clips, keeping those
whose camera stands still, so a T-Director learns motion under a frozen camera.

The test is optical flow (OpenCV DIS, as the rest of the pack uses), measured on textured pixels only (flow
is meaningless on flat colour: a moving camera over a clear sky shows no flow there). A still camera leaves most
of the textured background with near-zero flow, whatever moves in front of it; a moving camera moves nearly
every textured pixel. Per frame pair: the share of textured pixels below `still_px` and their median flow; per
clip, the values that hold in 90% of the pairs, so a camera that moves for part of the clip is caught too.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from ..hooks import NO_HOOKS, Hooks
from ..optional import require
from ..video.conditioning import fit_image
from .captions import caption, parse_templates
from .clips import VIDEO_SUFFIXES, iter_frames, video_fps
from .layout import ClipGeometry, DatasetSummary, DatasetWriter
from .settings import TEMPORAL_TEMPLATE, StillCameraTest, TemporalSettings

TEXTURE_GRADIENT = 3.0   # Sobel magnitude (grey levels 0..255) above which a pixel has texture flow can follow
PAIR_QUANTILE = 0.1      # clip values are those 90% of the frame pairs reach


@dataclass(frozen=True)
class FlowVerdict:
    static_share: float      # share of textured pixels that stay still (in 90% of the frame pairs)
    background_flow: float   # median flow of the textured pixels, pixels per frame (in 90% of the pairs)
    texture_share: float     # share of pixels with texture
    static: bool             # the camera stands still
    reason: str | None       # why not, when it does not

    def as_dict(self) -> dict:
        return {key: value for key, value in asdict(self).items() if key != "reason"}


def judge_clip(frames: torch.Tensor, test: StillCameraTest = StillCameraTest()) -> FlowVerdict:
    """The static-camera verdict of one clip, (N, H, W, 3) in 0..1, N >= 2."""
    cv2 = require("cv2", "the static-camera test (optical flow)")
    if frames.ndim != 4 or frames.shape[0] < 2:
        raise ValueError(f"the static-camera test needs a clip of at least 2 frames, got {tuple(frames.shape)}")
    grey = [cv2.cvtColor((f.clamp(0, 1) * 255).round().byte().cpu().numpy(), cv2.COLOR_RGB2GRAY) for f in frames]
    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)
    shares, medians, textures = [], [], []
    for a, b in zip(grey[:-1], grey[1:]):
        gradient = np.hypot(cv2.Sobel(a, cv2.CV_32F, 1, 0), cv2.Sobel(a, cv2.CV_32F, 0, 1)) / 8.0
        textured = gradient > TEXTURE_GRADIENT
        textures.append(textured.mean())
        if not textured.any():
            continue
        flow = np.linalg.norm(dis.calc(a, b, None), axis=-1)[textured]
        shares.append((flow < test.still_px).mean())
        medians.append(np.median(flow))
    texture = float(np.quantile(textures, PAIR_QUANTILE))
    if texture < test.min_texture_share or not shares:
        return FlowVerdict(0.0, 0.0, texture, False,
                           f"too little texture to judge the camera: {texture:.1%} of the pixels "
                           f"(min_texture_share {test.min_texture_share:.0%})")
    share = float(np.quantile(shares, PAIR_QUANTILE))
    background = float(np.quantile(medians, 1.0 - PAIR_QUANTILE))
    if background > test.max_background_flow:
        reason = (f"camera moves: the background flows {background:.2f} px per frame "
                  f"(max_background_flow {test.max_background_flow:g})")
    elif share < test.min_static_share:
        reason = (f"camera moves or the motion fills the view: {share:.0%} of the textured pixels stay still "
                  f"(min_static_share {test.min_static_share:.0%})")
    else:
        reason = None
    return FlowVerdict(share, background, texture, reason is None, reason)


def find_videos(folder: str | Path) -> list[Path]:
    """Video files in `folder` and its subfolders, sorted; hidden files are files still being written."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"videos folder '{folder}' does not exist")
    videos = sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file()
                    and not any(part.startswith(".") for part in p.relative_to(folder).parts))
    if not videos:
        raise ValueError(f"'{folder}' holds no videos ({', '.join(VIDEO_SUFFIXES)})")
    return videos


def source_caption(video: Path) -> str:
    """The text of `<video>.txt` beside the video when there is one, else its name in words."""
    sidecar = video.with_suffix(".txt")
    if sidecar.is_file():
        return " ".join(sidecar.read_text(encoding="utf-8", errors="replace").split())
    return " ".join(video.stem.replace("_", " ").replace("-", " ").split())


def cut_clips(video: Path, geometry: ClipGeometry, stride: int) -> Iterator[tuple[int, torch.Tensor]]:
    """(first source frame, clip) for consecutive non-overlapping clips of every `stride`-th frame, each frame
    center-cropped to the model's aspect ratio and resized to its size."""
    window: list[torch.Tensor] = []
    start, index = 0, -1
    for index, frame in enumerate(iter_frames(video)):
        if index % stride:
            continue
        if not window:
            start = index
        fitted, _ = fit_image(torch.from_numpy(frame).float() / 255.0, geometry.width, geometry.height)
        window.append(fitted)
        if len(window) == geometry.frames:
            yield start, torch.stack(window)
            window = []
    if index < 0:
        raise ValueError(f"video '{video}' holds no frames (empty or truncated file)")


def curate_temporal_dataset(folder: Path, videos: list[Path], geometry: ClipGeometry, settings: TemporalSettings,
                            *, hooks: Hooks = NO_HOOKS) -> DatasetSummary:
    """Fill `folder` (a new, hidden folder the caller renames when this returns) with the clips of `videos` whose
    camera stands still; every clip cut, and every video that gave none, is in the report with its reason."""
    templates = parse_templates(settings.template, (), TEMPORAL_TEMPLATE)
    writer = DatasetWriter(folder, "temporal", geometry, {
        "videos": [str(v) for v in videos], "frame_stride": settings.frame_stride,
        "max_clips_per_video": settings.max_clips_per_video, "template": templates["*"],
        "still_camera_test": {"flow": "OpenCV DIS (medium) on textured pixels", **asdict(settings.test)}})
    notes = []
    for number, video in enumerate(videos, start=1):
        base = {"video": video.name}
        try:
            stride = settings.frame_stride or max(1, round(video_fps(video) / geometry.fps))
            cut = 0
            for start, frames in cut_clips(video, geometry, stride):
                hooks.check()
                meta = {**base, "first_frame": start, "frame_stride": stride}
                verdict = judge_clip(frames, settings.test)
                meta.update(verdict.as_dict())
                if verdict.static:
                    fields = {"video": video.stem, "caption": source_caption(video)}
                    writer.add(frames, caption(templates, "*", fields), meta)
                else:
                    writer.reject(meta, verdict.reason)
                cut += 1
                if cut == settings.max_clips_per_video:
                    break
            if cut == 0:
                writer.reject(base, f"too short: {geometry.frames} frames at a stride of {stride} are more than it "
                                    "holds")
        except ValueError as err:
            writer.reject(base, f"unreadable: {err}")
            notes.append(f"{video.name}: {err}")
        hooks.step(number, len(videos))
    return writer.finish(notes)
