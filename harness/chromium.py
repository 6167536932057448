"""Run browser scenarios (harness/browser/*.mjs, playwright-core driving Debian's chromium) from Python.

A scenario is a JavaScript module whose default export gets a request (a dict with at least the server `url` and
an `out` folder for screenshots) and returns a JSON result, which `run_scenario` hands back as a dict.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from .comfyhost import REPO

BROWSER_DIR = REPO / "harness" / "browser"
DRIVER = BROWSER_DIR / "driver.mjs"
CHROMIUM = Path(os.environ.get("DIMX_CHROMIUM", "/usr/bin/chromium"))


class BrowserError(RuntimeError):
    """The browser could not be started or a scenario failed."""


def browser_missing() -> str | None:
    """Why the browser scenarios cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing: run scripts/setup.sh (it installs Debian's chromium package)"
    if shutil.which("node") is None:
        return "node is not on PATH: install Node.js 20 or newer"
    if not (BROWSER_DIR / "node_modules" / "playwright-core").is_dir():
        return f"playwright-core is not installed in {BROWSER_DIR}: run scripts/setup.sh (npm ci there)"
    return None


def run_scenario(module: Path, request: dict, timeout: float = 240.0) -> dict:
    """Run one scenario module in a fresh chromium and return its JSON result."""
    reason = browser_missing()
    if reason:
        raise BrowserError(reason)
    Path(request["out"]).mkdir(parents=True, exist_ok=True)
    try:
        done = subprocess.run(["node", str(DRIVER), str(module), json.dumps(request)], capture_output=True, text=True,
                              timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired as err:
        raise BrowserError(f"{Path(module).name} did not finish within {timeout:.0f}s:\n{err.stdout}\n{err.stderr}")
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        result = None
    if done.returncode != 0 or not isinstance(result, dict):
        detail = result.get("error") if isinstance(result, dict) else done.stdout[-4000:]
        raise BrowserError(f"{Path(module).name} failed (exit {done.returncode}):\n{detail}\n{done.stderr[-4000:]}")
    return result
