"""ComfyUI adapters for dimx_core: schemas, validation and conversion only."""
from comfy_api.latest import ComfyExtension, io

from . import directors, host, identity, recon, recon4d, routes, speed, video
from .camera import CAMERA_NODES
from .checks import with_value_checks
from .info import PackInfo

NODES: list[type[io.ComfyNode]] = [with_value_checks(node) for node in (
    PackInfo, *video.NODES, *directors.NODES, *speed.NODES, *CAMERA_NODES, *identity.NODES, *recon.NODES,
    *recon4d.NODES)]


class DimensionXExtension(ComfyExtension):
    def __init__(self):
        # ComfyUI 0.3.75 never calls on_load, so folders and routes are registered when the extension is made.
        host.register_model_folders()
        routes.register()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
