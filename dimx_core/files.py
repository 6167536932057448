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
    """Yield a hidden folder beside `path` to fill; it becomes `path` only if the block finishes without error,
    and disappears otherwise. `path` must not exist yet (or be an empty folder)."""
    path = Path(path)
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise FileExistsError(f"'{path}' already exists and is not an empty folder; choose a new folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent))
    try:
        yield partial
        if path.is_dir():
            path.rmdir()
        os.replace(partial, path)
    finally:
        if partial.exists():
            shutil.rmtree(partial)
