"""Geometry of every S-Director motion pattern, checked as properties (not snapshots)."""
import math
import re

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dimx_core.camera import director_name, patterns, plan
from dimx_core.camera.planner import ease, focal_from_fov

KINDS = {kind: [p.name for p in patterns.TABLE if p.kind == kind] for kind in ("translate", "rotate", "orbit")}
EXPECTED_AXIS = {  # where each translation goes / which way each rotation turns the view, in OpenCV axes
    "truck_left": [-1, 0, 0], "truck_right": [1, 0, 0], "pedestal_up": [0, -1, 0], "pedestal_down": [0, 1, 0],
    "dolly_in": [0, 0, 1], "dolly_out": [0, 0, -1],
}


def _forward(c2w):
    return c2w[..., :3, 2]


def _angle_deg(a, b):
    return np.degrees(np.arccos(np.clip(np.sum(a * b, -1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1),
                                        -1, 1)))


def test_every_pattern_has_a_director_and_a_mirror_in_the_table():
    assert len(patterns.PATTERNS) == 18 and len(KINDS["translate"]) == 6 and len(KINDS["rotate"]) == 6
    assert {director_name(p) for p in patterns.PATTERNS} == set(patterns.PATTERNS)
    assert patterns.RELEASED_DIRECTORS == patterns.TWO_VIEW_PATTERNS  # 12 basic moves + 4 orbits, all released
    for spec in patterns.TABLE:
        assert spec.mirror is None or patterns.get(spec.mirror).mirror == spec.name


@pytest.mark.parametrize("pattern", patterns.PATTERNS)
def test_first_pose_is_identity_and_intrinsics_follow_the_image(pattern):
    path = plan(pattern, frames=49, width=720, height=480, fov_deg=60.0)
    assert len(path) == 49 and path.director == pattern
    np.testing.assert_array_equal(path.c2w_opencv[0], np.eye(4))
    focal = 360.0 / math.tan(math.radians(30.0))
    np.testing.assert_allclose(path.intrinsics[:, 0, 0], focal)
    np.testing.assert_allclose(path.intrinsics[:, :2, 2], [[360.0, 240.0]] * 49)


@pytest.mark.parametrize("pattern", KINDS["translate"])
@pytest.mark.parametrize("easing", ["linear", "ease"])
def test_translations_keep_orientation_and_move_along_the_stated_axis(pattern, easing):
    path = plan(pattern, frames=25, magnitude=0.8, radius=2.0, easing=easing)
    np.testing.assert_allclose(path.c2w_opencv[:, :3, :3], np.tile(np.eye(3), (25, 1, 1)), atol=1e-12)
    positions = path.positions
    along = positions @ np.array(EXPECTED_AXIS[pattern], dtype=float)
    np.testing.assert_allclose(positions, along[:, None] * np.array(EXPECTED_AXIS[pattern]), atol=1e-12)
    assert along[-1] == pytest.approx(0.8) and (np.diff(along) >= -1e-12).all()


@pytest.mark.parametrize("pattern", KINDS["rotate"])
def test_rotations_keep_position_and_turn_the_stated_way_by_the_stated_angle(pattern):
    path = plan(pattern, frames=31, magnitude=40.0)
    np.testing.assert_allclose(path.positions, 0.0, atol=1e-12)
    last = path.c2w_opencv[-1, :3, :3]
    assert math.degrees(Rotation.from_matrix(last).magnitude()) == pytest.approx(40.0)
    forward, up = last[:, 2], -last[:, 1]
    direction = {"pan_left": forward[0] < -0.5, "pan_right": forward[0] > 0.5,
                 "tilt_up": forward[1] < -0.5, "tilt_down": forward[1] > 0.5,
                 "roll_left": up[0] < -0.5, "roll_right": up[0] > 0.5}
    assert direction[pattern]
    np.testing.assert_allclose(Rotation.from_matrix(path.c2w_opencv[:, :3, :3]).magnitude(),
                               np.radians(np.linspace(0, 40, 31)), atol=1e-12)


@pytest.mark.parametrize("pattern", KINDS["orbit"])
@pytest.mark.parametrize("elevation", [0.0, 25.0])
def test_orbits_keep_distance_and_look_at_the_pivot(pattern, elevation):
    path = plan(pattern, frames=49, magnitude=60.0, radius=3.0, elevation=elevation, easing="ease")
    np.testing.assert_allclose(path.pivot, [0, 0, 3.0])
    to_pivot = path.pivot - path.positions
    np.testing.assert_allclose(np.linalg.norm(to_pivot, axis=1), 3.0, atol=1e-12)
    np.testing.assert_allclose(_angle_deg(_forward(path.c2w_opencv), to_pivot), 0.0, atol=1e-5)
    if not patterns.get(pattern).loop:  # a loop always turns a full circle (tested below)
        assert math.degrees(Rotation.from_matrix(path.c2w_opencv[-1, :3, :3]).magnitude()) == pytest.approx(60.0)
        horizontal = to_pivot - np.outer(to_pivot @ patterns.world_down(elevation), patterns.world_down(elevation))
        if pattern in ("orbit_left", "orbit_right"):  # the azimuth turned is the requested angle
            assert _angle_deg(horizontal[0], horizontal[-1]) == pytest.approx(60.0)


def test_orbit_directions_and_horizontal_orbits_keep_their_elevation():
    down = patterns.world_down(25.0)
    for name, moves in (("orbit_left", lambda p: p[0] < 0), ("orbit_right", lambda p: p[0] > 0),
                        ("orbit_up", lambda p: p[1] < 0), ("orbit_down", lambda p: p[1] > 0)):
        path = plan(name, frames=9, magnitude=30.0, radius=2.0, elevation=25.0)
        assert moves(path.positions[-1]), name
        if name in ("orbit_left", "orbit_right"):  # height over the pivot's horizontal plane never changes
            np.testing.assert_allclose((path.positions - path.pivot) @ down, -2.0 * math.sin(math.radians(25.0)))


@pytest.mark.parametrize("pattern, moves_right", [("orbit_360", False), ("orbit_360_right", True)])
def test_full_orbit_spreads_frames_over_a_closed_circle_without_repeating_the_first(pattern, moves_right):
    path = plan(pattern, frames=145, radius=2.0, magnitude=30.0)  # magnitude is not used by the loop
    assert path.meta["magnitude"] == 360.0
    to_pivot = path.pivot - path.positions
    steps = _angle_deg(to_pivot, np.roll(to_pivot, -1, axis=0))
    np.testing.assert_allclose(steps, 360.0 / 145, atol=1e-6)  # including the step from the last back to the first
    assert bool(path.positions[1, 0] > 0) == moves_right
    assert patterns.unrolled(pattern) == ("orbit_right" if moves_right else "orbit_left")


def test_easing_keeps_the_ends_and_slows_the_start():
    fraction = np.linspace(0, 1, 11)
    for easing in ("linear", "ease"):
        eased = ease(fraction, easing)
        assert eased[0] == 0.0 and eased[-1] == pytest.approx(1.0) and (np.diff(eased) > 0).all()
    assert ease(np.array([0.1]), "ease")[0] < 0.1
    linear, eased = plan("pan_left", 21, 30.0), plan("pan_left", 21, 30.0, easing="ease")
    np.testing.assert_allclose(linear.c2w_opencv[-1], eased.c2w_opencv[-1], atol=1e-12)
    np.testing.assert_allclose(linear.c2w_opencv[10], eased.c2w_opencv[10], atol=1e-12)  # symmetric about the middle
    assert Rotation.from_matrix(eased.c2w_opencv[1, :3, :3]).magnitude() < Rotation.from_matrix(
        linear.c2w_opencv[1, :3, :3]).magnitude()


def test_left_right_mirror_turns_each_pattern_into_its_mirror():
    mirror = np.diag([-1.0, 1.0, 1.0, 1.0])
    for spec in patterns.TABLE:
        if spec.mirror is None:
            continue
        path = plan(spec.name, 9, 0.5 if spec.kind == "translate" else 35.0, radius=2.5, elevation=10.0)
        partner = plan(spec.mirror, 9, 0.5 if spec.kind == "translate" else 35.0, radius=2.5, elevation=10.0)
        np.testing.assert_allclose(mirror @ path.c2w_opencv @ mirror, partner.c2w_opencv, atol=1e-12)


def test_focal_length_wins_over_field_of_view():
    path = plan("orbit_left", 3, 10.0, fov_deg=90.0, focal_px=500.0, width=640, height=360)
    np.testing.assert_allclose(path.intrinsics[0], [[500, 0, 320], [0, 500, 180], [0, 0, 1]])
    assert path.meta["fov_deg"] == pytest.approx(math.degrees(2 * math.atan(320 / 500)))
    assert focal_from_fov(90.0, 640) == pytest.approx(320.0)


def test_default_magnitudes_depend_on_the_kind_of_motion():
    assert plan("orbit_up", 3).meta["magnitude"] == 30.0
    assert plan("dolly_in", 3, radius=4.0).meta["magnitude"] == 1.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(pattern="orbit_sideways"), "unknown pattern 'orbit_sideways'; choose one of: truck_left"),
    (dict(frames=0), "frames must be a whole number from 2 to 1024, got 0"),
    (dict(frames=1), "frames must be a whole number from 2 to 1024, got 1"),
    (dict(frames=2.5), "frames must be a whole number"),
    (dict(magnitude=float("nan")), "magnitude must be a finite number"),
    (dict(magnitude=-5.0), "magnitude must be > 0 (degrees for orbit_left), got -5"),
    (dict(magnitude="wide"), "magnitude must be a number"),
    (dict(radius=-1.0), "radius must be > 0 (the pivot distance in scene units), got -1"),
    (dict(radius=float("inf")), "radius must be a finite number"),
    (dict(elevation=90.0), "elevation must be > -90 and < 90 (degrees), got 90"),
    (dict(fov_deg=0.0), "fov_deg must be > 0 and < 180"),
    (dict(focal_px=-10.0), "focal_px must be > 0"),
    (dict(width=0), "width must be a whole number >= 1, got 0"),
    (dict(easing="bounce"), "easing must be one of linear, ease, got 'bounce'"),
    (dict(pattern="dolly_in", magnitude=2.5, radius=2.0), "dolly_in of 2.5 scene units would reach or pass the pivot"),
])
def test_bad_parameters_give_specific_errors(kwargs, message):
    arguments = dict(pattern="orbit_left", frames=49, magnitude=30.0) | kwargs
    with pytest.raises(ValueError, match=re.escape(message)):
        plan(**arguments)


@pytest.mark.parametrize("pattern, release, authors_name", [
    ("truck_left", "ShuoChen20/DimensionX_12_basic_camera_lora", "x_left"),
    ("pedestal_up", "ShuoChen20/DimensionX_12_basic_camera_lora", "y_up"),
    ("dolly_out", "ShuoChen20/DimensionX_12_basic_camera_lora", "z_zoom_out"),
    ("tilt_up", "ShuoChen20/DimensionX_12_basic_camera_lora", "pan_up"),
    ("roll_right", "ShuoChen20/DimensionX_12_basic_camera_lora", "pan_rotation_right"),
    ("orbit_down", "ShuoChen20/DimensionX_4_orbit_camera_lora", "orbit_down"),
    ("orbit_360_right", "ShuoChen20/DimensionX_360orbit", None),  # the released model circles right
    ("orbit_360", None, None),
])
def test_every_released_director_maps_to_its_pattern(pattern, release, authors_name):
    spec = patterns.get(pattern)
    assert (spec.release, spec.authors_name) == (release, authors_name)
    assert sum(p.release == "ShuoChen20/DimensionX_12_basic_camera_lora" for p in patterns.TABLE) == 12
    assert sum(p.release == "ShuoChen20/DimensionX_4_orbit_camera_lora" for p in patterns.TABLE) == 4
