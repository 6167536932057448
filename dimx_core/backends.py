"""What this machine offers the pack: accelerator, optional packages, and their versions."""
from __future__ import annotations

import platform
from dataclasses import asdict, dataclass, field

from . import __version__
from .optional import KNOWN, version_of


@dataclass
class BackendReport:
    pack_version: str
    python: str
    torch: str
    cuda_device: str | None
    packages: dict[str, str | None] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def as_text(self) -> str:
        lines = [f"DimensionX {self.pack_version} (Python {self.python}, torch {self.torch})",
                 f"CUDA device: {self.cuda_device or 'none (CPU paths only)'}"]
        for name, version in self.packages.items():
            lines.append(f"{KNOWN[name][0]}: {version or 'not installed'}  ({KNOWN[name][1]})")
        return "\n".join(lines)


def report() -> BackendReport:
    import torch

    cuda = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return BackendReport(pack_version=__version__, python=platform.python_version(), torch=torch.__version__,
                         cuda_device=cuda, packages={name: version_of(name) for name in KNOWN})
