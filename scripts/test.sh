#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs every test: unit, nodes, and a live ComfyUI host.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/unit -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
