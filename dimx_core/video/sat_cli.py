"""`dimx convert-sat`: a SAT/DeepSpeed CogVideoX-5B-I2V checkpoint (DimensionX's 360-degree model) to diffusers."""
from __future__ import annotations

from pathlib import Path

from .cli import PRECISIONS


def _convert_sat(args) -> None:
    from .sat_convert import convert_sat_checkpoint

    result = convert_sat_checkpoint(args.checkpoint, args.out, base=args.base, dtype=PRECISIONS[args.dtype],
                                    announce=lambda line: print(line, flush=True))
    for note in result.notes:
        print(note)
    print(result.folder)


def register(commands) -> None:
    convert = commands.add_parser(
        "convert-sat", help="convert a SAT/DeepSpeed CogVideoX-5B-I2V checkpoint (e.g. DimensionX's 145-frame "
                            "360-degree orbit model) to a diffusers folder",
        description="Read mp_rank_00_model_states.pt as data only (no code in it runs), merge its LoRA layers at "
                    "the scale SAT applied them, and write the transformer as diffusers safetensors shards. With "
                    "--base, the output is a complete model folder that uses the base's VAE, T5, tokenizer and "
                    "scheduler. The folder appears only once complete.")
    convert.add_argument("--checkpoint", type=Path, required=True, metavar="DIR_OR_FILE",
                         help="the folder SAT saved (with 'latest' and the iteration subfolder), an iteration "
                              "folder, or mp_rank_00_model_states.pt")
    convert.add_argument("--out", type=Path, required=True, help="folder to create (must not exist)")
    convert.add_argument("--base", type=Path,
                         help="a CogVideoX-5b-I2V diffusers folder; its vae/, text_encoder/, tokenizer/ and "
                              "scheduler/ are linked into --out (without it, --out holds transformer/ only)")
    convert.add_argument("--dtype", choices=tuple(PRECISIONS), default="bf16",
                         help="precision of the written weights (default bf16, as the model was trained)")
    convert.set_defaults(run=_convert_sat)
