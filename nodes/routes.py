"""HTTP routes the pack's frontend uses, served by ComfyUI's PromptServer through nodes/host.py.

GET /dimensionx/trajectory (also under /api/...): the path the Trajectory Planner would plan, for drawing it in
the node before anything runs. Contract (the JS relies on it):
- query parameters: the Trajectory Planner's widget names (pattern, frames, magnitude, radius, elevation,
  fov_deg, width, height, easing) with their values as strings; a missing one takes the widget's default; an
  unknown one is an error; frames, width and height 0 are CogVideoX-5b-I2V's (the route sees no model);
- 200: dimx_core.camera.preview.preview_document: {"pattern", "director", "width", "height", "c2w_opencv":
  [4x4 per frame], "intrinsics": [3x3 per frame], "pivot": [x, y, z] | null}, OpenCV camera axes;
- 400: {"error": "<what was wrong, naming the parameter>"}.
"""
from __future__ import annotations

from typing import Mapping

from comfy_api.latest import io

from ..dimx_core.camera.preview import preview_document
from . import host
from .camera import TrajectoryPlanner

TRAJECTORY_ROUTE = "/dimensionx/trajectory"


def _parse(item, text: str):
    name = item.id
    if isinstance(item, io.Combo.Input):
        if text not in item.options:
            raise ValueError(f"{name} must be one of {', '.join(map(str, item.options))}, got {text!r}")
        return text
    kind, what = (int, "a whole number") if isinstance(item, io.Int.Input) else (float, "a number")
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name} must be {what}, got {text!r}") from None
    low, high = getattr(item, "min", None), getattr(item, "max", None)
    if (low is not None and value < low) or (high is not None and value > high):  # NaN passes on to the planner
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {text}")
    return value


def trajectory_preview(query: Mapping[str, str]) -> tuple[int, dict]:
    """(HTTP status, JSON body) for the planner's widget values as strings; the same code path as the node."""
    widgets = {item.id: item for item in TrajectoryPlanner.GET_SCHEMA().inputs
               if isinstance(item, (io.Int.Input, io.Float.Input, io.Combo.Input))}  # no sockets (the model)
    unknown = sorted(set(query) - set(widgets))
    try:
        if unknown:
            raise ValueError(f"unknown parameter(s) {', '.join(unknown)}; expected: {', '.join(widgets)}")
        values = {name: _parse(item, query[name]) if name in query else item.default for name, item in widgets.items()}
        trajectory = TrajectoryPlanner.execute(**values).result[0]
    except ValueError as err:
        return 400, {"error": str(err)}
    return 200, preview_document(trajectory)


def register() -> bool:
    """Add the routes to the running server; False where there is none (see host.add_get_route)."""
    return host.add_get_route(TRAJECTORY_ROUTE, trajectory_preview)
