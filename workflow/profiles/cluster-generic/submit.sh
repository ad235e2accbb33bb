#!/usr/bin/env bash
# Submit command for the cluster-generic profile: "submits" a Snakemake jobscript by starting it
# in the background on this machine and prints a job id, the contract a real scheduler's submit
# command (sbatch --parsable, qsub) follows. Snakemake runs it in the workflow's working
# directory with the jobscript as last argument.
set -euo pipefail

jobscript=${!#}
jobs_dir=.snakemake/cluster-generic
mkdir -p "$jobs_dir"
job_dir=$(mktemp -d "$jobs_dir/XXXXXXXX")

# setsid: the job is its own session and process group, so cancel.sh can stop it with all its
# children, and it outlives the Snakemake process the way a cluster job outlives a login session.
# The job's output goes to $job_dir/log; its exit status, once written, is what status.sh reports.
# shellcheck disable=SC2016  # $$, $1, $2 and $? belong to the job's own shell
setsid bash -c 'echo $$ >"$1/pid"; bash "$2" >"$1/log" 2>&1; echo $? >"$1/exit_status.tmp";
    mv "$1/exit_status.tmp" "$1/exit_status"' bash "$job_dir" "$jobscript" </dev/null >/dev/null 2>&1 &
# The pid file is written by the job itself; wait for it so that status.sh never sees a job that
# neither runs nor has finished.
for _ in $(seq 1 100); do
    [[ -s "$job_dir/pid" ]] && break
    sleep 0.05
done
basename "$job_dir"
