"""The trajectory preview route and the camera nodes inside a real ComfyUI server."""
import json
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest

from dimx_core.camera import plan
from dimx_core.camera.formats import read_transforms_json


def _get(comfy, path: str, query: dict) -> tuple[int, dict]:
    url = f"{comfy.url}{path}?{urllib.parse.urlencode(query)}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.mark.parametrize("prefix", ["", "/api"])
def test_trajectory_route_answers_planned_poses(comfy, prefix):
    query = {"pattern": "orbit_up", "frames": "13", "magnitude": "35", "radius": "2.5", "elevation": "0",
             "fov_deg": "55", "width": "720", "height": "480", "easing": "ease"}
    status, body = _get(comfy, prefix + "/dimensionx/trajectory", query)
    assert status == 200 and body["director"] == "orbit_up" and body["pivot"] == [0.0, 0.0, 2.5]
    expected = plan("orbit_up", 13, 35.0, radius=2.5, fov_deg=55.0, easing="ease")
    np.testing.assert_allclose(body["c2w_opencv"], expected.c2w_opencv, atol=1e-12)
    np.testing.assert_allclose(body["intrinsics"], expected.intrinsics, atol=1e-12)
    positions = np.array(body["c2w_opencv"])[:, :3, 3]
    np.testing.assert_allclose(np.linalg.norm(positions - body["pivot"], axis=1), 2.5, atol=1e-12)


def test_trajectory_route_refuses_a_bad_parameter_with_400(comfy):
    status, body = _get(comfy, "/dimensionx/trajectory", {"pattern": "orbit_left", "radius": "-3"})
    assert status == 400 and "radius must be between" in body["error"]
    status, body = _get(comfy, "/dimensionx/trajectory", {"pattern": "spin"})
    assert status == 400 and "pattern must be one of" in body["error"]


def test_planner_and_export_prompt_writes_a_transforms_json_under_output(comfy):
    prompt = {
        "1": {"class_type": "DimensionXTrajectoryPlanner",
              "inputs": {"pattern": "dolly_in", "frames": 9, "magnitude": 0.5, "radius": 2.0, "elevation": 0.0,
                         "fov_deg": 60.0, "width": 720, "height": 480, "easing": "linear"}},
        "2": {"class_type": "DimensionXTrajectoryExport",
              "inputs": {"trajectory": ["1", 0], "format": "transforms.json", "filename_prefix": "host_test/dolly"}},
    }
    outputs = comfy.run(prompt)
    folder = outputs["2"]["text"][0].split(" written to ")[1]
    back, _ = read_transforms_json(f"{folder}/transforms.json")
    assert folder.startswith(str(comfy.base / "output" / "host_test"))
    np.testing.assert_allclose(back.positions[:, 2], np.linspace(0, 0.5, 9), atol=1e-12)
