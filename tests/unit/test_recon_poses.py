"""Camera poses for generated frames: SfM checked against the requested trajectory, Sim(3) alignment."""
import numpy as np
import pytest

from dimx_core.camera.formats import quaternion_wxyz_to_rotation
from dimx_core.recon.poses import PoseMismatch, align_sim3, apply_sim3, choose_poses, compare_poses
from dimx_core.recon.render import look_at_c2w
from dimx_core.recon.synthetic import orbit_rig
from tests.unit.recon_scenes import one_thread, orbit_frames  # noqa: F401 (autouse fixture)

pytest.importorskip("pycolmap")


def test_sim3_alignment_recovers_a_known_similarity_for_orbits_and_straight_paths():
    orbit = orbit_rig(10, 40.0, 64, 48).c2w_opencv
    dolly = np.stack([look_at_c2w([0.1 * i, 0.0, 0.0], [0.1 * i, 0.0, 2.0]) for i in range(6)])
    rotation = quaternion_wxyz_to_rotation(np.array([0.8, 0.3, -0.4, 0.35]))
    for poses in (orbit, dolly):
        moved = apply_sim3(poses, 2.5, rotation, np.array([1.0, -2.0, 0.5]))
        scale, back_rotation, translation = align_sim3(moved, poses)
        assert scale == pytest.approx(1 / 2.5, rel=1e-9)
        assert np.allclose(apply_sim3(moved, scale, back_rotation, translation), poses, atol=1e-9)
        check, _ = compare_poses(moved, poses, len(poses))
        assert check.verdict == "agrees" and check.max_rotation_error < 1e-3


def test_pose_check_agrees_with_the_true_orbit_and_flags_one_20_percent_too_large():
    frames, truth = orbit_frames(128, 96, 12, gaussians=2000)
    right = choose_poses(frames.numpy(), truth, "sfm")
    assert right.source == "sfm" and right.check.registered == 12
    assert right.check.verdict == "agrees", right.check.summary()
    assert right.check.max_rotation_error < 2.0 and 0.95 < right.check.rotation_span_ratio < 1.05
    # the scene is expressed in the trajectory's frame: SfM cameras land on the requested ones
    path = np.linalg.norm(truth.positions[-1] - truth.positions[0])
    assert np.linalg.norm(right.cameras.positions - truth.positions, axis=1).max() < 0.1 * path
    assert right.points is not None and len(right.points) > 50

    off = orbit_rig(12, 36.0, 128, 96)  # the request says 36 degrees; the video turned 30
    wrong = choose_poses(frames.numpy(), off, "auto")
    assert wrong.check.verdict == "differs", wrong.check.summary()
    assert wrong.check.max_rotation_error > 3.0
    assert wrong.check.rotation_span_ratio == pytest.approx(30 / 36, abs=0.05)
    assert wrong.source == "sfm" and any(note.startswith("WARNING") for note in wrong.notes)


def test_auto_refuses_when_the_video_contradicts_the_trajectory_and_trajectory_mode_does_not_check():
    frames, _ = orbit_frames(128, 96, 12, gaussians=2000)
    far_off = orbit_rig(12, 60.0, 128, 96)
    with pytest.raises(PoseMismatch, match="contradicts the requested trajectory.*poses=sfm"):
        choose_poses(frames.numpy(), far_off, "auto")
    forced = choose_poses(frames.numpy(), far_off, "trajectory")
    assert forced.source == "trajectory" and forced.check is None
    assert np.array_equal(forced.cameras.c2w_opencv, far_off.c2w_opencv)


def test_sfm_mode_fails_clearly_when_no_model_forms():
    blank = np.full((6, 48, 64, 3), 0.5, np.float32)
    with pytest.raises(ValueError, match="structure-from-motion failed.*poses=trajectory"):
        choose_poses(blank, orbit_rig(6, 20.0, 64, 48), "sfm")
    fallback = choose_poses(blank, orbit_rig(6, 20.0, 64, 48), "auto")
    assert fallback.source == "fixed" and "SfM could not check" in fallback.notes[0]


def test_the_planners_orbits_and_the_pose_check_share_one_convention():
    """Frames rendered along camera.plan's orbit_left agree with that plan and differ from a 20% larger one."""
    from dimx_core.camera import plan
    from dimx_core.recon.render import render_views
    from dimx_core.recon.synthetic import ball_before_wall

    planned = plan("orbit_left", 12, 30.0, width=128, height=96, fov_deg=50.0)
    frames = render_views(ball_before_wall(2000), planned).numpy()
    assert choose_poses(frames, planned, "sfm").check.verdict == "agrees"
    larger = choose_poses(frames, plan("orbit_left", 12, 36.0, width=128, height=96, fov_deg=50.0), "sfm")
    assert larger.check.verdict == "differs" and larger.check.rotation_span_ratio < 0.9


def test_auto_keeps_exact_poses_when_sfm_registers_low_texture_frames_from_too_few_points():
    """The issue's low-texture orbit at 96x64: SfM places all 12 frames, but from ~60 points each and ~3 deg off;
    auto keeps the requested (exact) poses and says why, instead of taking SfM's or refusing on its verdict."""
    from dimx_core.recon.poses import MIN_POINTS_PER_FRAME, rotation_angle_deg
    from dimx_core.recon.render import render_views
    from dimx_core.recon.synthetic import low_texture_ball_before_wall

    trajectory = orbit_rig(12, 30.0, 96, 64)
    frames = render_views(low_texture_ball_before_wall(), trajectory).numpy()
    choice = choose_poses(frames, trajectory, "auto")
    assert choice.source == "fixed" and choice.check is not None and choice.check.registered >= 6
    turned = rotation_angle_deg(np.einsum("nji,njk->nik", trajectory.c2w_opencv[:, :3, :3],
                                          choice.cameras.c2w_opencv[:, :3, :3]))
    assert turned.max() < 0.5
    assert any(f"at least {MIN_POINTS_PER_FRAME} are needed to trust its poses" in note for note in choice.notes)
    forced = choose_poses(frames, trajectory, "sfm")
    assert forced.source == "sfm" and any(note.startswith("WARNING") and "poses=sfm uses them" in note
                                          for note in forced.notes)


def test_auto_keeps_exact_poses_on_the_low_texture_orbit_at_320x240():
    """The issue's second low-texture case: at 320x240 SfM once replaced the exact poses by poses up to 9 degrees
    off. Measured now: SfM places 2 of the 12 frames, so auto keeps the trajectory (within 0.5 degrees) and says
    why."""
    from dimx_core.recon.poses import rotation_angle_deg
    from dimx_core.recon.render import render_views
    from dimx_core.recon.synthetic import low_texture_ball_before_wall

    trajectory = orbit_rig(12, 30.0, 320, 240)
    frames = render_views(low_texture_ball_before_wall(), trajectory).numpy()
    choice = choose_poses(frames, trajectory, "auto")
    turned = rotation_angle_deg(np.einsum("nji,njk->nik", trajectory.c2w_opencv[:, :3, :3],
                                          choice.cameras.c2w_opencv[:, :3, :3]))
    assert choice.source == "fixed" and turned.max() < 0.5
    assert any(note.startswith("poses: the requested trajectory") and "SfM" in note for note in choice.notes)
