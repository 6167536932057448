"""Unpack wheels into one folder on the lent GPU machine, merging folders that several wheels share.

`pip install --target` replaces a top-level folder that is already there, so the CUTLASS DSL wheels (base, core
and the CUDA libraries all fill nvidia_cutlass_dsl/) cannot be installed one call after the other with it; a
wheel is a zip archive, so unpacking them in order is the install. File modes are kept (the CUDA wheel carries
executables). A wheel too large for one call travels as parts that are joined first (`--join OUT PART...`).

    python3 bench/unpack_wheels.py --target /tmp/site .whl/fa4a/*.whl
    python3 bench/unpack_wheels.py --target /tmp/site --join /tmp/cu13.whl /tmp/cu13.part00 .whl/fa4b/cu13.part01
"""
from __future__ import annotations

import argparse
import shutil
import zipfile
from pathlib import Path


def unpack(wheel: Path, target: Path) -> int:
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            path = Path(archive.extract(member, target))
            mode = member.external_attr >> 16
            if mode and not member.is_dir():
                path.chmod(mode & 0o777)
        return len(archive.infolist())


def join(out: Path, parts: list[Path]) -> Path:
    with out.open("wb") as joined:
        for part in parts:
            with part.open("rb") as piece:
                shutil.copyfileobj(piece, joined)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--target", type=Path, required=True)
    parser.add_argument("--join", type=Path, metavar="OUT", help="join the parts given into this wheel, then unpack it")
    parser.add_argument("wheels", type=Path, nargs="+")
    args = parser.parse_args()
    args.target.mkdir(parents=True, exist_ok=True)
    wheels = [join(args.join, args.wheels)] if args.join else args.wheels
    for wheel in wheels:
        print(f"{wheel.name}: {unpack(wheel, args.target)} entries", flush=True)


if __name__ == "__main__":
    main()
