from comfy_api.latest import io

from ..dimx_core.speed.options import ATTENTION_CHOICES, SpeedOptions
from . import host
from .types import SpeedType


class SpeedOptionsNode(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXSpeedOptions",
            display_name="Speed Options (DimensionX)",
            category="DimensionX/video",
            description="How a DimensionX sampler may go faster or use less GPU memory. Without this node the "
                        "samplers use every lossless speed-up (best attention kernel, fused QKV, directors merged "
                        "into the weights) and none of the lossy or slow-to-start ones. The sampler's info output "
                        "says what ran.",
            inputs=[
                io.Combo.Input("attention", options=list(ATTENTION_CHOICES), default="auto",
                               tooltip="auto: the fastest exact kernel measured on this GPU (PyTorch's cuDNN, flash "
                                       "or memory-efficient attention; FlashAttention-3 or -4 if installed). sdpa: "
                                       "PyTorch's own choice. sage: SageAttention if installed (faster, slightly "
                                       "lossy)."),
                io.Boolean.Input("fuse_qkv", default=True,
                                 tooltip="One matrix product for query, key and value instead of three. Exact, and "
                                         "uses no extra memory."),
                io.Boolean.Input("merge_directors", default=True,
                                 tooltip="Merge the active directors into the weights at each switch, so a step "
                                         "with a director costs what a plain step costs. The model is restored "
                                         "exactly afterwards (a copy of the attention weights waits in RAM)."),
                io.Boolean.Input("compile", default=False,
                                 tooltip="torch.compile the transformer block (faster steps on a GPU). The first "
                                         "run compiles for about a minute; later runs and sessions reuse the cache."),
                io.Boolean.Input("fp8", default=False,
                                 tooltip="fp8 matrix products in the transformer (RTX 40xx, L40, H100 and newer): "
                                         "faster, slightly lossy. Needs the model in bf16."),
                io.Boolean.Input("low_memory", default=False,
                                 tooltip="24 GB mode: T5 leaves the GPU once the prompt is encoded and the VAE "
                                         "decodes in tiles, so the whole run fits in about 22 GB. A little slower; "
                                         "tiles can leave faint seams."),
                io.Float.Input("step_cache", default=0.0, min=0.0, max=0.5, step=0.01,
                               tooltip="Step caching (first-block cache): steps whose first block changed less than "
                                       "this (relative) reuse the previous step's result. 0 = off. 0.05-0.1 saves "
                                       "steps with little change; higher is faster and less faithful."),
            ],
            outputs=[SpeedType.Output(display_name="speed", tooltip="Connect to a DimensionX sampler's speed input.")],
        )

    @classmethod
    def execute(cls, attention, fuse_qkv, merge_directors, compile, fp8, low_memory, step_cache) -> io.NodeOutput:
        return io.NodeOutput(SpeedOptions(attention=attention, fuse_qkv=fuse_qkv, merge_directors=merge_directors,
                                          compile=compile, compile_cache=host.compile_cache_folder(), fp8=fp8,
                                          low_memory=low_memory, step_cache=step_cache))


NODES = [SpeedOptionsNode]
