#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment from requirements.lock.
# Usage: bash scripts/setup.sh            (venv in .venv, or in $BMIP_VENV when set)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${BMIP_VENV:-.venv}"
stamp="$venv/.bmip-lock-sha256"
want="$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    exit 0
fi
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
# torch/torchvision are pinned in requirements.lock (torch==2.14.1, torchvision==0.29.1).
"$venv/bin/pip" install --quiet -r requirements.lock
"$venv/bin/pip" install --quiet --no-deps -e ".[test]"
echo "$want" > "$stamp"
