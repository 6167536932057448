#!/usr/bin/env bash
# Sets up the newest ComfyUI the project has (../shared/hosts/comfyui-0.33.0, read-only) as a second test host,
# idempotently: a writable copy in .cache/comfyui-0.33.0 and its own virtual environment .cache/venv-comfyui-0.33.0
# with torch 2.14.1, torchvision 0.29.1, torchaudio 2.11.1 (scripts/constraints.txt), that ComfyUI's requirements
# without its torch lines, the pack's requirements and the test tools. Prints the host's root; exits 0 without
# doing anything (and says so) where ../shared/hosts is absent, as in a user's clone. DIMX_HOSTS overrides
# where the hosts are (a worktree whose ../shared is elsewhere).
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.33.0
source_tree=${DIMX_HOSTS:-../shared/hosts}/comfyui-$version
root=.cache/comfyui-$version
venv=.cache/venv-comfyui-$version
if [ ! -f "$source_tree/main.py" ]; then
  echo "setup: $source_tree is absent; the newest-host tests are skipped (they need the project's shared hosts)" >&2
  exit 0
fi
if [ ! -f "$root/.dimx-copied" ] || [ "$source_tree/comfyui_version.py" -nt "$root/.dimx-copied" ]; then
  rm -rf "$root"
  cp -r "$source_tree" "$root.part"
  chmod -R u+w "$root.part"
  mv "$root.part" "$root"
  touch "$root/.dimx-copied"
fi
[ -x "$venv/bin/python" ] || "${PYTHON:-python3}" -m venv "$venv"
wanted=$(cat scripts/constraints.txt "$root/requirements.txt" requirements.txt scripts/requirements-test.txt | sha1sum)
if ! [ -f "$venv/.dimx-installed" ] || [ "$(cat "$venv/.dimx-installed")" != "$wanted" ]; then
  pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q -c scripts/constraints.txt)
  "${pip[@]}" --upgrade pip
  grep -v -E '^(torch|torchvision|torchaudio)\s*$' "$root/requirements.txt" > "$venv/host-requirements.txt"
  "${pip[@]}" torch torchvision torchaudio -r "$venv/host-requirements.txt" -r requirements.txt \
    -r scripts/requirements-test.txt
  echo "$wanted" > "$venv/.dimx-installed"
fi
echo "$root"
