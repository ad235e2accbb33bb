#!/usr/bin/env bash
# Status command for the cluster-generic profile: prints running, success or failed for a job id
# printed by submit.sh (Snakemake calls it in the working directory, once per job and check).
set -euo pipefail

job_dir=.snakemake/cluster-generic/${1:?usage: status.sh JOBID}

finished() {
    [[ -s "$job_dir/exit_status" ]] || return 1
    if [[ "$(cat "$job_dir/exit_status")" == 0 ]]; then echo success; else echo failed; fi
}

finished && exit 0
pid=$(cat "$job_dir/pid" 2>/dev/null || true)
if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null; then
    echo running
    exit 0
fi
# It may have finished between the two checks; otherwise it vanished (killed, machine rebooted).
finished || echo failed
