"""GenXD's camera parameters (mode forward|orbit, elevation, azimuth range, radius, focal) on the pack's model.

GenXD places cameras on a sphere around a target: `elevation` degrees above the horizon (positive: above),
`azimuth` growing from the camera's right to its left (so a growing azimuth is an orbit to the left), at
`radius`, looking at the target; `focal` is normalised by the image side (cx = 0.5), which the pack reads as
fx = fy = focal * width. Its "orbit" mode spreads N cameras over [a1, a2) at a fixed elevation; its "forward"
mode sweeps the azimuth a1 -> a2 -> a1 while the elevation goes 0 -> e -> 0 -> -e -> 0, with the first frame
at azimuth 0, elevation 0. Poses are re-expressed relative to the first frame, as every plan here is.
"""
from __future__ import annotations

import numpy as np

from . import patterns
from .planner import DEFAULT_FRAMES, DEFAULT_SIZE, finite_number, pinhole, plan, whole_number
from .trajectory import Trajectory

MODES = ("orbit", "forward")


def sphere_poses(azimuth_deg: np.ndarray, elevation_deg: np.ndarray, radius: float,
                 first_elevation_deg: float) -> np.ndarray:
    """Cameras on the sphere around the pivot, relative to one at azimuth 0 and `first_elevation_deg`: a turn
    about the world vertical (orbit_left) after a turn over the pivot (orbit_up), both about the pivot."""
    turn = patterns.pattern_pose("orbit_left", np.asarray(azimuth_deg), radius, first_elevation_deg)
    rise = patterns.pattern_pose("orbit_up", np.asarray(elevation_deg) - first_elevation_deg, radius)
    return turn @ rise


def genxd_trajectory(mode: str, elevation: float, azimuth_range: tuple[float, float], radius: float = 2.0,
                     focal: float = 1.0938, frames: int = DEFAULT_FRAMES, width: int = DEFAULT_SIZE[0],
                     height: int = DEFAULT_SIZE[1]) -> Trajectory:
    if mode not in MODES:
        raise ValueError(f"GenXD mode must be one of {', '.join(MODES)}, got {mode!r}")
    frames = whole_number("frames", frames, 2)
    try:
        a1, a2 = (float(a) for a in azimuth_range)
    except (TypeError, ValueError):
        raise ValueError(f"azimuth_range must be two numbers (degrees), got {azimuth_range!r}") from None
    elevation = finite_number("elevation", elevation, -90.0, 90.0, what=" (degrees)")
    focal_px = finite_number("focal", focal, 0.0, what=" (GenXD's normalised focal length)") * width
    if mode == "orbit":
        if a1 == a2:
            raise ValueError("azimuth_range is empty: GenXD's orbit needs two different azimuths")
        span = abs(a2 - a1)
        options = dict(radius=radius, elevation=elevation, focal_px=focal_px, width=width, height=height)
        if span == 360.0:
            return plan("orbit_360" if a2 > a1 else "orbit_360_right", frames, **options)
        # N cameras over [a1, a2) are the N frames of a path of span * (N - 1) / N that includes both ends.
        return plan("orbit_left" if a2 > a1 else "orbit_right", frames, span * (frames - 1) / frames, **options)
    if frames % 4:
        raise ValueError(f"GenXD's forward mode splits the path in four equal parts; frames must be a multiple "
                         f"of 4, got {frames}")
    half, quarter = frames // 2, frames // 4
    azimuths = np.concatenate([np.linspace(a1, a2, half, endpoint=False), np.linspace(a2, a1, half, endpoint=False)])
    elevations = np.concatenate([np.linspace(start, stop, quarter, endpoint=False) for start, stop in
                                 ((0, elevation), (elevation, 0), (0, -elevation), (-elevation, 0))])
    azimuths[0] = elevations[0] = 0.0
    poses = sphere_poses(azimuths, elevations, finite_number("radius", radius, 0.0, what=" (scene units)"), 0.0)
    return Trajectory(poses, np.tile(pinhole(focal_px, width, height), (frames, 1, 1)), width, height,
                      pattern="genxd_forward", pivot=[0.0, 0.0, radius], director=None,
                      meta={"mode": mode, "elevation": elevation, "azimuth_range": [a1, a2], "radius": radius,
                            "focal": focal})
