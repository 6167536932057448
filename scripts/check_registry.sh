#!/usr/bin/env bash
# comfy-cli's own check that the pack can be published to the Comfy Registry (`comfy node validate`): pyproject's
# [project] and [tool.comfy] metadata, then ruff's rules against exec, eval and several statements on one line.
# comfy-cli only warns on those rules; here a warning fails. Installed from PyPI into .cache/comfy-cli, a venv of
# its own (comfy-cli's dependencies stay out of the pack's .venv); nothing else is reached.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
venv=.cache/comfy-cli
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
"$venv/bin/python" -m pip install --disable-pip-version-check -q -r scripts/requirements-registry.txt
output=$("$venv/bin/comfy" --skip-prompt --no-enable-telemetry node validate </dev/null 2>&1) || {
  echo "$output"; echo "check_registry: comfy node validate failed" >&2; exit 1; }
echo "$output"
if grep -q "Security warnings found" <<<"$output"; then
  echo "check_registry: fix the warnings above (the registry will refuse exec/eval and one-line statements)" >&2
  exit 1
fi
