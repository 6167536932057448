from comfy_api.latest import io, ui

from ..dimx_core.backends import report
from . import host


class PackInfo(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXPackInfo",
            display_name="Pack Info (DimensionX)",
            category="DimensionX/utils",
            description="Shows the DimensionX version, what this machine and this ComfyUI offer (CUDA, gsplat, "
                        "pycolmap, the core splat type) and where the pack looks for CogVideoX model folders. "
                        "Run it first when something is missing.",
            inputs=[],
            outputs=[io.String.Output(display_name="report", tooltip="The same text as shown in the node.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls) -> io.NodeOutput:
        features = host.host_features()
        lines = [report().as_text(),
                 f"ComfyUI: {features['comfyui']}",
                 f"core SPLAT type: {'yes' if features['core_splat_type'] else 'no (DimensionX viewer only)'}",
                 f"native CogVideoX in ComfyUI: {'yes' if features['native_cogvideox'] else 'no'}",
                 "CogVideoX image-to-video folders are read from: " + ", ".join(host.model_folder_paths())]
        text = "\n".join(lines)
        return io.NodeOutput(text, ui=ui.PreviewText(text))
