"""Shared synthetic ground truth for the reconstruction tests (rendered once per test session)."""
import functools

import pytest
import torch

from dimx_core.recon.render import render_views
from dimx_core.recon.synthetic import ball_before_wall, orbit_rig


@functools.lru_cache(maxsize=None)
def orbit_frames(width: int, height: int, frames: int, degrees: float = 30.0, gaussians: int = 1000):
    """(frames tensor, the trajectory they were rendered along) for the ball-before-wall scene."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        trajectory = orbit_rig(frames, degrees, width, height)
        return render_views(ball_before_wall(gaussians), trajectory), trajectory
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensor ops on a shared 2-core machine run several times faster on one thread."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
