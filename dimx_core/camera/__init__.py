"""Camera paths: what an S-Director does to the camera, as poses and intrinsics per frame."""
from .trajectory import Trajectory

__all__ = ["Trajectory"]
