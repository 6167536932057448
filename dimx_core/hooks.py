"""How long-running library code reports progress and learns that the user pressed Cancel.

The library never imports ComfyUI; the nodes pass `Hooks` built from ComfyUI's progress bar and interrupt flag,
the CLI passes the defaults (no progress, never stop).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable


class Interrupted(Exception):
    """The user asked to stop; raised between steps, so no partial result is returned or written."""


def _no_progress(step: int, total: int, preview: Any | None) -> None:
    return None


def _never_stop() -> bool:
    return False


@dataclass(frozen=True)
class Hooks:
    """progress(step, total, preview) with preview an (H, W, 3) float image in 0..1 or None."""
    progress: Callable[[int, int, Any | None], None] = _no_progress
    should_stop: Callable[[], bool] = _never_stop

    def check(self) -> None:
        if self.should_stop():
            raise Interrupted()

    def step(self, step: int, total: int, preview: Any | None = None) -> None:
        """Report `step` of `total` done, then stop here if asked to."""
        self.progress(step, total, preview)
        self.check()

    def offset(self, done: int, total: int) -> "Hooks":
        """Hooks for one part of a longer run: its step s is reported as step done + s of `total`."""
        return Hooks(progress=lambda step, steps, preview: self.progress(done + step, total, preview),
                     should_stop=self.should_stop)


NO_HOOKS = Hooks()
