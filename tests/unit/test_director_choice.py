"""Adaptive trajectory planning: the director whose motion matches two views' relative pose."""
import numpy as np
import pytest

from dimx_core.camera import patterns, plan
from dimx_core.camera.director_choice import (RelativeMotion, choose_director, parse_candidates, score_pattern,
                                              score_table)
from dimx_core.camera.estimate import estimate_relative_motion
from tests.synthetic_scene import Room

SIZES = {"translate": (0.3, 1.5), "rotate": (8.0, 40.0), "orbit": (8.0, 40.0)}


def _last_pose(pattern, magnitude, radius=2.0):
    return plan(pattern, 2, magnitude, radius=radius).c2w_opencv[-1]


@pytest.mark.parametrize("pattern", patterns.TWO_VIEW_PATTERNS)
@pytest.mark.parametrize("size", [0, 1])
def test_each_patterns_own_relative_pose_picks_its_director(pattern, size):
    magnitude = SIZES[patterns.get(pattern).kind][size]
    best, scores = choose_director(RelativeMotion.from_pose(_last_pose(pattern, magnitude)))
    assert best.director == pattern and best.score == pytest.approx(1.0)
    assert len(scores) == 16 and scores[0] is best
    if best.magnitude_deg is not None:
        assert best.magnitude_deg == pytest.approx(magnitude)


def test_the_score_is_scale_free():
    for radius in (0.5, 2.0, 40.0):
        pose = _last_pose("orbit_up", 20.0, radius)
        pose[:3, 3] *= 7.0  # any unknown scale of the translation
        assert score_pattern(RelativeMotion.from_pose(pose), "orbit_up").score == pytest.approx(1.0)


def test_a_pose_between_two_patterns_scores_both_partially():
    # half-way between an orbit and a pan: a 20-degree turn with a translation that is neither
    pose = _last_pose("orbit_left", 20.0)
    pose[:3, 3] = 0.5 * pose[:3, 3] + np.array([0, 0, 0.2])
    best, scores = choose_director(RelativeMotion.from_pose(pose))
    by_name = {s.director: s for s in scores}
    assert best.director == "orbit_left" and 0.5 < best.score < 1.0
    assert by_name["pan_right"].score < best.score and by_name["orbit_right"].score == 0.0


def test_candidates_limit_the_choice_and_the_table_lists_every_score():
    motion = RelativeMotion.from_pose(_last_pose("pan_right", 20.0))
    best, scores = choose_director(motion, parse_candidates("orbit_left, orbit_up"))
    assert {s.director for s in scores} == {"orbit_left", "orbit_up"}
    assert parse_candidates("released") == patterns.TWO_VIEW_PATTERNS  # every basic move and orbit is public
    table = score_table(best, scores)
    assert table.splitlines()[0].startswith("best director: ") and "orbit_up" in table
    assert parse_candidates("all") is None and parse_candidates(" pan_left , orbit_up") == ("pan_left", "orbit_up")
    with pytest.raises(ValueError, match="unknown pattern 'spin'"):
        parse_candidates("pan_left, spin")
    with pytest.raises(ValueError, match="orbit_360 is a closed loop"):
        choose_director(motion, ["orbit_360"])


def test_bad_relative_poses_are_refused():
    with pytest.raises(ValueError, match="4x4"):
        RelativeMotion.from_pose(np.eye(3))
    with pytest.raises(ValueError, match="not a rotation"):
        RelativeMotion.from_pose(np.diag([1.0, 1.0, -1.0, 1.0]))
    with pytest.raises(ValueError, match="same pose: there is no camera motion"):
        choose_director(RelativeMotion.from_pose(np.eye(4)))


@pytest.fixture(scope="module")
def room():
    return Room(seed=3)


@pytest.mark.parametrize("pattern, magnitude", [("orbit_left", 15.0), ("orbit_up", 12.0), ("orbit_down", 12.0),
                                                ("pan_right", 12.0), ("tilt_up", 10.0), ("roll_left", 15.0),
                                                ("truck_left", 0.4), ("dolly_in", 0.6), ("pedestal_down", 0.4)])
def test_director_is_recovered_from_two_rendered_views(room, pattern, magnitude):
    path = plan(pattern, 2, magnitude, radius=2.6, fov_deg=60.0)
    view_a, view_b = (room.render(c2w, k, 720, 480) for c2w, k in zip(path.c2w_opencv, path.intrinsics))
    estimate = estimate_relative_motion(view_a, view_b, fov_deg=60.0)
    truth = RelativeMotion.from_pose(path.c2w_opencv[1])
    rotation_error = np.degrees(np.arccos(np.clip((np.trace(estimate.motion.rotation.T @ truth.rotation) - 1) / 2,
                                                  -1, 1)))
    assert rotation_error < 1.0 and estimate.inliers >= 100  # measured: 0.01-0.8 degrees over all 16 motions
    if truth.direction is None:
        assert estimate.motion.direction is None
    else:
        assert np.degrees(np.arccos(np.clip(estimate.motion.direction @ truth.direction, -1, 1))) < 3.0
    best, _ = choose_director(estimate.motion)
    assert best.director == pattern and best.score > 0.99


def test_unrelated_images_are_refused(room):
    noise = np.random.default_rng(0).random((480, 720, 3))
    with pytest.raises(ValueError, match="feature matches|camera motion"):
        estimate_relative_motion(room.render(np.eye(4), plan("pan_left", 2).intrinsics[0], 720, 480), noise)
    with pytest.raises(ValueError, match="too few image features"):
        estimate_relative_motion(np.zeros((480, 720, 3)), np.zeros((480, 720, 3)))


def test_low_texture_views_fall_back_to_dense_flow_and_say_so():
    """Two renders of the pack's example ball (a blurry sphere on black): SIFT finds too few features there, so
    the estimate uses dense optical flow, names it, and picks the ball's orbit."""
    import math
    from pathlib import Path

    from dimx_core.camera import Trajectory
    from dimx_core.camera.formats import read_transforms_json
    from dimx_core.recon.files import read_ply
    from dimx_core.recon.render import render_views

    inputs = Path(__file__).resolve().parents[2] / "workflows" / "inputs"
    cameras, _ = read_transforms_json(inputs / "dimensionx_example_ball.transforms.json")
    pair = Trajectory(cameras.c2w_opencv[[0, 2]], cameras.intrinsics[[0, 2]], cameras.width, cameras.height)
    # an 11-degree orbit to the left
    view_a, view_b = render_views(read_ply(inputs / "dimensionx_example_ball.ply"), pair).numpy()
    fov_deg = math.degrees(2 * math.atan(cameras.width / 2 / cameras.intrinsics[0][0, 0]))
    estimate = estimate_relative_motion(view_a, view_b, fov_deg)
    assert estimate.method == "dense flow" and estimate.inliers >= 100
    assert "dense-flow correspondences" in estimate.describe()
    truth = RelativeMotion.between(pair.c2w_opencv[0], pair.c2w_opencv[1])
    rotation_error = np.degrees(np.arccos(np.clip((np.trace(estimate.motion.rotation.T @ truth.rotation) - 1) / 2,
                                                  -1, 1)))
    assert rotation_error < 4.0  # measured 2.4 of an 11.4-degree turn
    assert choose_director(estimate.motion)[0].director == "orbit_left"
