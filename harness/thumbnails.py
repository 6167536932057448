"""Write workflows/<name>.jpg, the template-browser thumbnail of each example workflow, from a real screenshot
of the workflow loaded in the ComfyUI page (classic canvas, fitted to the view).

    python -m harness.thumbnails            # every workflow in workflows/
    python -m harness.thumbnails a.json     # just these
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from PIL import Image

from .assets import ensure_tiny_models
from .chromium import BROWSER_DIR, run_scenario
from .comfyhost import REPO, ComfyServer, comfy_root_and_python, prepare_instance

THUMBNAIL_SIZE = 512


def square_jpeg(png: Path, jpg: Path) -> None:
    """Pad the screenshot of the graph to a square (template cards are square) and save it at THUMBNAIL_SIZE."""
    image = Image.open(png).convert("RGB")
    side = max(image.size)
    square = Image.new("RGB", (side, side), image.getpixel((0, 0)))  # the canvas colour around the graph
    square.paste(image, ((side - image.width) // 2, (side - image.height) // 2))
    square.resize((THUMBNAIL_SIZE, THUMBNAIL_SIZE), Image.LANCZOS).save(jpg, "JPEG", quality=88, optimize=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("workflows", nargs="*", type=Path, help="workflow files (default: all in workflows/)")
    args = parser.parse_args(argv)
    paths = [p.resolve() for p in args.workflows] or sorted((REPO / "workflows").glob("*.json"))

    cache = REPO / ".cache"
    root, python = comfy_root_and_python(cache)
    with tempfile.TemporaryDirectory(prefix="dimx-thumbnails-") as scratch:
        base = prepare_instance(Path(scratch) / "base", ensure_tiny_models(cache))
        with ComfyServer(root, base, python) as server:
            request = {"url": server.url, "out": str(Path(scratch) / "shots"),
                       "viewport": {"width": 1600, "height": 1200},
                       "workflows": [{"name": p.stem, "path": str(p)} for p in paths]}
            shots = run_scenario(BROWSER_DIR / "thumbnails.mjs", request)["shots"]
        for path, shot in zip(paths, shots):
            square_jpeg(Path(shot), path.with_suffix(".jpg"))
            print(f"{path.with_suffix('.jpg').relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
