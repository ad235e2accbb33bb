#!/usr/bin/env bash
# Stop the daemons that start-local-cluster.sh started in DIR, by the pids they recorded there
# (never by process name: other clusters or other people's daemons may run on this machine).
#   bash scripts/slurm/stop-local-cluster.sh DIR [--purge]    # --purge also removes DIR
set -euo pipefail

dir=${1:?usage: stop-local-cluster.sh DIR [--purge]}
purge=${2:-}

stop_pidfile() {  # FILE NAME: stop the pid in FILE if it still is the NAME daemon
    local file=$1 name=$2 pid
    [[ -s "$file" ]] || return 0
    pid=$(cat "$file")
    # A daemon that died long ago may have left its pid to an unrelated process.
    if [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == "$name" ]]; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 40); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.25
        done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    rm -f "$file"
}

# Cancel what is still queued or running first: a job step outlives slurmd, and would go on
# writing into a workflow's folder. Every job of this private cluster is ours.
if [[ -s "$dir/run/slurmctld.pid" && "$(cat "/proc/$(cat "$dir/run/slurmctld.pid")/comm" 2>/dev/null)" == slurmctld ]]; then
    export SLURM_CONF="$dir/etc/slurm.conf"
    jobs=$(timeout 10 squeue -h -t PENDING,RUNNING,COMPLETING,CONFIGURING -o %A 2>/dev/null || true)
    if [[ -n "$jobs" ]]; then
        # shellcheck disable=SC2086  # one job id per word
        timeout 10 scancel $jobs || true
        for _ in $(seq 1 30); do
            [[ -z "$(timeout 10 squeue -h -t PENDING,RUNNING,COMPLETING,CONFIGURING -o %A 2>/dev/null)" ]] && break
            sleep 0.5
        done
    fi
fi

# slurmd first (it may still report to slurmctld), munged last (both authenticate through it).
stop_pidfile "$dir/run/slurmd.pid" slurmd
stop_pidfile "$dir/run/slurmctld.pid" slurmctld
stop_pidfile "$dir/run/munged.pid" munged
if [[ "$purge" == --purge ]]; then
    rm -rf "$dir"
fi
