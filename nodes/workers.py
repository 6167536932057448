"""The Workers node: where the 4D graph's independent videos run (Ray actors, one per GPU, here or on a cluster)."""
from comfy_api.latest import io, ui

from ..dimx_core.distributed.executor import WorkerSettings, WorkersSpec
from ..dimx_core.distributed.parallel import ParallelPlan
from .types import WorkersType


class Workers(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXWorkers", display_name="Workers (DimensionX)", category="DimensionX/scale",
            description="Runs the independent videos of Multi-View Generate and Appearance Refine on Ray workers: one "
                        "per GPU of this machine or of a running Ray cluster, each loading the model once and taking "
                        "one video at a time; Train Director LoRA trains on all of them at once (data-parallel). "
                        "Optionally several GPUs share each video (CFG-parallel, Ulysses). "
                        "While workers run on ComfyUI's own GPU, ComfyUI's models are unloaded. Needs the ray "
                        "package (and yunchang for Ulysses).",
            inputs=[
                io.String.Input("devices", default="all",
                                tooltip="'all': every GPU of this machine; GPU ids '0,1,3'; a worker count '8' (GPUs of "
                                        "the Ray cluster below, or of this machine); 'cpu:2': two CPU workers."),
                io.String.Input("ray_address", default="",
                                tooltip="A running Ray cluster ('auto', 'HOST:6379' or 'ray://HOST:10001'); empty "
                                        "starts Ray here. Every node needs the pack, the model and the directors at "
                                        "the same paths."),
                io.Boolean.Input("cfg_parallel", default=False,
                                 tooltip="Two GPUs per video: the unconditional and conditional halves of every "
                                         "guided step on one GPU each (about 2x per step)."),
                io.Int.Input("ulysses", default=1, min=1, max=8,
                             tooltip="GPUs per video sharing its tokens (Ulysses sequence parallelism); the heads "
                                     "must divide by it (CogVideoX-5b's 48: 2, 3, 4, 6, 8). With cfg_parallel each "
                                     "video takes 2 x this many GPUs."),
                io.Float.Input("gpu_memory_gb", default=0.0, min=0.0, max=1024.0, step=1.0,
                               tooltip="The most GPU memory each worker may use (0: the whole GPU). Leave room for "
                                       "ComfyUI when a worker shares its GPU."),
                io.Boolean.Input("low_memory", default=False,
                                 tooltip="The 24 GB mode in every worker: T5 leaves the GPU once the prompt is "
                                         "encoded, the VAE decodes in tiles."),
            ],
            outputs=[WorkersType.Output(display_name="workers",
                                        tooltip="For Multi-View Generate, Appearance Refine and Train Director LoRA."),
                     io.String.Output(display_name="info", tooltip="Where the videos will run.")],
        )

    @classmethod
    def execute(cls, devices, ray_address, cfg_parallel, ulysses, gpu_memory_gb, low_memory) -> io.NodeOutput:
        spec = WorkersSpec.parse(devices, ray_address, plan=ParallelPlan(cfg=2 if cfg_parallel else 1, ulysses=ulysses),
                                 settings=WorkerSettings(gpu_memory_gb=gpu_memory_gb, low_memory=low_memory))
        text = spec.describe()
        return io.NodeOutput(spec, text, ui=ui.PreviewText(text))


NODES = [Workers]
