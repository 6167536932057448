"""The settings of the dataset builders, as small values (no torch: the CLI reads their defaults for --help)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..camera import patterns
from ..camera.planner import EASINGS
from .captions import parse_templates

SPATIAL_TEMPLATE = "{scene}, camera: {motion}"
TEMPORAL_TEMPLATE = "{caption}"


@dataclass(frozen=True)
class OccupancySettings:
    opacity_threshold: float = 0.5   # accumulated opacity at which a rendered pixel counts as surface
    clearance: float = 0.15          # closest approach to a surface, x the scene distance
    box_margin: float = 0.1          # the camera box grown by this, x the scene distance, on every side
    depth_width: int = 160           # depth maps are rendered at most this wide (the test needs no detail)
    ahead_every: int = 4             # frames between the path poses whose own view ahead is checked

    def __post_init__(self) -> None:
        if not 0.0 < self.opacity_threshold < 1.0:
            raise ValueError(f"opacity_threshold must be between 0 and 1, got {self.opacity_threshold}")
        for name in ("clearance", "box_margin"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"{name} must be >= 0 (a fraction of the scene distance), got {getattr(self, name)}")
        if self.depth_width < 8 or self.ahead_every < 1:
            raise ValueError("depth_width must be >= 8 pixels and ahead_every >= 1 frame")


@dataclass(frozen=True)
class SpatialSettings:
    patterns: tuple[str, ...]
    clips_per_pattern: int = 10
    angle_deg: float = 30.0           # rotations and orbits
    distance_fraction: float = 0.25   # translations: this fraction of the start's distance to the scene's focus
    easing: str = "linear"
    attempts: int = 20                # start positions drawn per clip before giving up on it
    seed: int = 0
    templates: str = ""               # caption templates, see captions.py
    occupancy: OccupancySettings = field(default_factory=OccupancySettings)

    def __post_init__(self) -> None:
        if not self.patterns:
            raise ValueError("patterns: choose at least one camera motion")
        for name in self.patterns:
            patterns.get(name)
        if len(set(self.patterns)) != len(self.patterns):
            raise ValueError(f"patterns: {list(self.patterns)} names a pattern twice")
        if self.clips_per_pattern < 1 or self.attempts < 1:
            raise ValueError("clips_per_pattern and attempts must be at least 1")
        if not 0.0 < self.angle_deg < 360.0:
            raise ValueError(f"angle_deg must be between 0 and 360 degrees, got {self.angle_deg}")
        if not 0.0 < self.distance_fraction < 1.0:
            raise ValueError(f"distance_fraction must be between 0 and 1 (a dolly_in of the whole distance would "
                             f"reach the scene's centre), got {self.distance_fraction}")
        if self.easing not in EASINGS:
            raise ValueError(f"easing must be one of {', '.join(EASINGS)}, got {self.easing!r}")
        parse_templates(self.templates, self.patterns, SPATIAL_TEMPLATE)


@dataclass(frozen=True)
class StillCameraTest:
    """Thresholds of the static-camera test; flows in pixels per frame at the clip's size (the model's)."""
    still_px: float = 0.5              # a textured pixel moving less than this counts as still
    min_static_share: float = 0.6      # share of textured pixels that must be still
    max_background_flow: float = 0.3   # the median flow of the textured pixels may not exceed this
    min_texture_share: float = 0.05    # with less texture than this the camera cannot be judged

    def __post_init__(self) -> None:
        for name in ("still_px", "max_background_flow"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0 pixels per frame, got {getattr(self, name)}")
        for name in ("min_static_share", "min_texture_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a share between 0 and 1, got {getattr(self, name)}")


@dataclass(frozen=True)
class TemporalSettings:
    test: StillCameraTest = field(default_factory=StillCameraTest)
    frame_stride: int = 0          # keep every n-th source frame; 0: source fps / 8 (the model's frame rate)
    max_clips_per_video: int = 0   # 0: every clip a video holds
    template: str = ""             # caption template, placeholders {video} and {caption}, see captions.py

    def __post_init__(self) -> None:
        if self.frame_stride < 0 or self.max_clips_per_video < 0:
            raise ValueError("frame_stride and max_clips_per_video must be >= 0 (0: automatic / all)")
        parse_templates(self.template, (), TEMPORAL_TEMPLATE)
