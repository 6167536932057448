import re
from pathlib import Path

from comfy_api.latest import io, ui

from ..dimx_core.sat_checkpoint import find_sat_checkpoints, resolve_sat_checkpoint
from ..dimx_core.video.cli import PRECISIONS
from ..dimx_core.video.sat_convert import STAGES, convert_sat_checkpoint
from . import host

FOLDER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_. -]{0,127}")


class ConvertSATCheckpoint(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="DimensionXConvertSATCheckpoint",
            display_name="Convert SAT Checkpoint (DimensionX)",
            category="DimensionX/video",
            description="Converts a SAT/DeepSpeed CogVideoX-5B-I2V checkpoint, such as DimensionX's 145-frame "
                        "360-degree orbit model (mp_rank_00_model_states.pt with its 'latest' file), once into a "
                        "diffusers model folder in models/dimensionx that Load Video Model lists: the file is read as "
                        "data only (no code in it runs), its LoRA layers are merged at the scale SAT applied them, "
                        "and the VAE, T5, tokenizer and scheduler are linked from a CogVideoX-5b-I2V base folder. "
                        "The folder appears only once complete.",
            inputs=[
                io.Combo.Input("checkpoint", options=find_sat_checkpoints(host.model_folder_paths()),
                               tooltip="A SAT checkpoint in models/dimensionx: the folder holding 'latest' and its "
                                       "iteration subfolder (e.g. DimensionX_360orbit with latest and "
                                       "1/mp_rank_00_model_states.pt), or a lone mp_rank_00_model_states.pt."),
                io.Combo.Input("base", options=host.list_model_folders(),
                               tooltip="The CogVideoX-5b-I2V diffusers folder whose VAE, T5 text encoder, tokenizer "
                                       "and scheduler the converted model uses (linked, not copied). Its VAE must "
                                       "fit: 16 latent channels, scale 0.7."),
                io.String.Input("name", default="DimensionX-360-orbit",
                                tooltip="Name of the new model folder in models/dimensionx (letters, digits, "
                                        "_ - . and spaces); it must not exist yet."),
                io.Combo.Input("precision", options=list(PRECISIONS), default="bf16",
                               tooltip="Precision of the written weights: bf16 as the model was trained (about "
                                       "11 GB for the 5B transformer); fp32 doubles that."),
            ],
            outputs=[io.String.Output(display_name="model",
                                      tooltip="The new folder's name, as Load Video Model lists it (refresh the "
                                              "page to see it there)."),
                     io.String.Output(display_name="info", tooltip="What was converted: geometry, LoRA, sources.")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, checkpoint, base, name, precision) -> io.NodeOutput:
        name = name.strip()
        if not FOLDER_NAME.fullmatch(name) or name in (".", ".."):
            raise ValueError(f"name {name!r}: use letters, digits, _ - . and spaces, starting with a letter or digit "
                             "(it becomes a folder in models/dimensionx)")
        roots = host.model_folder_paths()
        source = resolve_sat_checkpoint(roots, checkpoint)
        out = Path(roots[0]) / name
        with host.comfy_interrupts():
            result = convert_sat_checkpoint(source, out, base=host.resolve_model_folder(base),
                                            dtype=PRECISIONS[precision], hooks=host.hooks(len(STAGES)),
                                            announce=host.progress_text)
        info = "\n".join([f"{result.folder}", *result.notes])
        return io.NodeOutput(name, info, ui=ui.PreviewText(info))


NODES = [ConvertSATCheckpoint]
