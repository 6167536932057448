"""The pack inside a real ComfyUI server, driven over HTTP like the page drives it."""
import pytest

from harness.comfyhost import REPO, ComfyError, ComfyServer, comfy_root_and_python, prepare_instance
from harness.workflows import load_workflow, missing_node_types, ui_to_api, unavailable_choices
from tests.expected_nodes import expected_nodes

WORKFLOWS = sorted((REPO / "workflows").glob("*.json"))


def test_server_lists_every_pack_node_with_its_inputs(comfy):
    info = comfy.object_info()
    core_splat = any("SPLAT" in node.get("output", []) for name, node in info.items()
                     if not name.startswith("DimensionX"))
    native_cogvideox = "cogvideox" in info["CLIPLoader"]["input"]["required"]["type"][0]
    expected = expected_nodes(core_splat, native_cogvideox)
    assert {name for name in info if name.startswith("DimensionX")} == expected
    for name in expected:
        assert info[name]["category"].startswith("DimensionX/")
        assert "input" in info[name] and info[name]["description"]


def test_pack_info_prompt_runs(comfy):
    outputs = comfy.run({"1": {"class_type": "DimensionXPackInfo", "inputs": {}}})
    text = outputs["1"]["text"][0]
    assert text.startswith("DimensionX ") and str(comfy.base / "models" / "dimensionx") in text


def test_a_bad_prompt_is_refused_with_the_servers_reason(comfy):
    with pytest.raises(ComfyError, match="refused"):
        comfy.queue({"1": {"class_type": "DimensionXNoSuchNode", "inputs": {}}})


@pytest.mark.parametrize("path", WORKFLOWS, ids=[p.stem for p in WORKFLOWS])
def test_example_workflow_runs_to_success(comfy, path):
    outputs = comfy.run(ui_to_api(load_workflow(path), comfy.object_info()))
    assert outputs, f"{path.name} produced no outputs"


def test_a_pack_that_fails_to_import_stops_the_harness(tmp_path):
    broken = tmp_path / "broken_pack"
    broken.mkdir()
    (broken / "__init__.py").write_text("raise ImportError('simulated missing dependency')\n")
    root, python = comfy_root_and_python(REPO / ".cache")
    server = ComfyServer(root, prepare_instance(tmp_path / "base", pack=broken), python)
    with pytest.raises(ComfyError, match="did not load"):
        server.start()
    assert server.process.poll() is not None


NEWEST_HOST_WORKFLOWS = sorted((REPO / "workflows" / "newest-host").glob("*.json"))
MODEL_FILE_SUFFIXES = (".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".gguf")


@pytest.mark.parametrize("path", NEWEST_HOST_WORKFLOWS, ids=[p.stem for p in NEWEST_HOST_WORKFLOWS])
def test_newest_host_workflow_runs_where_the_host_has_its_core_nodes(comfy, path):
    """Example workflows built on core nodes of newer ComfyUI releases (not in the template folder, which every
    supported host lists): run where the host has those nodes and the model files they load, skipped naming what
    is missing elsewhere."""
    workflow, info = load_workflow(path), comfy.object_info()
    missing = missing_node_types(workflow, info)
    if missing:
        pytest.skip(f"this ComfyUI lacks the core nodes {', '.join(missing)} that {path.name} uses")
    prompt = ui_to_api(workflow, info)
    unavailable = unavailable_choices(prompt, info)
    # anything else offered nowhere is a widget value read out of order
    assert all(value.endswith(MODEL_FILE_SUFFIXES) for _, _, value in unavailable), unavailable
    if unavailable:  # e.g. CogVideoX-5b-I2V for core's loaders, which build only the published sizes, not the tiny one
        pytest.skip(f"{path.name} needs model files the test models do not hold: "
                    + ", ".join(f"{kind}.{name}={value}" for kind, name, value in unavailable))
    before = set((comfy.base / "output").rglob("*"))
    comfy.run(prompt)
    written = sorted(set((comfy.base / "output").rglob("*.*")) - before)
    assert written, f"{path.name} wrote nothing under output/"
    if path.stem == "core_splat_both_ways":  # core's PLY and the pack's .spz of the way back hold the same scene
        from dimx_core.recon.files import load_scene

        original = load_scene(REPO / "workflows" / "inputs" / "dimensionx_example_ball.ply")
        by_core = next(p for p in written if p.name.startswith("core_splat") and p.suffix == ".ply")
        back = next(p for p in written if p.name.startswith("from_core_splat") and p.suffix == ".spz")
        for scene in (load_scene(by_core), load_scene(back)):
            assert len(scene) == len(original)
            assert (scene.means - original.means).abs().max() < 1e-2  # spz stores positions in fixed point
