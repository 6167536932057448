"""The dataset folder: what the dataset builders write and the director trainer reads.

    DATASET/
      prompts.txt                  one caption per line, line i describes the clip on line i of videos.txt
      videos.txt                   one clip per line, its path relative to DATASET (videos/00000.mp4)
      videos/00000.mp4             the clips: exactly the model's frame count and size, 8 fps, H.264
      clips/00000.json             per clip: kind, caption, where it came from and what decided it (the pattern,
                                   start pose and path of a spatial clip; the flow measurements of a temporal one)
      clips/00000.transforms.json  spatial clips: the clip's camera poses (nerfstudio transforms.json)
      dataset.json                 layout name and version, kind, width, height, frames, fps, clip count, settings
      report.json, report.txt      every candidate clip, accepted or rejected, and why

prompts.txt + videos.txt with relative paths is the layout CogVideoX fine-tuning scripts read (finetrainers,
CogVideoX-factory: `--caption_column prompts.txt --video_column videos.txt`), so a folder written here trains
there too, and a folder of that layout written elsewhere trains here (dataset.json is then absent).
"""
from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..camera import Trajectory
from ..camera.formats import write_transforms_json
from ..files import atomic_path
from .clips import write_clip

LAYOUT = "dimx-dataset"
LAYOUT_VERSION = 1
KINDS = ("spatial", "temporal")
PROMPTS, VIDEOS, INFO = "prompts.txt", "videos.txt", "dataset.json"
REPORT_JSON, REPORT_TEXT = "report.json", "report.txt"
PREVIEW_CLIPS = 16


@dataclass(frozen=True)
class ClipGeometry:
    """What every clip of a dataset must be: the model's size and frame count."""
    width: int
    height: int
    frames: int
    fps: float

    def describe(self) -> str:
        return f"{self.frames} frames of {self.width}x{self.height}"


def check_clip(frames: torch.Tensor, geometry: ClipGeometry, what: str) -> None:
    """A clip of the wrong length or size is refused, saying what it is and what the model needs."""
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"{what}: expected video frames (N, H, W, 3), got shape {tuple(frames.shape)}")
    count, height, width = frames.shape[:3]
    if (count, width, height) != (geometry.frames, geometry.width, geometry.height):
        raise ValueError(f"{what} has {count} frames of {width}x{height}, but this model needs "
                         f"{geometry.describe()}. Rebuild the dataset for this model (the dataset nodes and "
                         "`dimx dataset` cut and size clips for the loaded model).")


def _one_line(caption: str, what: str) -> str:
    text = " ".join(str(caption).split())
    if not text:
        raise ValueError(f"{what}: the caption is empty; every clip needs a prompt")
    return text


class DatasetWriter:
    """Fills a (hidden, not yet renamed) dataset folder clip by clip; `finish` writes the index files."""

    def __init__(self, folder: Path, kind: str, geometry: ClipGeometry, settings: dict):
        if kind not in KINDS:
            raise ValueError(f"dataset kind must be one of {KINDS}, got {kind!r}")
        self.folder, self.kind, self.geometry, self.settings = Path(folder), kind, geometry, settings
        self.accepted: list[tuple[str, str]] = []   # (relative video path, caption)
        self.candidates: list[dict] = []
        self.previews: list[torch.Tensor] = []

    def add(self, frames: torch.Tensor, caption: str, meta: dict, cameras: Trajectory | None = None) -> str:
        clip = f"{len(self.accepted):05d}"
        check_clip(frames, self.geometry, f"clip {clip}")
        caption = _one_line(caption, f"clip {clip}")
        video = f"videos/{clip}.mp4"
        write_clip(self.folder / video, frames, self.geometry.fps)
        record = {"clip": clip, "kind": self.kind, "video": video, "caption": caption, **meta}
        if cameras is not None:
            record["cameras"] = f"clips/{clip}.transforms.json"
            write_transforms_json(self.folder / record["cameras"], cameras)
        with atomic_path(self.folder / "clips" / f"{clip}.json") as part:
            part.write_text(json.dumps(record, indent=1, default=float))
        self.accepted.append((video, caption))
        self.candidates.append({"accepted": True, "clip": clip, **_summary(meta)})
        if len(self.previews) < PREVIEW_CLIPS:
            middle = len(frames) // 2
            self.previews.append(torch.cat([frames[0], frames[middle], frames[-1]], dim=1).cpu())
        return clip

    def reject(self, meta: dict, reason: str) -> None:
        self.candidates.append({"accepted": False, "reason": reason, **_summary(meta)})

    def finish(self, notes: list[str]) -> "DatasetSummary":
        rejected = [c for c in self.candidates if not c["accepted"]]
        if not self.accepted:
            reasons = Counter(c["reason"].split(":")[0] for c in rejected)
            tally = "; ".join(f"{count} x {reason}" for reason, count in reasons.most_common(4))
            raise ValueError(f"no clip was accepted out of {len(self.candidates)} candidates ({tally or 'none'})"
                             + "".join(f"\n{note}" for note in notes))
        for name, lines in ((PROMPTS, [c for _, c in self.accepted]), (VIDEOS, [v for v, _ in self.accepted])):
            with atomic_path(self.folder / name) as part:
                part.write_text("\n".join(lines) + "\n", encoding="utf-8")
        info = {"layout": LAYOUT, "version": LAYOUT_VERSION, "kind": self.kind, "width": self.geometry.width,
                "height": self.geometry.height, "frames": self.geometry.frames, "fps": self.geometry.fps,
                "clips": len(self.accepted), "rejected": len(rejected), "settings": self.settings, "notes": notes}
        summary = DatasetSummary(self.kind, len(self.accepted), len(rejected), notes,
                                 report_text(self.candidates, notes), torch.stack(self.previews))
        for name, text in ((INFO, json.dumps(info, indent=1, default=float)),
                           (REPORT_JSON, json.dumps({"notes": notes, "candidates": self.candidates}, indent=1,
                                                    default=float)),
                           (REPORT_TEXT, summary.report)):
            with atomic_path(self.folder / name) as part:
                part.write_text(text, encoding="utf-8")
        return summary


def _summary(meta: dict) -> dict:
    """The flat, short part of a clip's record that belongs in the report (no pose lists)."""
    return {key: value for key, value in meta.items() if not isinstance(value, (list, dict))}


def report_text(candidates: list[dict], notes: list[str]) -> str:
    accepted = sum(c["accepted"] for c in candidates)
    lines = [f"{accepted} of {len(candidates)} candidate clips accepted", *notes]
    for candidate in candidates:
        details = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in candidate.items()
                            if k not in ("accepted", "reason", "clip"))
        verdict = f"clip {candidate['clip']}" if candidate["accepted"] else f"rejected: {candidate['reason']}"
        lines.append(f"- {verdict} ({details})")
    return "\n".join(lines) + "\n"


@dataclass
class DatasetSummary:
    kind: str
    clips: int
    rejected: int
    notes: list[str]
    report: str
    preview: torch.Tensor  # (clips, H, 3W, 3): first | middle | last frame of the first PREVIEW_CLIPS clips

    def describe(self) -> str:
        return f"{self.kind}-variant dataset, {self.clips} clips ({self.rejected} candidates rejected)"


@dataclass(frozen=True)
class DatasetClip:
    video: Path
    caption: str


@dataclass
class Dataset:
    """A dataset folder as the trainer reads it: the clips listed in videos.txt with the captions of prompts.txt."""
    folder: Path
    clips: list[DatasetClip]
    info: dict = field(default_factory=dict)

    @property
    def kind(self) -> str | None:
        return self.info.get("kind")

    def fingerprint(self) -> str:
        """Changes when a clip, a caption or the list changes (file sizes and times, not contents: cheap)."""
        digest = hashlib.sha1()
        for clip in self.clips:
            stat = clip.video.stat()
            digest.update(f"{clip.video.relative_to(self.folder)}|{stat.st_size}|{stat.st_mtime_ns}|"
                          f"{clip.caption}\n".encode())
        return digest.hexdigest()[:16]

    def describe(self) -> str:
        kind = f"{self.kind}-variant " if self.kind else ""
        return f"{kind}dataset '{self.folder.name}', {len(self.clips)} clips"


def _lines(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise ValueError(f"'{path}' is not UTF-8 text ({err})") from err
    while lines and not lines[-1].strip():
        lines.pop()
    return lines


def open_dataset(folder: str | Path) -> Dataset:
    """Check a dataset folder (prompts.txt, videos.txt, every listed clip present) and list its clips."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"dataset folder '{folder}' does not exist")
    missing = [name for name in (PROMPTS, VIDEOS) if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f"dataset folder '{folder}' has no {' and no '.join(missing)}: a dataset holds "
                                "prompts.txt (one caption per line) and videos.txt (one clip path per line). "
                                "Build one with Build Spatial Dataset / Curate Temporal Dataset or `dimx dataset`.")
    prompts, videos = _lines(folder / PROMPTS), _lines(folder / VIDEOS)
    if not videos:
        raise ValueError(f"'{folder / VIDEOS}' lists no clips")
    if len(prompts) != len(videos):
        raise ValueError(f"'{folder}': prompts.txt has {len(prompts)} lines but videos.txt lists {len(videos)} "
                         "clips; line i of prompts.txt must caption line i of videos.txt")
    root, clips = folder.resolve(), []
    for number, (relative, caption) in enumerate(zip(videos, prompts), start=1):
        video = (folder / relative.strip()).resolve()
        if not video.is_relative_to(root):
            raise ValueError(f"videos.txt line {number} '{relative}' points outside the dataset folder")
        if not video.is_file():
            raise FileNotFoundError(f"videos.txt line {number} lists '{relative}', which is missing from '{folder}'")
        clips.append(DatasetClip(video, _one_line(caption, f"prompts.txt line {number}")))
    info = {}
    if (folder / INFO).is_file():
        try:
            info = json.loads((folder / INFO).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"'{folder / INFO}' is not valid JSON ({err})") from err
    return Dataset(root, clips, info)
