"""Import the pack the way ComfyUI does (a package named after its folder), next to a real ComfyUI tree."""
import asyncio
import contextlib
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


@contextlib.contextmanager
def comfy_directories(root, names=("output", "temp", "input")):
    """ComfyUI's named folders (output, temp, input, user) pointed at new subfolders of `root`, restored after."""
    import folder_paths

    saved = {name: getattr(folder_paths, f"get_{name}_directory")() for name in names}
    for name in names:
        (root / name).mkdir()
        getattr(folder_paths, f"set_{name}_directory")(str(root / name))
    try:
        yield root
    finally:
        for name, folder in saved.items():
            getattr(folder_paths, f"set_{name}_directory")(folder)


@pytest.fixture
def comfy_folders(tmp_path, pack):
    """ComfyUI's input, output and temp folders pointed at a fresh temporary tree."""
    with comfy_directories(tmp_path) as root:
        yield root
