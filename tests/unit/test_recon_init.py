"""Where the Gaussians start (recon/init.py): gsplat's trainer's cube of random points for the 3D fit, points every
camera sees for the 4D fit, both sized by their neighbours and coloured from the frames."""
import numpy as np
import pytest

from dimx_core.camera import Trajectory
from dimx_core.recon.init import (STARTS, cube_points, initial_gaussians, neighbour_scales, sample_colours,
                                  scene_depth, shared_frustum_points)
from dimx_core.recon.synthetic import orbit_rig


def dolly(frames: int, travel: float) -> Trajectory:
    """Cameras moving `travel` units straight ahead along +z, no pivot (a dolly-in without an orbit centre)."""
    poses = np.repeat(np.eye(4)[None], frames, axis=0)
    poses[:, 2, 3] = np.linspace(0.0, travel, frames)
    intrinsics = np.array([[40.0, 0.0, 32.0], [0.0, 40.0, 24.0], [0.0, 0.0, 1.0]])
    return Trajectory(poses, np.repeat(intrinsics[None], frames, axis=0), 64, 48)


def inside_each_camera(points: np.ndarray, cameras: Trajectory) -> np.ndarray:
    """(C, P): point p projects in front of camera c and inside its image (an independent pinhole projection)."""
    w2c = np.linalg.inv(cameras.c2w_opencv)
    local = np.einsum("cij,pj->cpi", w2c[:, :3, :3], points) + w2c[:, None, :3, 3]
    pixels = np.einsum("cij,cpj->cpi", cameras.intrinsics, local)[..., :2] / local[..., 2:]
    return (local[..., 2] > 0) & (pixels >= 0).all(-1) & (pixels < [cameras.width, cameras.height]).all(-1)


def test_the_cube_is_centred_on_the_pivot_with_gsplats_half_width_and_keeps_what_a_camera_sees():
    cameras = orbit_rig(49, 30.0, 64, 48)  # pivot (0, 0, 2), radius 2
    extent = np.linalg.norm(cameras.positions - cameras.positions.mean(axis=0), axis=1).max()  # 0.52 here
    half_width = 3.0 * 1.1 * extent
    assert half_width > 0.75 * scene_depth(cameras)  # gsplat's own cube here, not the floor
    drawn = np.array([0.0, 0.0, 2.0]) + np.random.default_rng(0).uniform(-half_width, half_width, (20_000, 3))
    seen = inside_each_camera(drawn, cameras).any(axis=0)
    assert 0.2 < seen.mean() < 0.8  # a real cut: the cube reaches well outside every view
    np.testing.assert_allclose(cube_points(cameras, 20_000, np.random.default_rng(0)), drawn[seen], rtol=1e-12)


def test_cameras_that_barely_move_get_a_cube_as_deep_as_the_scene_ahead_of_the_first():
    cameras = dolly(10, 0.02)
    depth = scene_depth(cameras)  # no pivot: at least 1 unit
    assert depth == 1.0
    drawn = np.array([0.0, 0.0, depth]) + np.random.default_rng(1).uniform(-0.75 * depth, 0.75 * depth, (20_000, 3))
    seen = inside_each_camera(drawn, cameras).any(axis=0)
    assert 0.1 < seen.mean() < 0.9
    np.testing.assert_allclose(cube_points(cameras, 20_000, np.random.default_rng(1)), drawn[seen], rtol=1e-12)


def test_a_cube_no_camera_sees_is_refused():
    away = dolly(4, 0.1)
    away.c2w_opencv[:, :3, :3] = np.diag([1.0, -1.0, -1.0])  # looking back, away from the scene centre ahead
    away.pivot = np.array([0.0, 0.0, 50.0])
    with pytest.raises(ValueError, match="no camera of this trajectory sees any of the starting points"):
        cube_points(away, 1000, np.random.default_rng(0))


def test_neighbour_scales_are_the_rms_distance_to_the_three_nearest_points():
    points = np.random.default_rng(2).normal(size=(300, 3))
    distances = np.linalg.norm(points[:, None] - points[None], axis=2)
    nearest = np.sort(distances, axis=1)[:, 1:4]
    np.testing.assert_allclose(neighbour_scales(points, 0.5), np.sqrt((nearest ** 2).mean(axis=1)), rtol=1e-12)
    two = np.array([[0.0, 0.0, 0.0], [0.0, 3.0, 4.0]])
    np.testing.assert_allclose(neighbour_scales(two, 0.5), [5.0, 5.0])
    np.testing.assert_allclose(neighbour_scales(two[:1], 0.5), [0.5])


def test_the_frustum_start_lies_where_every_camera_sees_it():
    cameras = orbit_rig(12, 30.0, 64, 48)
    points = shared_frustum_points(cameras, 500, np.random.default_rng(3))
    assert points.shape == (500, 3) and inside_each_camera(points, cameras).all()


@pytest.mark.parametrize("start", sorted(STARTS))
def test_random_starts_are_sized_by_neighbours_and_coloured_from_the_frames(start):
    cameras = orbit_rig(8, 20.0, 64, 48)
    frames = np.zeros((8, 48, 64, 3))
    frames[..., 0] = 1.0  # every frame is red
    scene = initial_gaussians(cameras, frames, count=400, sh_degree=3, seed=4, start=start)
    n = len(scene)
    assert (n == 400 if start == "frustum" else 100 < n < 400) and scene.sh.shape == (n, 16, 3)
    np.testing.assert_allclose(scene.log_scales.exp()[:, 0].numpy(),
                               neighbour_scales(scene.means.double().numpy(), 0.0), rtol=1e-5)
    colours = sample_colours(scene.means.double().numpy(), cameras, frames)
    seen = colours[:, 1] == 0.0  # points inside some frame are red; the others would be grey
    assert seen.all()
    np.testing.assert_allclose(scene.sh[seen, 0].numpy(), [[(1 - 0.5) / 0.28209479, -0.5 / 0.28209479,
                                                           -0.5 / 0.28209479]] * int(seen.sum()), rtol=1e-5)
    assert np.allclose(scene.sh[:, 1:].numpy(), 0.0) and np.allclose(scene.opacity_logits.sigmoid().numpy(), 0.1)


def test_sfm_points_keep_their_colours_and_a_single_point_still_starts():
    cameras = orbit_rig(8, 20.0, 64, 48)
    frames = np.full((8, 48, 64, 3), 0.25)
    points = np.array([[0.0, 0.0, 2.0], [0.1, 0.0, 2.0], [0.0, 0.2, 2.0], [0.0, 0.0, 2.3]])
    colours = np.array([[1.0, 0.0, 0.0]] * 4)
    scene = initial_gaussians(cameras, frames, count=99, sh_degree=0, seed=0, points=points, colours=colours)
    assert len(scene) == 4
    np.testing.assert_allclose(scene.means.numpy(), points, rtol=1e-6)
    np.testing.assert_allclose(scene.log_scales.exp()[:, 0].numpy(), neighbour_scales(points, 0.0), rtol=1e-5)
    assert float(scene.sh[0, 0, 0]) > 1.7  # red, not the frames' grey
    one = initial_gaussians(cameras, frames, count=99, sh_degree=0, seed=0, points=points[:1])
    np.testing.assert_allclose(one.log_scales.exp().numpy(), [[0.1 * scene_depth(cameras)] * 3], rtol=1e-5)


def test_an_unknown_start_is_refused_by_name():
    with pytest.raises(ValueError, match=r"start must be one of cube, frustum, got 'sphere'"):
        initial_gaussians(orbit_rig(4, 10.0, 32, 24), np.zeros((4, 24, 32, 3)), count=10, sh_degree=0, seed=0,
                          start="sphere")
