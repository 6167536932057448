"""Every camera path the Trajectory Planner and `dimx trajectory` offer, from one table: the S-Director motions
(patterns.TABLE, planned by planner.plan) and GenXD's two camera modes (genxd.genxd_trajectory)."""
from __future__ import annotations

from . import genxd, patterns
from .planner import DEFAULT_FOV_DEG, DEFAULT_FRAMES, DEFAULT_RADIUS, DEFAULT_SIZE, finite_number, focal_from_fov, plan
from .trajectory import Trajectory

GENXD_PATTERNS = {f"genxd_{mode}": mode for mode in genxd.MODES}  # pattern name -> GenXD mode
PATH_PATTERNS = (*patterns.PATTERNS, *GENXD_PATTERNS)
DEFAULT_AZIMUTH_RANGE = (0.0, 30.0)
GENXD_HELP = ("genxd_orbit: GenXD's orbit mode, the frames spread over [azimuth_start, azimuth_end) at a fixed "
              "elevation; genxd_forward: GenXD's forward mode, the azimuth sweeping start -> end -> start while the "
              "elevation goes 0 -> elevation -> 0 -> -elevation -> 0 (frames a multiple of 4)")


def plan_path(pattern: str, frames: int = DEFAULT_FRAMES, magnitude: float | None = None, *,
              azimuth_range: tuple[float, float] = DEFAULT_AZIMUTH_RANGE, radius: float = DEFAULT_RADIUS,
              elevation: float = 0.0, fov_deg: float = DEFAULT_FOV_DEG, focal_px: float | None = None,
              width: int = DEFAULT_SIZE[0], height: int = DEFAULT_SIZE[1], easing: str = "linear") -> Trajectory:
    """The path named `pattern`. S-Director motions use `magnitude` and `easing` (see planner.plan); GenXD's
    modes use `azimuth_range` (degrees) instead, and their focal length is GenXD's normalised one,
    focal_px / width."""
    mode = GENXD_PATTERNS.get(pattern)
    if mode is None:
        return plan(pattern, frames, magnitude, radius=radius, elevation=elevation, fov_deg=fov_deg,
                    focal_px=focal_px, width=width, height=height, easing=easing)
    focal = focal_from_fov(fov_deg, width) if focal_px is None else finite_number("focal_px", focal_px, 0.0)
    return genxd.genxd_trajectory(mode, elevation, azimuth_range, radius=radius, focal=focal / width, frames=frames,
                                  width=width, height=height)
