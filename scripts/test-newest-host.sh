#!/usr/bin/env bash
# Runs the node, host and browser tests against the newest ComfyUI the project has (../shared/hosts/comfyui-0.33.0),
# in its own virtual environment (scripts/setup-newest-host.sh). Skips cleanly, with the reason, where
# ../shared/hosts is absent (a user's clone). Extra arguments replace the default test folders.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(bash scripts/setup-newest-host.sh)
if [ -z "$root" ]; then
  echo "newest-host tests skipped: no ComfyUI tree in ${DIMX_HOSTS:-../shared/hosts}"
  exit 0
fi
python=$PWD/.cache/venv-comfyui-0.33.0/bin/python
[ "$#" -gt 0 ] || set -- tests/nodes tests/host tests/browser
echo "newest-host tests: ComfyUI $(cat "$root/comfyui_version.py" | grep -o '"[0-9.]*"') in $root"
COMFYUI_PATH=$PWD/$root COMFYUI_PYTHON=$python exec "$python" -m pytest "$@"
