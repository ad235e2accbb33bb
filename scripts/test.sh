#!/usr/bin/env bash
# Set up the environment and run the whole test suite. `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv="${BMIP_VENV:-.venv}"
exec "$venv/bin/python" -m pytest "$@"
