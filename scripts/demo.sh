#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh), then runs every workflow in workflows/ through a live ComfyUI on the
# built-in tiny models and prints where the outputs landed. `--serve` keeps the server up and prints its URL.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m harness.demo "$@"
