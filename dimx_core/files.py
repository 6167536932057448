"""Writing result files so that a failure or a cancel never leaves a half-written file behind."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; it replaces `path` only if the block finishes without error.

    The temporary name keeps the real extension last, since writers such as ffmpeg choose the format from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.parent / f".{path.stem}.{uuid.uuid4().hex[:8]}.part{path.suffix}"
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(path: str | Path) -> Iterator[Path]:
    """Yield a new hidden folder beside `path` (which must not exist); it becomes `path` only if the block finishes
    without error, and is removed otherwise, so a failed or cancelled run leaves no half-written folder."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"'{path}' already exists; choose a new folder name (nothing was written)")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        yield temporary
        os.rename(temporary, path)
    finally:
        if temporary.exists():
            shutil.rmtree(temporary)
