import pytest

from harness.assets import ensure_tiny_models
from harness.comfyhost import REPO, ComfyServer, comfy_root_and_python, prepare_instance

CACHE = REPO / ".cache"


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """One live ComfyUI (0.3.75, or COMFYUI_PATH) with the pack and the tiny models, for the whole session."""
    root, python = comfy_root_and_python(CACHE)
    base = prepare_instance(tmp_path_factory.mktemp("comfy"), ensure_tiny_models(CACHE))
    server = ComfyServer(root, base, python).start()
    yield server
    server.stop()
