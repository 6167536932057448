"""Telling weight files apart by their content, and finding what is wrong with one from its header alone: a
pickle named .safetensors (or .pkl, whatever the name), a download that stopped early."""
from __future__ import annotations

import json
from pathlib import Path

PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")  # only for empty files: no content
_ZIP_START = b"PK\x03\x04"  # torch.save's zip container


def _looks_like_pickle(start: bytes) -> bool:
    """torch.save's zip, or a bare pickle (PROTO opcode 0x80 and a protocol 2-5), and not a .safetensors file,
    whose 8-byte header length is followed by its JSON header's '{'."""
    if start[8:9] == b"{":
        return False
    return start.startswith(_ZIP_START) or (start[:1] == b"\x80" and start[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"))


def safetensors_problem(path: str | Path) -> str | None:
    """What is wrong with a .safetensors file, read from its header alone (no tensor is loaded), or None. Says
    'truncated' when the header promises more bytes than the file holds, as after a stopped download."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as handle:
        start = handle.read(9)
        if _looks_like_pickle(start):
            return "it is a PyTorch pickle (torch.save / .pt / .pkl), not a .safetensors file"
        if len(start) < 9:
            return f"it holds {size} bytes, too few for a .safetensors header (empty or truncated)"
        length = int.from_bytes(start[:8], "little")
        if length < 2:
            return "its header is not a .safetensors header (another kind of file with this extension?)"
        if length > size - 8:
            return f"truncated: its header alone should be {length} bytes, the file holds {size}"
        try:
            header = json.loads(start[8:] + handle.read(length - 1))
            end = max((entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            return "its header is not a .safetensors header (another kind of file with this extension?)"
    if 8 + length + end > size:
        return (f"truncated: it holds {size} bytes of the {8 + length + end} its header promises (the download "
                "or copy stopped early)")
    return None


def check_safetensors_files(folder: str | Path, what: str) -> None:
    """Every .safetensors file under `folder` is whole (headers only: cheap for a 10 GB model)."""
    for path in sorted(Path(folder).rglob("*.safetensors")):
        if (problem := safetensors_problem(path)) is not None:
            raise ValueError(f"{what} file '{path}' cannot be loaded: {problem}")


def is_pickle(path: Path) -> bool:
    with path.open("rb") as handle:
        start = handle.read(9)
    return _looks_like_pickle(start) or (not start and path.suffix.lower() in PICKLE_SUFFIXES)
