"""The camera motions of DimensionX's S-Directors, and the director LoRA that produces each: one table.

Every motion is a one-parameter rigid motion written in the first camera's frame (OpenCV: x right, y down,
z forward), so a path of `amount` followed by a path of `amount2` is exactly the path of `amount + amount2`:
that is what lets long paths be cut into chained clips (articulated.py) without any drift.

Kinds:
- "translate": the camera slides along `axis` (scene units), orientation fixed.
- "rotate": the camera turns about `axis` through its own centre (degrees), position fixed.
- "orbit": the camera turns about `axis` through the pivot, which sits `radius` ahead of the first camera on
  its optical axis; it keeps its distance to the pivot and keeps looking at it (degrees).
  Horizontal orbits turn about the world's vertical, which is tilted by `elevation` (the first camera looks
  down at the pivot from `elevation` degrees above the horizon).

Director names (the pack's naming scheme, one name per motion, shared with the LoRA files people rename):
the pattern name itself. `release` names where the public DimensionX release (github.com/wenqsun/DimensionX,
README since 2025-08) publishes the director, as a Hugging Face repository: all 12 basic camera S-Directors
(+-x, +-y, +-z translation; +-pitch, +-yaw, +-roll rotation) and the 4 orbits are diffusers-format LoRAs (rank 256,
no alpha); the 360-degree orbit is a 145-frame fine-tuned transformer in SAT format, not a LoRA. The T-Director
(ShuoChen20/DimensionX_T_director_lora) moves no camera and has no pattern. `authors_name` is the motion's name
in the authors' own inference configs (cogvideo/tools/batch_run_trans.py and batch_run_rotation.py there:
x_left ... z_zoom_out, pan_left/right/up/down, pan_rotation_left/right), which their released file names
follow, for readers of their code and their files. `mirror` is the motion seen in a left-right mirrored image
(x -> -x): running the mirror's director on the mirrored input image and mirroring the frames back gives this
motion.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial.transform import Rotation


@dataclass(frozen=True)
class Pattern:
    name: str
    kind: str                 # "translate" | "rotate" | "orbit"
    axis: tuple[float, float, float]  # unit axis in the first camera's frame, sign included
    description: str
    mirror: str | None        # the pattern this one becomes in a left-right mirrored image, if any
    release: str | None = None  # the Hugging Face repository of the released director
    authors_name: str | None = None
    loop: bool = False        # a closed loop: frames spread over [0, 360) without repeating the first

    @property
    def director(self) -> str:
        return self.name

    @property
    def unit(self) -> str:
        return "scene units" if self.kind == "translate" else "degrees"


_RIGHT, _DOWN, _FORWARD = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)


def _neg(axis: tuple[float, float, float]) -> tuple[float, float, float]:
    return tuple(-a for a in axis)


_BASIC, _ORBITS = "ShuoChen20/DimensionX_12_basic_camera_lora", "ShuoChen20/DimensionX_4_orbit_camera_lora"
ORBIT_360_RELEASE = "ShuoChen20/DimensionX_360orbit"  # mp_rank_00_model_states.pt (+ 'latest'): SAT, 145 frames
T_DIRECTOR_RELEASE = "ShuoChen20/DimensionX_T_director_lora"

# The table. Orbit axes of the horizontal orbits are given for elevation 0 and tilted by `elevation` on use.
TABLE: tuple[Pattern, ...] = (
    Pattern("truck_left", "translate", _neg(_RIGHT), "slide left (-x)", "truck_right", _BASIC, "x_left"),
    Pattern("truck_right", "translate", _RIGHT, "slide right (+x)", "truck_left", _BASIC, "x_right"),
    Pattern("pedestal_up", "translate", _neg(_DOWN), "rise (-y, OpenCV y points down)", "pedestal_up", _BASIC, "y_up"),
    Pattern("pedestal_down", "translate", _DOWN, "sink (+y)", "pedestal_down", _BASIC, "y_down"),
    Pattern("dolly_in", "translate", _FORWARD, "move forward (+z)", "dolly_in", _BASIC, "z_zoom_in"),
    Pattern("dolly_out", "translate", _neg(_FORWARD), "move back (-z)", "dolly_out", _BASIC, "z_zoom_out"),
    Pattern("pan_left", "rotate", _neg(_DOWN), "turn left in place (yaw)", "pan_right", _BASIC, "pan_left"),
    Pattern("pan_right", "rotate", _DOWN, "turn right in place (yaw)", "pan_left", _BASIC, "pan_right"),
    Pattern("tilt_up", "rotate", _RIGHT, "look up in place (pitch)", "tilt_up", _BASIC, "pan_up"),
    Pattern("tilt_down", "rotate", _neg(_RIGHT), "look down in place (pitch)", "tilt_down", _BASIC, "pan_down"),
    Pattern("roll_left", "rotate", _neg(_FORWARD),
            "roll counter-clockwise seen from behind the camera (its up vector tips left)", "roll_right", _BASIC,
            "pan_rotation_left"),
    Pattern("roll_right", "rotate", _FORWARD,
            "roll clockwise seen from behind the camera (its up vector tips right)", "roll_left", _BASIC,
            "pan_rotation_right"),
    Pattern("orbit_left", "orbit", _DOWN, "circle the pivot moving left, looking at it", "orbit_right", _ORBITS,
            "orbit_left"),
    Pattern("orbit_right", "orbit", _neg(_DOWN), "circle the pivot moving right, looking at it", "orbit_left",
            _ORBITS, "orbit_right"),
    Pattern("orbit_up", "orbit", _neg(_RIGHT), "circle the pivot moving up, looking down at it", "orbit_up", _ORBITS,
            "orbit_up"),
    Pattern("orbit_down", "orbit", _RIGHT, "circle the pivot moving down, looking up at it", "orbit_down", _ORBITS,
            "orbit_down"),
    Pattern("orbit_360", "orbit", _DOWN, "a full circle around the pivot, moving left (a loop of chained "
            "orbit_left clips, or GenXD's orbit over 0-360 degrees)", "orbit_360_right", loop=True),
    # The released 145-frame 360-degree model (a fine-tuned SAT checkpoint, not a LoRA) circles to the right: in
    # both of DimensionX's sample videos (assets/videos/360) the camera reaches the subject's back on the side the
    # image shows it at a quarter of the way, and the far background flows right all along.
    Pattern("orbit_360_right", "orbit", _neg(_DOWN), "a full circle around the pivot, moving right: the path of "
            "DimensionX's 145-frame 360-degree model (released as a fine-tuned SAT checkpoint, not a LoRA)",
            "orbit_360", ORBIT_360_RELEASE, loop=True),
)

BY_NAME: dict[str, Pattern] = {p.name: p for p in TABLE}
PATTERNS: tuple[str, ...] = tuple(BY_NAME)
TWO_VIEW_PATTERNS: tuple[str, ...] = tuple(p.name for p in TABLE if not p.loop)  # motions between two views
RELEASED_DIRECTORS: tuple[str, ...] = tuple(p.name for p in TABLE if p.release and not p.loop)  # LoRAs


def get(pattern: str) -> Pattern:
    try:
        return BY_NAME[pattern]
    except (KeyError, TypeError):
        raise ValueError(f"unknown pattern {pattern!r}; choose one of: {', '.join(PATTERNS)}") from None


def unrolled(pattern: str) -> str:
    """The open motion a loop pattern repeats (orbit_360 -> orbit_left); any other pattern is itself."""
    spec = get(pattern)
    if not spec.loop:
        return pattern
    return next(p.name for p in TABLE if not p.loop and p.kind == spec.kind and p.axis == spec.axis)


def director_name(pattern: str) -> str:
    """Name of the S-Director LoRA that produces `pattern` (see the module docstring for the scheme)."""
    return get(pattern).director


def is_horizontal_orbit(spec: Pattern) -> bool:
    return spec.kind == "orbit" and abs(spec.axis[1]) == 1.0


def world_down(elevation_deg: float) -> np.ndarray:
    """The world's downward vertical in the first camera's frame, when that camera looks down by `elevation`."""
    e = np.radians(elevation_deg)
    return np.array([0.0, np.cos(e), np.sin(e)])


def motion_axis(spec: Pattern, elevation_deg: float = 0.0) -> np.ndarray:
    if is_horizontal_orbit(spec):
        return spec.axis[1] * world_down(elevation_deg)
    return np.asarray(spec.axis, dtype=np.float64)


def pattern_pose(pattern: str | Pattern, amount: float | np.ndarray, radius: float = 1.0,
                 elevation_deg: float = 0.0) -> np.ndarray:
    """Camera-to-world pose(s) after moving `amount` (degrees or scene units) along the pattern, (..., 4, 4).

    The first camera (amount 0) is the identity; the pivot of orbits is (0, 0, radius)."""
    spec = pattern if isinstance(pattern, Pattern) else get(pattern)
    amount = np.asarray(amount, dtype=np.float64)
    axis = motion_axis(spec, elevation_deg)
    poses = np.broadcast_to(np.eye(4), amount.shape + (4, 4)).copy()
    if spec.kind == "translate":
        poses[..., :3, 3] = amount[..., None] * axis
        return poses
    rotation = Rotation.from_rotvec((np.radians(amount)[..., None] * axis).reshape(-1, 3)).as_matrix()
    rotation = rotation.reshape(amount.shape + (3, 3))
    poses[..., :3, :3] = rotation
    if spec.kind == "orbit":
        pivot = np.array([0.0, 0.0, radius])
        poses[..., :3, 3] = pivot - rotation @ pivot  # turn about the pivot: x -> R (x - p) + p
    return poses
