"""What every node promises a ComfyUI user: a prefixed id, a category, a description, tooltips, a help page."""
import ast

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
