"""Articulated long paths, the PCA camera box, and GenXD's camera parameters on the pack's model."""
import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dimx_core.camera import camera_bounds, chain, plan, split_motion
from dimx_core.camera.genxd import genxd_trajectory


@pytest.mark.parametrize("pattern, total, max_clip, clips", [
    ("orbit_left", 120.0, 30.0, 4), ("orbit_up", 50.0, 20.0, 3), ("orbit_360", 360.0, 45.0, 8),
    ("pan_right", 90.0, 40.0, 3), ("truck_left", 3.0, 1.0, 3), ("roll_left", 30.0, 30.0, 1),
])
def test_a_chain_of_clips_equals_the_direct_path(pattern, total, max_clip, clips):
    frames = 13
    path = split_motion(pattern, total, max_clip, frames_per_clip=frames, radius=2.5, elevation=15.0)
    assert len(path.clips) == clips
    direct_pattern = "orbit_left" if pattern == "orbit_360" else pattern
    direct = plan(direct_pattern, clips * (frames - 1) + 1, total, radius=2.5, elevation=15.0)
    for index, clip in enumerate(path.clips):
        np.testing.assert_array_equal(clip.c2w_opencv[0], np.eye(4))  # what the director sees: its own start
        np.testing.assert_allclose(path.starts[index] @ clip.c2w_opencv,
                                   direct.c2w_opencv[index * (frames - 1): (index + 1) * (frames - 1) + 1], atol=1e-6)
        np.testing.assert_allclose(clip.meta["start_c2w_opencv"], path.starts[index])
        if index:  # every clip starts at the previous clip's last frame
            previous_end = path.starts[index - 1] @ path.clips[index - 1].c2w_opencv[-1]
            np.testing.assert_allclose(path.starts[index], previous_end)
    combined = path.combined()
    expected = direct.c2w_opencv[:-1] if pattern == "orbit_360" else direct.c2w_opencv  # a loop drops its repeat
    np.testing.assert_allclose(combined.c2w_opencv, expected, atol=1e-6)
    if direct.pivot is not None:
        np.testing.assert_allclose(combined.pivot, direct.pivot, atol=1e-9)


def test_mixed_segments_chain_and_keep_a_shared_pivot():
    path = chain([("orbit_left", 40.0), ("orbit_up", 20.0)], frames_per_clip=9, radius=3.0)
    combined = path.combined()
    assert combined.pattern == "articulated" and combined.director is None and len(combined) == 17
    np.testing.assert_allclose(np.linalg.norm(combined.positions - combined.pivot, axis=1), 3.0, atol=1e-12)
    assert chain([("truck_left", 0.5), ("orbit_up", 10.0)], 5).combined().pivot is None


@pytest.mark.parametrize("call, message", [
    (lambda: split_motion("orbit_left", 90.0, 0.0), "max_clip must be > 0"),
    (lambda: split_motion("dolly_in", 3.0, 1.0, radius=2.0), "would reach or pass the pivot"),
    (lambda: split_motion("orbit_left", 90.0, 30.0, frames_per_clip=1),
     "frames_per_clip must be a whole number from 2 to 1024"),
    (lambda: chain([]), "at least one"),
    (lambda: chain([("orbit_360", 360.0)]), "closed loop"),
    (lambda: chain([("orbit_left", 30.0)], easing="ease"), "constant speed"),
])
def test_bad_long_paths_are_refused(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_camera_bounds_recover_the_box_the_cameras_were_placed_in():
    axes = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix().T  # rows: the box axes
    half = np.array([4.0, 1.5, 0.3])
    grid = np.stack(np.meshgrid(*(np.linspace(-1, 1, n) for n in (11, 7, 5)), indexing="ij"), -1).reshape(-1, 3)
    center = np.array([1.0, -2.0, 0.5])
    bounds = camera_bounds(center + (grid * half) @ axes)  # a symmetric grid: its principal axes are exact
    np.testing.assert_allclose(np.abs(np.sum(bounds.axes * axes, axis=1)), 1.0, atol=1e-9)
    np.testing.assert_allclose(bounds.center, center, atol=1e-12)
    np.testing.assert_allclose(bounds.size, 2 * half, atol=1e-9)
    np.testing.assert_allclose(bounds.spread, half * np.sqrt([np.mean(np.linspace(-1, 1, n) ** 2) for n in (11, 7, 5)]))
    assert np.linalg.det(bounds.axes) == pytest.approx(1.0)
    corners = bounds.corners()
    np.testing.assert_allclose(np.sort(np.linalg.norm(corners - corners.mean(0), axis=1)),
                               [np.linalg.norm(half)] * 8, atol=1e-3)
    assert "major axis" in bounds.as_text()


def test_camera_bounds_of_a_planned_orbit_lie_in_its_plane():
    path = plan("orbit_360", 72, radius=2.0)
    bounds = camera_bounds(path.positions)
    assert bounds.size[2] == pytest.approx(0.0, abs=1e-9)  # a flat ring: no extent off its plane
    assert abs(bounds.axes[2] @ [0, 1, 0]) == pytest.approx(1.0)  # ... which is horizontal
    np.testing.assert_allclose(bounds.size[:2], 4.0, atol=0.01)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        camera_bounds(np.zeros((0, 3)))


def _genxd_reference(azimuths, elevations, radius):
    """GenXD's convention written from its description: z-up world, azimuth from +y towards +x, look at 0."""
    poses = []
    for azimuth, elevation in zip(np.radians(azimuths), np.radians(elevations)):
        position = radius * np.array([np.cos(elevation) * np.sin(azimuth), np.cos(elevation) * np.cos(azimuth),
                                      np.sin(elevation)])
        forward = -position / radius
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        c2w = np.eye(4)
        c2w[:3, :3] = np.column_stack([right, np.cross(forward, right), forward])  # OpenCV: x right, y down
        c2w[:3, 3] = position
        poses.append(c2w)
    poses = np.array(poses)
    return np.linalg.inv(poses[0]) @ poses


def test_genxd_orbit_mode_maps_onto_an_orbit_pattern():
    path = genxd_trajectory("orbit", elevation=20.0, azimuth_range=(-30, 30), radius=2.0, focal=1.0938, frames=16)
    assert path.pattern == "orbit_left" and path.director == "orbit_left"
    reference = _genxd_reference(np.linspace(-30, 30, 16, endpoint=False), [20.0] * 16, 2.0)
    np.testing.assert_allclose(path.c2w_opencv, reference, atol=1e-9)
    assert path.intrinsics[0, 0, 0] == pytest.approx(1.0938 * 720)
    assert genxd_trajectory("orbit", 0.0, (30, -30), frames=8).pattern == "orbit_right"
    assert genxd_trajectory("orbit", 10.0, (0, 360), frames=24).pattern == "orbit_360"


def test_genxd_forward_mode_reproduces_its_sweep():
    path = genxd_trajectory("forward", elevation=10.0, azimuth_range=(-20, 20), radius=2.5, frames=16)
    azimuths = np.concatenate([np.linspace(-20, 20, 8, endpoint=False), np.linspace(20, -20, 8, endpoint=False)])
    elevations = np.concatenate([np.linspace(a, b, 4, endpoint=False) for a, b in ((0, 10), (10, 0), (0, -10),
                                                                                    (-10, 0))])
    azimuths[0] = elevations[0] = 0.0
    np.testing.assert_allclose(path.c2w_opencv, _genxd_reference(azimuths, elevations, 2.5), atol=1e-9)
    assert path.pattern == "genxd_forward" and path.director is None
    with pytest.raises(ValueError, match="multiple of 4"):
        genxd_trajectory("forward", 10.0, (-20, 20), frames=49)
    with pytest.raises(ValueError, match="mode must be one of orbit, forward"):
        genxd_trajectory("spiral", 10.0, (-20, 20))
