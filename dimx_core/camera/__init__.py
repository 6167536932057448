"""Camera paths: what an S-Director does to the camera, as poses and intrinsics per frame.

plan() the path of one motion pattern; director_name() the LoRA that produces it; patterns.TABLE the
motions and their director names; choose_director() for sparse views; split_motion() for long paths;
camera_bounds() the PCA box of camera positions; formats / conventions for other tools' files and axes.
"""
from .articulated import ArticulatedPath, chain, split_motion
from .bounds import CameraBounds, camera_bounds
from .director_choice import DirectorScore, RelativeMotion, choose_director
from .patterns import PATTERNS, director_name
from .planner import EASINGS, plan
from .trajectory import Trajectory

__all__ = ["ArticulatedPath", "CameraBounds", "DirectorScore", "EASINGS", "PATTERNS", "RelativeMotion", "Trajectory",
           "camera_bounds", "chain", "choose_director", "director_name", "plan", "split_motion"]
