"""A live ComfyUI for the browser tests (the pack, the tiny models, and a test pack that reports known splat
scenes), and a `browser` fixture that runs a scenario of tests/browser/scenarios in a fresh chromium.

Screenshots land in artifacts/browser/<ComfyUI version>/<mode>/ (kept by CI). The suite runs against ComfyUI
0.3.75 by default and against any other checkout with COMFYUI_PATH, like the host tests.
"""
import json
import urllib.request
from pathlib import Path

import pytest

from harness.assets import ensure_tiny_models
from harness.chromium import browser_missing, run_scenario
from harness.comfyhost import PACK_DIR_NAME, REPO, ComfyServer, comfy_root_and_python, prepare_instance
from harness.workflows import load_workflow
from tests.browser.support import MODES, WORKFLOWS

CACHE = REPO / ".cache"
HERE = Path(__file__).parent
SCENARIOS = HERE / "scenarios"
ARTIFACTS = REPO / "artifacts" / "browser"
RUN_FROM_PAGE = "check_install"


@pytest.fixture(scope="session")
def page_host(tmp_path_factory):
    reason = browser_missing()
    if reason:
        pytest.fail(reason)
    root, python = comfy_root_and_python(CACHE)
    base = prepare_instance(tmp_path_factory.mktemp("comfy-browser"), ensure_tiny_models(CACHE))
    (base / "custom_nodes" / "dimx_test_scenes").symlink_to(HERE / "scene_pack", target_is_directory=True)
    server = ComfyServer(root, base, python).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def host_label(page_host):
    with urllib.request.urlopen(page_host.url + "/system_stats") as response:
        system = json.load(response)["system"]
    return f"comfyui-{system['comfyui_version']}"


@pytest.fixture(scope="session")
def browser(page_host, host_label):
    """browser(scenario, mode, **request) -> the scenario's JSON result."""
    def run(scenario: str, mode: str, timeout: float = 240.0, **request) -> dict:
        out = ARTIFACTS / host_label / mode
        return run_scenario(SCENARIOS / f"{scenario}.mjs",
                            {"url": page_host.url, "out": str(out), "pack": PACK_DIR_NAME, "vueNodes": mode == "vue",
                             **request}, timeout)
    return run



@pytest.fixture(scope="session", params=MODES)
def workflow_tour(request, browser):
    """Every example workflow opened from the template browser in one page, and check_install run from it."""
    workflows = [{"name": path.stem, "nodeCount": len(load_workflow(path)["nodes"])} for path in WORKFLOWS]
    return browser("workflows", request.param, workflows=workflows, run=RUN_FROM_PAGE,
                   timeout=120 + 30 * len(workflows))
