"""The splat viewer inside a node, on scenes with known content: a red cluster at x=-1 and a blue one at x=+1,
4 units in front of the origin (OpenCV axes). A test-only node reports them as `dimx_scene`, so this also pins
that the viewer attaches to any node whose result carries a scene. Pixel positions are checked against the
pinhole projection of the viewer's documented starting camera."""
import math

import numpy as np
import pytest

from tests.browser.pixels import centroid, dominant, load, mask, mean_difference
from tests.browser.scene_pack.scenes import LEFT, RIGHT, read_xyz
from tests.browser.support import MODES

CAP_SETTING, CAP = "DimensionX.Viewer.MaxSplats", 20_000
BACKGROUND = (28, 28, 33)
CAMERA_RGB = (89, 204, 255)         # trajectory cameras, 0.35/0.8/1.0
FIRST_CAMERA_RGB = (255, 140, 26)   # the first one, 1.0/0.55/0.1
DEFAULT_FOV_Y = math.radians(50)
CASES = [
    {"name": "two-clusters", "kind": "3d", "cameras": False, "splats": 400, "interact": True},
    {"name": "camera-arc", "kind": "3d", "cameras": True, "splats": 400, "zoomOut": True},
    {"name": "time-steps", "kind": "4d", "cameras": False, "splats": 400},
    {"name": "over-cap", "kind": "3d", "cameras": False, "splats": 30_000},
    {"name": "missing-file", "kind": "missing", "cameras": False, "splats": 1},
]
MISSING = "no_such_scene.ply"
RED, BLUE = 0, 2


@pytest.fixture(scope="module", params=MODES)
def viewer(request, browser):
    result = browser("viewer", request.param, cases=CASES, settings={CAP_SETTING: CAP}, timeout=400)
    assert result["webgl"] and result["webgl"].startswith("WebGL 2.0")
    # The browser logs the 404 of the deliberately missing file; nothing else may reach the console.
    assert [e for e in result["errors"] if MISSING not in e.get("where", "")] == [], "console errors"
    return {case["name"]: case for case in result["cases"]}


def ready(case):
    assert case["state"] == "ready", f"viewer ended in state {case['state']}: {case['info']}"
    return case


def project(points, eye, focal, size):
    """Pixels of world points seen by a camera at `eye` looking along +z with world -y up (OpenCV world)."""
    points = np.asarray(points, dtype=float) - eye
    width, height = size
    return np.stack([width / 2 + focal * points[:, 0] / points[:, 2],
                     height / 2 + focal * points[:, 1] / points[:, 2]], axis=1)


def default_view(xyz, size):
    """The viewer's starting camera without trajectory cameras: the 5-95 % box of the centres, seen whole."""
    low, high = np.percentile(xyz, 5, axis=0), np.percentile(xyz, 95, axis=0)
    radius = 0.5 * np.linalg.norm(high - low)
    eye = (low + high) / 2 - np.array([0.0, 0.0, radius / math.sin(DEFAULT_FOV_Y / 2)])
    return eye, size[1] / 2 / math.tan(DEFAULT_FOV_Y / 2)


def blobs(image):
    """Centroids of the red and the blue splats (strict enough to leave out the orange first-camera frame)."""
    return centroid(dominant(image, RED, margin=150)), centroid(dominant(image, BLUE, margin=150))


def assert_near(found, expected, tolerance, what):
    distance = math.dist(found, expected)
    assert distance <= tolerance, f"{what} at {found}, expected {expected} (off by {distance:.1f} px)"


def test_red_left_blue_right_where_the_starting_camera_projects_them(viewer, page_host):
    case = ready(viewer["two-clusters"])
    image = load(case["shots"]["initial"])
    size = (image.shape[1], image.shape[0])
    xyz = read_xyz(page_host.base / "output" / "dimx_test" / "scene_3d_400.ply")
    expected_red, expected_blue = project([LEFT, RIGHT], *default_view(xyz, size), size)
    red, blue = blobs(image)
    assert_near(red, expected_red, 0.03 * size[0], "red cluster")
    assert_near(blue, expected_blue, 0.03 * size[0], "blue cluster")
    # The splats cover their clusters' projections, and the background shows everywhere else.
    for (x, y), channel in ((expected_red, RED), (expected_blue, BLUE)):
        assert dominant(image[int(y) - 2:int(y) + 3, int(x) - 2:int(x) + 3], channel).all()
    width, height = size
    for x, y in ((width // 2, height // 2), (8, height - 8), (width - 8, height - 8), (width // 2, height - 8)):
        assert mask(image[y - 2:y + 3, x - 2:x + 3], BACKGROUND, tolerance=12).all(), f"no background at {x},{y}"
    assert case["info"]["splats"] == "800"


def test_pan_zoom_orbit_and_reset_move_the_view_and_leave_the_graph_alone(viewer):
    case = ready(viewer["two-clusters"])
    shots = {name: load(path) for name, path in case["shots"].items()}
    initial, panned = blobs(shots["initial"]), blobs(shots["panned"])
    shift = np.subtract(panned[1], initial[1])  # the blue cluster stays whole in view; the red one leaves it
    assert_near(shift, (-80, 40), 4, "a right-drag by (-80, 40) px moved the scene")
    (red, blue), (zoomed_red, zoomed_blue) = initial, blobs(shots["zoomed"])
    assert zoomed_blue[0] - zoomed_red[0] > 1.3 * (blue[0] - red[0]), "the wheel did not zoom in"
    assert mean_difference(shots["orbited"], shots["zoomed"]) > 1.0, "dragging did not orbit"
    orbited_red, orbited_blue = blobs(shots["orbited"])
    assert abs(orbited_blue[0] - orbited_red[0]) < 0.9 * (zoomed_blue[0] - zoomed_red[0]), \
        "orbiting about the vertical axis should foreshorten the red-blue separation"
    assert mean_difference(shots["reset"], shots["initial"]) < 1.0, "Reset view did not return to the start"
    assert case["graphAfter"] == case["graphBefore"], "mouse use in the viewer moved the graph canvas or node"


def test_trajectory_cameras_set_the_starting_view_and_show_as_frustums(viewer):
    case = ready(viewer["camera-arc"])
    image = load(case["shots"]["initial"])
    size = (image.shape[1], image.shape[0])
    # Camera 0 sits at the origin looking along +z; fl_y = 500 px for a 480 px high image.
    focal = size[1] / 2 * 500.0 / 240.0
    expected_red, expected_blue = project([LEFT, RIGHT], np.zeros(3), focal, size)
    red, blue = blobs(image)
    assert_near(red, expected_red, 0.03 * size[0], "red cluster")
    assert_near(blue, expected_blue, 0.03 * size[0], "blue cluster")
    assert "5 cameras" in case["info"]["status"]
    zoomed_out = load(case["shots"]["zoomedOut"])
    assert mask(zoomed_out, CAMERA_RGB, tolerance=40).sum() > 60, "the other cameras' frustums are not drawn"
    assert mask(zoomed_out, FIRST_CAMERA_RGB, tolerance=40).sum() > 12, "the first camera is not highlighted"


def test_time_slider_and_play_step_through_a_4d_scene(viewer):
    case = ready(viewer["time-steps"])
    first, second = load(case["shots"]["initial"]), load(case["shots"]["step1"])
    red, blue = blobs(first)
    assert red[0] < blue[0], "time step 0 should have red on the left"
    red, blue = blobs(second)
    assert red[0] > blue[0], "time step 1 should have red on the right"
    assert case["timeLabel"].startswith("t = 1")
    assert case["playedBackToStart"] and case["playingAfterPause"] == "0"


def test_a_large_scene_streams_in_and_is_thinned_evenly_under_the_cap_with_a_notice(viewer):
    case = ready(viewer["over-cap"])
    partial = sorted({count for count in case["splatCounts"] if 0 < count < CAP})
    assert len(partial) >= 2, f"the view did not show the scene while it loaded: {case['splatCounts']}"
    assert case["info"]["splats"] == str(CAP)
    assert f"Showing {CAP:,} of {60_000:,} splats" in case["info"]["notice"]
    red, blue = blobs(load(case["shots"]["initial"]))  # both clusters survive the thinning
    assert red[0] < blue[0]


def test_a_scene_that_cannot_be_read_shows_why_in_the_node(viewer):
    case = viewer["missing-file"]
    assert case["state"] == "error"
    assert case["info"]["error"].startswith("Cannot show the scene: the server answered 404")
    assert MISSING in case["info"]["error"]
