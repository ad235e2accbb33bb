#!/usr/bin/env bash
# Set up the environment and run the default pipeline (the miniworld experiment) end to end.
# Extra arguments go to snakemake, e.g. `bash scripts/run.sh --cores 4` or `-n` for a dry run.
# After a hard kill (lost session, OOM killer, shutdown) just run it again: a stale lock is
# removed, finished jobs are kept and incomplete ones rerun. A lock held by a live run is left.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv="${BMIP_VENV:-.venv}"
if [[ $# -eq 0 ]]; then
    set -- --cores 2
fi
lock=0
"$venv/bin/python" -m bmip.workflow_lock . || lock=$?
case "$lock" in
    0) ;;
    3) "$venv/bin/snakemake" --unlock "$@" > /dev/null ;;
    *) exit 1 ;;
esac
exec "$venv/bin/snakemake" "$@"
