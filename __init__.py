"""DimensionX for ComfyUI: one image to 3D and 4D scenes with director-steered CogVideoX and Gaussian splats.

ComfyUI loads this pack through `comfy_entrypoint` (V3 nodes). Exporting the V1 node-class mapping as well
would make ComfyUI take the V1 path and drop every V3 node, so this file exports nothing else but WEB_DIRECTORY.
"""
WEB_DIRECTORY = "./js"


async def comfy_entrypoint():
    from .nodes import DimensionXExtension

    return DimensionXExtension()
