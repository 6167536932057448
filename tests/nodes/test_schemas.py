"""What every node promises a ComfyUI user: a prefixed id, a category, a description, tooltips, a help page."""
import ast

import pytest

from harness.comfyhost import REPO
from tests.expected_nodes import expected_nodes


def test_entry_module_exports_only_the_v3_entrypoint():
    tree = ast.parse((REPO / "__init__.py").read_text())
    names = {target.id for node in tree.body if isinstance(node, ast.Assign) for target in node.targets}
    names |= {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    assert names == {"WEB_DIRECTORY", "comfy_entrypoint"}


def test_extension_lists_exactly_the_expected_nodes(node_classes, pack):
    features = pack.nodes.host.host_features()
    assert set(node_classes) == expected_nodes(features["core_splat_type"], features["native_cogvideox"])


def test_nodes_needing_a_host_feature_are_listed_only_where_the_host_has_it(pack):
    nodes = pack.nodes
    needs = nodes.NEEDS_HOST_FEATURE
    everything = {feature: True for feature in set(needs.values())}
    bare = {feature: False for feature in everything}
    assert nodes.available_nodes(everything) == nodes.NODES  # every node is defined on every host
    assert set(nodes.NODES) - set(nodes.available_nodes(bare)) == {
        nodes.camera.TrajectoryToLoad3DCamera, nodes.camera.Load3DCamerasToViews, nodes.recon.GaussiansToSplat,
        nodes.recon.SplatToGaussians, nodes.directors.ApplyDirectorToModel}
    only_cameras = nodes.available_nodes(bare | {"load3d_camera": True})
    assert nodes.recon.GaussiansToSplat not in only_cameras and nodes.camera.Load3DCamerasToViews in only_cameras
    assert set(needs.values()) <= set(nodes.host.host_features())


SAMPLER_WIDGETS = ["model", "image", "prompt", "negative_prompt", "steps", "guidance", "use_dynamic_cfg", "scheduler",
                   "seed", "positive", "negative"]  # saved workflows depend on these names and this order


@pytest.mark.parametrize("node_id", ["DimensionXDirectorSampler", "DimensionXSwitchOnceSampler",
                                     "DimensionXArticulatedVideo", "DimensionXMultiViewGenerate"])
def test_samplers_share_the_sampler_inputs_in_their_saved_order(node_classes, node_id):
    names = [item.id for item in node_classes[node_id].GET_SCHEMA().inputs]
    fragment = [name for name in SAMPLER_WIDGETS if node_id != "DimensionXMultiViewGenerate" or name != "image"]
    assert names[:len(fragment)] == fragment and "speed" in names


def test_sampler_inputs_outside_the_fragment_are_a_named_error(pack):
    values = dict(model=None, prompt="", negative_prompt="", stpes=2, guidance=6.0, use_dynamic_cfg=True,
                  scheduler="ddim", seed=0)
    with pytest.raises(TypeError, match=r"unexpected \['stpes'\], missing \['steps'\]"):
        pack.nodes.sampling_inputs.unpack(values)


def test_every_node_is_named_documented_and_has_tooltips(node_classes):
    for node_id, node in node_classes.items():
        schema = node.GET_SCHEMA()
        assert node_id.startswith("DimensionX") and schema.category.startswith("DimensionX/")
        assert schema.display_name.endswith("(DimensionX)")
        assert len(schema.description) > 40, node_id
        for item in schema.inputs:
            assert item.tooltip, f"{node_id}.{item.id} has no tooltip"
        assert (REPO / "js" / "docs" / f"{node_id}.md").is_file(), f"js/docs/{node_id}.md is missing"


def test_pack_info_reports_the_pack_and_the_host(node_classes):
    output = node_classes["DimensionXPackInfo"].execute()
    text = output.result[0]
    assert text.startswith("DimensionX 0.1.0")
    assert "ComfyUI: " in text and "core SPLAT type: " in text
    assert "models/dimensionx" in text.replace("\\", "/")
    assert output.ui.as_dict()["text"] == (text,)
