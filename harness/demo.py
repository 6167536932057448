"""Run every example workflow through a live ComfyUI on the tiny models and say where the outputs landed.

    python -m harness.demo            # run all workflows, stop the server
    python -m harness.demo --serve    # ... then keep the server up and print its URL
"""
from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

from .assets import ensure_tiny_models
from .comfyhost import REPO, ComfyServer, comfy_root_and_python, prepare_instance
from .workflows import load_workflow, ui_to_api

CACHE = REPO / ".cache"
WORKFLOWS = REPO / "workflows"


def describe_outputs(outputs: dict, output_dir: Path) -> list[str]:
    """One line per file, text or splat scene a workflow's nodes reported."""
    def path_of(ref: dict) -> Path:
        folder = output_dir if ref.get("type") == "output" else output_dir.parent / ref.get("type", "")
        return folder / ref.get("subfolder", "") / ref["filename"]

    lines = []
    for node_id, produced in outputs.items():
        for key, items in produced.items():
            for item in items if isinstance(items, list) else [items]:
                if isinstance(item, dict) and "filename" in item:
                    lines.append(f"  node {node_id} {key}: {path_of(item)}")
                elif isinstance(item, dict) and isinstance(item.get("scene"), dict):  # the splat viewer's entry
                    lines.append(f"  node {node_id} {item.get('kind', '3d')} scene: {path_of(item['scene'])}")
                elif isinstance(item, str):
                    lines.append(f"  node {node_id} {key}: " + item.splitlines()[0] + (" ..." if "\n" in item else ""))
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--serve", action="store_true", help="keep the server running afterwards")
    parser.add_argument("workflows", nargs="*", type=Path, help="workflow files (default: all in workflows/)")
    args = parser.parse_args(argv)

    models = ensure_tiny_models(CACHE)
    root, python = comfy_root_and_python(CACHE)
    base = CACHE / "demo-instance"
    if base.exists():
        shutil.rmtree(base)
    prepare_instance(base, models)

    server = ComfyServer(root, base, python).start()
    try:
        info = server.object_info()
        for path in args.workflows or sorted(WORKFLOWS.glob("*.json")):
            started = time.monotonic()
            outputs = server.run(ui_to_api(load_workflow(path), info))
            print(f"{path.name}: done in {time.monotonic() - started:.1f}s")
            print("\n".join(describe_outputs(outputs, base / "output")))
        print(f"outputs are in {base / 'output'}")
        if args.serve:
            print(f"ComfyUI is running at {server.url} (Ctrl-C to stop)")
            while server.process.poll() is None:
                time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
