from pathlib import Path

from comfy_api.latest import io

from ..dimx_core.directors.adapters import ROLES, Director
from ..dimx_core.directors.formats import read_lora
from . import host
from .types import DirectorsType


def _default_name(filename: str) -> str:
    stem = Path(filename).stem
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in stem) or "director"


class LoadDirectorLoRA(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXLoadDirectorLoRA",
            display_name="Load Director LoRA (DimensionX)",
            category="DimensionX/video",
            description="Loads a DimensionX director LoRA (S-Director: camera motion; T-Director: object motion) "
                        "from models/loras and adds it to a chain of directors that stay loaded together, so "
                        "samplers can switch between them per step at no cost. Any key format is read "
                        "(diffusers/PEFT, kohya, ComfyUI native, SAT); strength 1.0 means 'as trained'.",
            inputs=[
                io.Combo.Input("lora_name", options=host.list_files("loras"),
                               tooltip="A director LoRA for CogVideoX-5b-I2V from models/loras, e.g. one of the "
                                       "released 12 basic camera S-Directors, 4 orbits or the T-Director."),
                io.Combo.Input("role", options=list(ROLES), default="S",
                               tooltip="S: spatial director (moves the camera through a frozen scene). "
                                       "T: temporal director (animates the scene under a still camera)."),
                io.String.Input("name", default="",
                                tooltip="How schedules and Switch-Once refer to this director (letters, digits, "
                                        "_ - .). Empty: taken from the file name."),
                io.Float.Input("strength", default=1.0, min=-4.0, max=4.0, step=0.05,
                               tooltip="1.0 applies the LoRA as it was trained (W + B·A/rank for DimensionX "
                                       "files, which carry no alpha). Lower it if the motion is too strong."),
                DirectorsType.Input("directors", optional=True,
                                    tooltip="Directors loaded before this one; the output holds all of them."),
            ],
            outputs=[DirectorsType.Output(display_name="directors",
                                          tooltip="Every director of the chain, resident together.")],
        )

    @classmethod
    def execute(cls, lora_name, role, name, strength, directors=None) -> io.NodeOutput:
        chain = tuple(directors or ())
        director = Director(name=name.strip() or _default_name(lora_name), role=role, strength=strength,
                            lora=read_lora(host.resolve_file("loras", lora_name)))
        if director.name in {d.name for d in chain}:
            raise ValueError(f"a director named '{director.name}' is already in the chain; give this one another name")
        return io.NodeOutput(chain + (director,))


class ApplyDirectorToModel(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXApplyDirectorToModel",
            display_name="Apply Director to Model (DimensionX)",
            category="DimensionX/video",
            description="Applies a DimensionX director LoRA (any key format the pack reads) to ComfyUI's own "
                        "CogVideoX-5b-I2V MODEL through core's model patcher, for core samplers: core's LoRA loader "
                        "has no CogVideoX key map, so a director loaded there does nothing. Strength 1.0 is the "
                        "effect as trained (1/rank for the released files, which carry no alpha). For Switch-Once "
                        "with core nodes, apply the S-Director and the T-Director to two copies and run two "
                        "KSampler (Advanced) nodes over the step ranges.",
            inputs=[
                io.Model.Input("model", tooltip="ComfyUI's native CogVideoX image-to-video MODEL (Load Diffusion "
                                                "Model)."),
                io.Combo.Input("lora_name", options=host.list_files("loras"),
                               tooltip="A director LoRA for CogVideoX-5b-I2V from models/loras."),
                io.Float.Input("strength", default=1.0, min=-4.0, max=4.0, step=0.05,
                               tooltip="1.0 applies the LoRA as it was trained (W + B·A/rank for DimensionX files). "
                                       "Other LoRAs applied to the model stay applied."),
            ],
            outputs=[io.Model.Output(display_name="model", tooltip="The model with the director applied.")],
        )

    @classmethod
    def execute(cls, model, lora_name, strength) -> io.NodeOutput:
        lora = read_lora(host.resolve_file("loras", lora_name))
        return io.NodeOutput(host.with_director(model, lora, strength))


NODES = [LoadDirectorLoRA, ApplyDirectorToModel]
