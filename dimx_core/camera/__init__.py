"""Camera paths: what an S-Director does to the camera, as poses and intrinsics per frame.

plan() the path of one motion pattern; director_name() the LoRA that produces it; patterns.TABLE the
motions and their director names; formats / conventions for other tools' files and axes.
"""
from .patterns import PATTERNS, director_name
from .planner import EASINGS, plan
from .trajectory import Trajectory

__all__ = ["EASINGS", "PATTERNS", "Trajectory", "director_name", "plan"]
