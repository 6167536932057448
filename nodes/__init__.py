"""ComfyUI adapters for dimx_core: schemas, validation and conversion only."""
from comfy_api.latest import ComfyExtension, io

from . import host, recon
from .info import PackInfo

NODES: list[type[io.ComfyNode]] = [PackInfo, *recon.NODES]


class DimensionXExtension(ComfyExtension):
    def __init__(self):
        # ComfyUI 0.3.75 never calls on_load, so folders are registered when the extension is made.
        host.register_model_folders()

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES
