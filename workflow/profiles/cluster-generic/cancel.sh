#!/usr/bin/env bash
# Cancel command for the cluster-generic profile: Snakemake calls it with job ids when it is
# interrupted (Ctrl-C). Each job is stopped with its whole process group (see submit.sh).
set -uo pipefail

for id in "$@"; do
    pid=$(cat ".snakemake/cluster-generic/$id/pid" 2>/dev/null) || continue
    kill -TERM -- "-$pid" 2>/dev/null || true
done
