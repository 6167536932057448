"""ComfyUI adapters for dimx_core: schemas, validation and conversion only."""
from comfy_api.latest import ComfyExtension, io

from . import camera, convert, datasets, directors, host, identity, recon, recon4d, routes, speed, training, video
from .checks import with_value_checks
from .info import PackInfo

NODES: list[type[io.ComfyNode]] = [PackInfo, *video.NODES, *directors.NODES, *speed.NODES, *camera.NODES,
                                   *identity.NODES, *recon.NODES, *recon4d.NODES, *convert.NODES,
                                   *datasets.NODES, *training.NODES]

# Nodes that need something only some hosts offer, each with the host_features() entry that says it is there.
# They are always defined; the extension lists them only where the host has what they need.
NEEDS_HOST_FEATURE: dict[type[io.ComfyNode], str] = {
    camera.TrajectoryToLoad3DCamera: "load3d_camera",
    camera.Load3DCamerasToViews: "load3d_camera",
    recon.GaussiansToSplat: "core_splat_type",
}


def available_nodes(features: dict[str, str | bool]) -> list[type[io.ComfyNode]]:
    """The pack's nodes a host with these features can run."""
    return [node for node in NODES if node not in NEEDS_HOST_FEATURE or features[NEEDS_HOST_FEATURE[node]]]


class DimensionXExtension(ComfyExtension):
    def __init__(self):
        # ComfyUI 0.3.75 never calls on_load, so folders and routes are registered when the extension is made.
        host.register_model_folders()
        routes.register()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # each listed with its prompt values checked against its own schema (nodes/checks.py)
        return [with_value_checks(node) for node in available_nodes(host.host_features())]
