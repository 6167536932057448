"""The trajectory preview inside the DimensionX Trajectory Planner node: the drawing function alone on a known
path, and the extension inside the real frontend asking the pack's route (GET /dimensionx/trajectory)."""
import json
import math
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from tests.browser.pixels import load, mask
from tests.browser.support import MODES

PLANNER = "DimensionXTrajectoryPlanner"
FIRST_RGB, CAMERA_RGB, PIVOT_RGB, PATH_RGB = (255, 140, 30), (80, 190, 255), (235, 70, 235), (210, 210, 210)
BACKGROUND = (24, 26, 30)
ROUTE_KEYS = {"pattern", "director", "width", "height", "c2w_opencv", "intrinsics", "pivot"}
def orbit(frames: int, degrees: float = 30.0, radius: float = 2.0) -> dict:
    """What the route answers for an orbit to the left about a pivot 2 units ahead (OpenCV cameras)."""
    pivot = np.array([0.0, 0.0, radius])
    poses = []
    for angle in np.radians(np.linspace(0.0, degrees, frames)):
        rotation = np.array([[math.cos(angle), 0, -math.sin(angle)], [0, 1, 0], [math.sin(angle), 0, math.cos(angle)]])
        c2w = np.eye(4)
        c2w[:3, :3] = rotation
        c2w[:3, 3] = pivot - rotation[:, 2] * radius  # looking at the pivot along its +z axis
        poses.append(c2w.tolist())
    intrinsics = [[[500.0, 0, 360.0], [0, 500.0, 240.0], [0, 0, 1]]] * frames
    return {"pattern": "orbit_left", "director": "orbit_left.safetensors", "width": 720, "height": 480,
            "c2w_opencv": poses, "intrinsics": intrinsics, "pivot": pivot.tolist()}


def colour_near(image, point, rgb, radius=3, tolerance=45):
    x, y = (int(round(v)) for v in point)
    return mask(image[y - radius:y + radius + 1, x - radius:x + radius + 1], rgb, tolerance).any()


def assert_drawn(shot):
    """The first camera, the pivot and the path show where the drawing says, on the preview background."""
    image = load(shot["file"])
    assert colour_near(image, shot["centres"][0], FIRST_RGB), "the first camera is not highlighted at its centre"
    assert colour_near(image, shot["pivot"], PIVOT_RGB), "the pivot is not marked"
    middle = shot["centres"][len(shot["centres"]) // 2]
    assert colour_near(image, middle, PATH_RGB) or colour_near(image, middle, CAMERA_RGB), "no path mid-way"
    assert mask(image, CAMERA_RGB, 45).sum() > 100, "no camera frustums"
    height, width = image.shape[:2]
    corner = image[height - 16:height - 8, width - 16:width - 8]  # inside the rounded corner
    assert mask(corner, BACKGROUND, 10).all(), "no background in the corner"


def test_drawing_shows_path_frustums_first_camera_and_pivot(browser):
    result = browser("trajectory", "classic", part="draw", trajectory=orbit(25))
    assert result["errors"] == []
    assert_drawn({"file": result["shot"], **result["projected"]})
    centres = result["projected"]["centres"]
    assert math.dist(centres[0], centres[-1]) > 60, "a 30 degree orbit should spread across the preview"


def planner_definition(url: str) -> dict | None:
    with urllib.request.urlopen(url + "/object_info") as response:
        return json.load(response).get(PLANNER)


def default_query(definition: dict) -> str:
    """The planner's widget defaults as the route's query (what a freshly added node asks)."""
    params = {}
    for name, spec in {**definition["input"].get("required", {}), **definition["input"].get("optional", {})}.items():
        kind, options = spec[0], spec[1] if len(spec) > 1 else {}
        if isinstance(kind, list) and kind:
            params[name] = options.get("default", kind[0])
        elif kind == "COMBO" and options.get("options"):
            params[name] = options.get("default", options["options"][0])
        elif kind in ("INT", "FLOAT", "STRING", "BOOLEAN") and "default" in options:
            params[name] = options["default"]
    return urllib.parse.urlencode({k: str(v).lower() if isinstance(v, bool) else v for k, v in params.items()})


@pytest.mark.parametrize("mode", MODES)
def test_live_planner_route_and_preview(browser, page_host, mode):
    definition = planner_definition(page_host.url)
    with urllib.request.urlopen(f"{page_host.url}/dimensionx/trajectory?{default_query(definition)}") as response:
        defaults = json.load(response)
    assert ROUTE_KEYS <= set(defaults) and len(defaults["c2w_opencv"]) == len(defaults["intrinsics"]) > 1
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(page_host.url + "/dimensionx/trajectory?pattern=not-a-valid-value")
    assert refused.value.code == 400 and json.load(refused.value)["error"]
    result = browser("trajectory", mode, part="live")
    assert result["firstState"] == "drawn", result.get("errorText")
    names = {w["name"] for w in result["widgets"] if isinstance(w["value"], (int, float, str, bool))}
    assert names - {"dimx_trajectory_preview", "control_after_generate"} <= set(result["queries"][0])
    assert_drawn(result["shots"]["initial"])
    assert result["shots"]["stepped"]["query"] != result["shots"]["initial"]["query"]
    assert result["badState"] == "error" and result["errorText"].startswith("Cannot plan this path:")
