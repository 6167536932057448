import numpy as np
import pytest

from dimx_core.camera import Trajectory


def _identity(n):
    return np.tile(np.eye(4), (n, 1, 1)), np.tile(np.diag([100.0, 100.0, 1.0]), (n, 1, 1))


def test_a_valid_trajectory_keeps_its_poses():
    poses, k = _identity(3)
    poses[1, :3, 3] = [0.5, 0, 0]
    path = Trajectory(poses, k, 720, 480, pattern="truck_right")
    assert len(path) == 3 and path.positions[1].tolist() == [0.5, 0, 0]


@pytest.mark.parametrize("change, message", [
    (lambda p, k: (p[:, :3], k), "shape"),
    (lambda p, k: (p, k[:1]), "intrinsics"),
    (lambda p, k: (np.where(np.eye(4) == 1, np.nan, p), k), "NaN"),
    (lambda p, k: (p * np.array([1, 1, -1, 1])[:, None], k), "proper rotations"),
])
def test_bad_trajectories_are_refused(change, message):
    poses, k = change(*_identity(2))
    with pytest.raises(ValueError, match=message):
        Trajectory(poses, k, 720, 480)
