#!/usr/bin/env bash
# Set up the environment and run the default pipeline (the miniworld experiment) end to end.
# Extra arguments go to snakemake, e.g. `bash scripts/run.sh --cores 4` or `-n` for a dry run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv="${BMIP_VENV:-.venv}"
if [[ $# -eq 0 ]]; then
    set -- --cores 2
fi
exec "$venv/bin/snakemake" "$@"
