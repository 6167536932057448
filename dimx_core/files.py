"""Writing result files so that a failure or a cancel never leaves a half-written file behind, and reading
files only from where they were offered."""
from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Iterator


def temporary_name(name: str) -> str:
    """The hidden name a file or folder is written under before it gets `name`. The real extension stays last,
    since writers such as ffmpeg choose the format from it; listings skip hidden names."""
    stem, dot, suffix = name.rpartition(".") if "." in name.lstrip(".") else (name, "", "")
    return f".{stem}.{uuid.uuid4().hex[:8]}.part{dot}{suffix}"


def temporary_length(suffix: str) -> int:
    """Characters of the hidden name of `<stem><suffix>` beyond those of its stem (for file name limits)."""
    return len(temporary_name(suffix))


@contextlib.contextmanager
def atomic_paths(paths: list[str | Path]) -> Iterator[list[Path]]:
    """Yield a temporary path beside each of `paths`; they replace their targets only once every one of them was
    written (a full disk on the third file leaves the first two targets as they were)."""
    targets = [Path(path) for path in paths]
    temporaries = []
    for target in targets:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporaries.append(target.parent / temporary_name(target.name))
    try:
        yield temporaries
        for temporary, target in zip(temporaries, targets):
            os.replace(temporary, target)
    finally:
        for temporary in temporaries:
            temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block finishes without error."""
    with atomic_paths([path]) as (temporary,):
        yield temporary


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a new hidden folder beside `path` to fill; it is renamed to `path` (which must not exist yet) only if
    the block finishes, and removed otherwise. Created like any folder the user makes (the umask decides its
    mode), not private to this process."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"'{path}' already exists; choose a new folder name (nothing was written)")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.parent / temporary_name(path.name)
    partial.mkdir()
    try:
        yield partial
        os.rename(partial, path)
    finally:
        if partial.exists():
            shutil.rmtree(partial)


def resolve_inside(root: str | Path, relative: str, what: str) -> Path:
    """`relative` under `root` with every link resolved; refused if it leads anywhere outside `root` (a link
    placed in an input folder must not open the rest of the disk)."""
    if "\x00" in relative:
        raise ValueError(f"{what} {relative!r} contains a NUL character")
    base = Path(root).resolve()
    path = (base / relative).resolve()
    if not path.is_relative_to(base):
        raise ValueError(f"{what} {relative!r} leads outside {base} (to {path}); only what lies inside it is used")
    return path


def is_inside(root: str | Path, relative: str) -> bool:
    try:
        resolve_inside(root, relative, "file")
    except (ValueError, OSError):
        return False
    return True
