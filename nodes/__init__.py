"""ComfyUI adapters for dimx_core: schemas, validation and conversion only."""
from comfy_api.latest import ComfyExtension, io

from . import convert, directors, host, identity, recon, recon4d, routes, speed, video
from .camera import CAMERA_NODES
from .info import PackInfo

NODES: list[type[io.ComfyNode]] = [PackInfo, *video.NODES, *directors.NODES, *speed.NODES, *CAMERA_NODES,
                                   *identity.NODES, *recon.NODES, *recon4d.NODES, *convert.NODES]


class DimensionXExtension(ComfyExtension):
    def __init__(self):
        # ComfyUI 0.3.75 never calls on_load, so folders and routes are registered when the extension is made.
        host.register_model_folders()
        routes.register()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
