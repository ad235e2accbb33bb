#!/usr/bin/env bash
# Set up the environment and run the default pipeline (the miniworld experiment) end to end.
# Extra arguments go to snakemake, e.g. `bash scripts/run.sh --cores 4`, `--configfile my.yaml`
# (two cores unless the arguments say otherwise) or `-n` for a dry run.
# After a hard kill (lost session, OOM killer, shutdown) just run it again: a stale lock is
# removed, finished jobs are kept and incomplete ones rerun. A lock held by a live run is left.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
venv="${BMIP_VENV:-.venv}"
# Two cores unless the arguments say how many (or a profile does): `--configfile my.yaml` alone
# keeps the default.
case " $* " in
    *" --cores"* | *" -c"* | *" --jobs"* | *" -j"* | *" --profile"*) ;;
    *) set -- "$@" --cores 2 ;;
esac
# A config file with a YAML error: Snakemake reads it before the workflow and names neither the
# file nor the line; say both before handing over.
"$venv/bin/python" - "$@" <<'PY' || exit 1
import sys
from snakemake.cli import get_argument_parser
from bmip.config import ConfigError, read_config_files
args, _ = get_argument_parser().parse_known_args(sys.argv[1:])
try:
    read_config_files(args.configfile or [])
except ConfigError as err:
    sys.exit(str(err))
PY
lock=0
"$venv/bin/python" -m bmip.workflow_lock . || lock=$?
case "$lock" in
    0) ;;
    3) "$venv/bin/snakemake" --unlock "$@" > /dev/null ;;
    *) exit 1 ;;
esac
exec "$venv/bin/snakemake" "$@"
