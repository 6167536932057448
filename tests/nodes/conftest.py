"""Import the pack the way ComfyUI does (a package named after its folder), next to a real ComfyUI tree."""
import asyncio
import importlib.util
import sys

import pytest

from harness.comfyhost import REPO, comfy_root_and_python

PACK_NAME = "dimensionx_under_test"


@pytest.fixture(scope="session")
def pack():
    root, _ = comfy_root_and_python(REPO / ".cache")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from comfy.cli_args import args

    args.cpu = True  # as `main.py --cpu`: these tests run where no GPU may be
    spec = importlib.util.spec_from_file_location(PACK_NAME, REPO / "__init__.py",
                                                  submodule_search_locations=[str(REPO)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK_NAME] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def node_classes(pack):
    extension = asyncio.run(pack.comfy_entrypoint())
    return {node.GET_SCHEMA().node_id: node for node in asyncio.run(extension.get_node_list())}


@pytest.fixture
def comfy_folders(tmp_path, pack):
    """ComfyUI's input, output and temp folders pointed at a fresh temporary tree."""
    import folder_paths

    saved = (folder_paths.get_output_directory(), folder_paths.get_temp_directory(), folder_paths.get_input_directory())
    for name in ("output", "temp", "input"):
        (tmp_path / name).mkdir()
    folder_paths.set_output_directory(str(tmp_path / "output"))
    folder_paths.set_temp_directory(str(tmp_path / "temp"))
    folder_paths.set_input_directory(str(tmp_path / "input"))
    yield tmp_path
    folder_paths.set_output_directory(saved[0])
    folder_paths.set_temp_directory(saved[1])
    folder_paths.set_input_directory(saved[2])
