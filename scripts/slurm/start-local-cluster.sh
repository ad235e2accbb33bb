#!/usr/bin/env bash
# Start a private single-node SLURM cluster on this machine, so that the SLURM profile can be
# tested against a real scheduler (tests/workflow/test_slurm.py uses it).
#
#   bash scripts/slurm/start-local-cluster.sh DIR    # prints DIR/env.sh; `. DIR/env.sh` to use it
#   bash scripts/slurm/stop-local-cluster.sh DIR
#
# Everything lives under DIR (config, state, logs, pid files, munge key and socket) and the daemons
# listen on free loopback ports, so several clusters (two test runs) can coexist and none touches
# /etc/slurm or /etc/munge. Clients find the cluster through SLURM_CONF=DIR/etc/slurm.conf.
# Inside a job that variable is gone: Snakemake's jobstep executor strips SLURM_* before its
# nested `srun`, which then reads /etc/slurm/slurm.conf like on a real compute node. So slurmd
# runs in its own mount namespace where DIR/etc is mounted over /etc/slurm; its jobs inherit that
# view and the machine's /etc/slurm stays untouched.
# Debian's slurm 22.05 + munge run as plain background daemons: no systemd, no cgroups, and no
# accounting (slurmdbd) -- so Snakemake's SLURM plugin must poll with squeue.
#
# Exit status 77 means the packages could not be installed (the caller may skip); anything else
# non-zero is a real failure. Environment: SLURM_LOCAL_CPUS (8), SLURM_LOCAL_MEM_MB (16000),
# SLURM_LOCAL_GPUS (2 fake GPUs).
set -euo pipefail

dir=${1:?usage: start-local-cluster.sh DIR}
cpus=${SLURM_LOCAL_CPUS:-8}      # may exceed the real cores: jobs are mostly interpreter start-up
mem_mb=${SLURM_LOCAL_MEM_MB:-16000}
gpus=${SLURM_LOCAL_GPUS:-2}
node=$(hostname -s)              # slurmd takes its NodeName from the hostname

install_packages() {
    # Lean set: the slurm-wlm metapackage would pull ~15 -dev and plugin packages.
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get -o DPkg::Lock::Timeout=120 update -qq &&
        timeout 600 apt-get -o DPkg::Lock::Timeout=120 install -y -qq --no-install-recommends \
            munge slurmctld slurmd slurm-client
}
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null ||
    ! command -v sbatch >/dev/null; then
    apt_log=$(mktemp)
    if ! install_packages >"$apt_log" 2>&1; then
        cat "$apt_log" >&2
        echo "could not install munge/slurm packages with apt-get" >&2
        exit 77
    fi
    rm -f "$apt_log"
fi

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

mkdir -p "$dir"
dir=$(cd "$dir" && pwd)
# munged insists that every directory on the way to its socket is searchable by all users,
# and that its key is readable by its owner only.
chmod 755 "$dir"
install -d -m 755 "$dir/etc" "$dir/munge" "$dir/log" "$dir/run" "$dir/spool/slurmctld" "$dir/spool/slurmd" "$dir/gpu"
install -d -m 700 "$dir/munge/key"
[[ -s "$dir/munge/key/munge.key" ]] || timeout 60 mungekey --create --keyfile="$dir/munge/key/munge.key"
chmod 600 "$dir/munge/key/munge.key"

# Stand-ins for GPU device files: slurmd counts one character device per GRES unit and hands
# the job its index in CUDA_VISIBLE_DEVICES. Each is a copy of /dev/null (char 1,3).
gres_files=()
for ((i = 0; i < gpus; i++)); do
    [[ -c "$dir/gpu/fake$i" ]] || mknod -m 666 "$dir/gpu/fake$i" c 1 3
    gres_files+=("$dir/gpu/fake$i")
done

ctld_port=$(free_port)
slurmd_port=$(free_port)
while [[ "$slurmd_port" == "$ctld_port" ]]; do slurmd_port=$(free_port); done

cat >"$dir/etc/slurm.conf" <<CONF
ClusterName=bmiplocal
SlurmctldHost=${node}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=${dir}/munge/munge.sock
# Loopback only: without these both daemons listen on 0.0.0.0.
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
SlurmctldPort=${ctld_port}
SlurmdPort=${slurmd_port}
StateSaveLocation=${dir}/spool/slurmctld
SlurmdSpoolDir=${dir}/spool/slurmd
SlurmctldPidFile=${dir}/run/slurmctld.pid
SlurmdPidFile=${dir}/run/slurmd.pid
SlurmctldLogFile=${dir}/log/slurmctld.log
SlurmdLogFile=${dir}/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
# Lets the node declare more CPUs than the machine has.
SlurmdParameters=config_overrides
GresTypes=gpu
# Without it a job that gives no --mem takes the whole node's memory.
DefMemPerCPU=500
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
# How long a finished job stays visible to squeue/scontrol. The plugin's squeue polling needs at
# least 3x its first-check delay (else it silently switches to sacct, which fails here); an hour
# also lets tests inspect every job of a run afterwards.
MinJobAge=3600
KillWait=5
Waittime=0
NodeName=${node} NodeAddr=127.0.0.1 CPUs=${cpus} Boards=1 SocketsPerBoard=1 CoresPerSocket=${cpus} ThreadsPerCore=1 RealMemory=${mem_mb} Gres=gpu:fake:${gpus} State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP
CONF
{
    for f in "${gres_files[@]}"; do
        echo "NodeName=${node} Name=gpu Type=fake File=${f}"
    done
} >"$dir/etc/gres.conf"
echo "export SLURM_CONF=${dir}/etc/slurm.conf" >"$dir/env.sh"
export SLURM_CONF="$dir/etc/slurm.conf"

# Each daemon forks, writes its pid file and returns (timeout only bounds that start-up, the
# daemon lives on); stop-local-cluster.sh stops exactly those pids.
timeout 60 munged --key-file="$dir/munge/key/munge.key" --socket="$dir/munge/munge.sock" \
    --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed"
timeout 60 slurmctld -f "$SLURM_CONF"
mkdir -p /etc/slurm
# shellcheck disable=SC2016  # $1 is expanded by the inner sh, in the new namespace
timeout 60 unshare --mount --propagation private -- \
    sh -c 'mount --bind "$1" /etc/slurm && exec slurmd -f /etc/slurm/slurm.conf' sh "$dir/etc"

for _ in $(seq 1 60); do
    [[ "$(timeout 5 sinfo -h -o %t 2>/dev/null)" == idle ]] && break
    sleep 0.5
done
if [[ "$(timeout 5 sinfo -h -o %t 2>/dev/null)" != idle ]]; then
    echo "the local SLURM node did not become idle within 30 s:" >&2
    timeout 5 sinfo -N -l >&2 || true
    tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
    exit 1
fi
echo "$dir/env.sh"
