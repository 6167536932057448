"""Plan the camera path an S-Director produces: one pose and one pinhole camera per generated frame.

`plan` is the one entry point the node, the preview route and the CLI share. The first pose is the input
image's camera at the origin (identity, OpenCV axes); see patterns.py for what each motion does.
"""
from __future__ import annotations

import math

import numpy as np

from . import patterns
from .trajectory import Trajectory

EASINGS = ("linear", "ease")
# The size of CogVideoX-5b-I2V's videos, where no model says otherwise: the nodes and CLIs pass the loaded model's
# frame count and size (ModelSpec) when one is known (DimensionX's 360-degree model: 145 frames at 480x320).
DEFAULT_FRAMES = 49
DEFAULT_SIZE = (720, 480)
DEFAULT_FOV_DEG = 60.0       # horizontal field of view when the input photo's lens is unknown
DEFAULT_RADIUS = 2.0         # pivot distance in scene units (the scale every other length is read against)
DEFAULT_ANGLE_DEG = 30.0
DEFAULT_DISTANCE_FRACTION = 0.25  # default translation, as a fraction of the pivot distance
MAX_FRAMES = 1024            # one path; a longer one is an articulated path of several clips
MAX_MAGNITUDE = 3600.0       # ten full turns, or 3600 scene units: beyond it a number is a typo, not a motion


def finite_number(name: str, value, low: float | None = None, high: float | None = None, what: str = "") -> float:
    """`value` as a float strictly between `low` and `high`, or an error that names the input."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number{what}, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be a finite number{what}, got {number}")
    if (low is not None and number <= low) or (high is not None and number >= high):
        bounds = [f"> {low:g}"] if low is not None else []
        bounds += [f"< {high:g}"] if high is not None else []
        raise ValueError(f"{name} must be {' and '.join(bounds)}{what}, got {number:g}")
    return number


def whole_number(name: str, value, minimum: int, maximum: int | None = None) -> int:
    bounds = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
            isinstance(value, float) and value.is_integer()):
        raise ValueError(f"{name} must be a whole number {bounds}, got {value!r}")
    if int(value) < minimum or (maximum is not None and int(value) > maximum):
        raise ValueError(f"{name} must be a whole number {bounds}, got {int(value)}")
    return int(value)


def focal_from_fov(fov_deg: float, width: int) -> float:
    """Focal length in pixels for a horizontal field of view across `width` pixels."""
    fov = finite_number("fov_deg", fov_deg, 0.0, 180.0, what=" (horizontal field of view in degrees)")
    return 0.5 * width / math.tan(math.radians(fov) / 2.0)


def fov_from_focal(focal_px: float, width: int) -> float:
    return math.degrees(2.0 * math.atan(0.5 * width / focal_px))


def pinhole(focal_px: float, width: int, height: int) -> np.ndarray:
    """Square pixels, principal point at the image centre (the convention of the existing camera files)."""
    return np.array([[focal_px, 0.0, width / 2.0], [0.0, focal_px, height / 2.0], [0.0, 0.0, 1.0]])


def ease(fraction: np.ndarray, easing: str) -> np.ndarray:
    """Map evenly spaced progress 0..1 to motion progress 0..1; "ease" starts and stops gently (cosine)."""
    if easing == "linear":
        return np.asarray(fraction, dtype=np.float64)
    if easing == "ease":
        return (1.0 - np.cos(np.pi * np.asarray(fraction, dtype=np.float64))) / 2.0
    raise ValueError(f"easing must be one of {', '.join(EASINGS)}, got {easing!r}")


def default_magnitude(pattern: str, radius: float = DEFAULT_RADIUS) -> float:
    spec = patterns.get(pattern)
    if spec.loop:
        return 360.0
    return DEFAULT_DISTANCE_FRACTION * radius if spec.kind == "translate" else DEFAULT_ANGLE_DEG


def plan(pattern: str, frames: int = DEFAULT_FRAMES, magnitude: float | None = None, *,
         radius: float = DEFAULT_RADIUS, elevation: float = 0.0, fov_deg: float = DEFAULT_FOV_DEG,
         focal_px: float | None = None, width: int = DEFAULT_SIZE[0], height: int = DEFAULT_SIZE[1],
         easing: str = "linear") -> Trajectory:
    """The path of `pattern` over `frames` frames.

    magnitude: total motion, degrees for rotations and orbits, scene units for translations (None: 30 degrees,
        or a quarter of the pivot distance). The loops (orbit_360, orbit_360_right) always turn a full circle and
        do not use it.
    radius: pivot distance, the orbit radius (scene units). dolly_in must stay short of the pivot.
    elevation: degrees the first camera looks down at the pivot; horizontal orbits turn about the world's
        vertical, so they keep this elevation. Other patterns move in the camera's own axes and ignore it.
    fov_deg / focal_px: horizontal field of view, or the focal length in pixels (wins when given).
    easing: "linear" (constant speed) or "ease" (starts and stops gently, same end pose).
    """
    spec = patterns.get(pattern)
    frames = whole_number("frames", frames, 2, MAX_FRAMES)
    width, height = whole_number("width", width, 1), whole_number("height", height, 1)
    radius = finite_number("radius", radius, 0.0, what=" (the pivot distance in scene units)")
    elevation = finite_number("elevation", elevation, -90.0, 90.0, what=" (degrees)")
    if easing not in EASINGS:
        raise ValueError(f"easing must be one of {', '.join(EASINGS)}, got {easing!r}")
    if focal_px is None:
        focal = focal_from_fov(fov_deg, width)
    else:
        focal = finite_number("focal_px", focal_px, 0.0, what=" (focal length in pixels)")
    if spec.loop:
        total = 360.0
    else:
        total = default_magnitude(pattern, radius) if magnitude is None else finite_number(
            "magnitude", magnitude, 0.0, what=f" ({spec.unit} for {pattern})")
        if total > MAX_MAGNITUDE:
            raise ValueError(f"magnitude must be at most {MAX_MAGNITUDE:g} {spec.unit} for {pattern}, got {total:g}")
    if pattern == "dolly_in" and total >= radius:
        raise ValueError(f"dolly_in of {total:g} scene units would reach or pass the pivot {radius:g} units ahead; "
                         f"use a magnitude below the radius")

    progress = np.arange(frames) / (frames if spec.loop else frames - 1)
    poses = patterns.pattern_pose(spec, total * ease(progress, easing), radius, elevation)
    pivot = np.array([0.0, 0.0, radius]) if spec.kind == "orbit" else None
    meta = {"frames": frames, "magnitude": total, "unit": spec.unit, "radius": radius, "elevation": elevation,
            "fov_deg": fov_from_focal(focal, width), "easing": easing}
    return Trajectory(poses, np.tile(pinhole(focal, width, height), (frames, 1, 1)), width, height,
                      pattern=pattern, pivot=pivot, director=spec.director, meta=meta)
