#!/usr/bin/env bash
# Start a throwaway single-node Slurm cluster on 127.0.0.1, entirely under STATE_DIR:
#
#   tests/slurm/start.sh STATE_DIR
#
# munged, slurmctld and slurmd are started by hand (no systemd), each in the foreground as a background
# process of this script, and their PIDs are written to STATE_DIR/pids ("name pid" per line) as soon as
# each is started, so tests/slurm/stop.sh STATE_DIR can stop exactly those processes, even when this
# script fails halfway. Nothing outside STATE_DIR is written: the munge key, its socket, slurm.conf,
# gres.conf, the state/spool/log directories all live there, and the ports are picked free at start, so
# several such clusters can run side by side and none touches a real /etc/slurm.
#
# The cluster: one node (CPUs and memory as `slurmd -C` reports them) with one fake GPU (gres gpu:1,
# File=/dev/null), partitions "debug" (default) and "kml" (same node), select/cons_tres, no cgroups
# (proctrack/linuxproc, task/none), no accounting (accounting_storage/none, jobacct_gather/none), and
# MinJobAge=300 so finished jobs stay visible to squeue/scontrol for 5 minutes.
#
# On success stdout is (and STATE_DIR/env holds) two lines to source:
#   export SLURM_CONF=STATE_DIR/etc/slurm.conf   every Slurm client (sinfo, sbatch, squeue, scontrol, and
#                                                so Snakemake's Slurm plugin) must see it
#   export PATH=STATE_DIR/bin:"$PATH"            an srun wrapper that restores SLURM_CONF (see below)
# Must run as root (the daemons and the jobs run as root).
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

if [[ $# -ne 1 ]]; then
    echo "usage: $0 STATE_DIR" >&2
    exit 64
fi
if [[ $(id -u) -ne 0 ]]; then
    echo "start.sh: must run as root" >&2
    exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$1"
state=$(cd "$1" && pwd)
if [[ -s $state/pids ]]; then
    echo "start.sh: $state/pids exists: a cluster may still be running there; run stop.sh $state first" >&2
    exit 1
fi
: >"$state/pids"
wait_timeout=${KML_SLURM_START_TIMEOUT:-60}

fail() {
    echo "start.sh: $*" >&2
    for f in "$state"/log/*.log; do
        [[ -f $f ]] || continue
        echo "---- tail of $f" >&2
        tail -n 20 "$f" >&2
    done
    bash "$here/stop.sh" "$state" >&2 || true
    exit 1
}

# record NAME PID: append to the pid file right away, so stop.sh can find it whatever happens next
record() { echo "$1 $2" >>"$state/pids"; }

mkdir -p "$state"/{etc,munge,log,run,ctld,spool}
chmod 0700 "$state" "$state/munge"

# ---- ports: two free TCP ports on 127.0.0.1 (a crashed earlier run on fixed ports can't block us)
read -r ctld_port slurmd_port < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
EOF
)

# ---- munge: private key and socket, munged in the foreground
mungekey --create --keyfile="$state/munge/munge.key" --force >/dev/null 2>&1 \
    || dd if=/dev/urandom of="$state/munge/munge.key" bs=1024 count=1 status=none
chmod 0400 "$state/munge/munge.key"
munge_socket=$state/munge/munge.socket
# a Unix socket path has at most 107 bytes
(( ${#munge_socket} < 100 )) || fail "STATE_DIR too long for a Unix socket path: $munge_socket"
munged --foreground --force \
    --key-file="$state/munge/munge.key" --socket="$munge_socket" \
    --pid-file="$state/run/munged.pid" --seed-file="$state/munge/munged.seed" \
    --log-file="$state/log/munged.log" >>"$state/log/munged.out" 2>&1 &
record munged $!
for _ in $(seq 1 50); do
    [[ -S $munge_socket ]] && break
    sleep 0.1
done
[[ -S $munge_socket ]] || fail "munged did not create its socket"
munge --socket="$munge_socket" -n | unmunge --socket="$munge_socket" >/dev/null \
    || fail "munge/unmunge round trip failed"

# ---- slurm.conf and gres.conf
node=kmlnode
# "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 CoresPerSocket=2 ThreadsPerCore=1 RealMemory=24105"
hw=$(slurmd -C | head -n 1 | sed -e 's/^NodeName=[^ ]* //')
[[ $hw == CPUs=* ]] || fail "unexpected 'slurmd -C' output: $hw"

cat >"$state/etc/slurm.conf" <<EOF
# Written by tests/slurm/start.sh: a throwaway single-node cluster on 127.0.0.1.
ClusterName=kmltest
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$munge_socket
StateSaveLocation=$state/ctld
SlurmdSpoolDir=$state/spool/%n
SlurmctldPidFile=$state/run/slurmctld.pid
SlurmdPidFile=$state/run/slurmd.pid
SlurmctldLogFile=$state/log/slurmctld.log
SlurmdLogFile=$state/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig=$state/etc/plugstack.conf
# No cgroups here: plain process tracking, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
# GPUs are trackable resources (needs cons_tres); memory is not consumable so jobs only compete for CPUs/GPUs.
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
# No accounting at all: sacct has nothing to ask, status checks must use squeue/scontrol.
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
# Keep finished jobs in slurmctld for 5 minutes: squeue/scontrol can report COMPLETED/FAILED.
MinJobAge=300
ReturnToService=2
SlurmdTimeout=60
InactiveLimit=0
KillWait=5
Waittime=0
SchedulerType=sched/backfill
NodeName=$node NodeAddr=127.0.0.1 NodeHostname=localhost $hw Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
# Same node, not the default: a job lands here only when it asks for it (sbatch -p kml).
PartitionName=kml Nodes=$node Default=NO MaxTime=INFINITE State=UP
EOF
cat >"$state/etc/gres.conf" <<EOF
# One fake GPU so jobs asking for --gpus=1 / --gres=gpu:1 can be scheduled; it is /dev/null.
AutoDetect=off
NodeName=$node Name=gpu File=/dev/null
EOF
: >"$state/etc/plugstack.conf"
export SLURM_CONF=$state/etc/slurm.conf
# Snakemake's slurm-jobstep plugin (inside each job) drops every SLURM_* variable, SLURM_CONF included,
# before it runs the rule through a nested `srun`; that srun then looks for /etc/slurm/slurm.conf and
# fails ("Could not establish a configuration source"). Real clusters keep slurm.conf there, but a
# throwaway cluster must not take over that machine-wide path (two test runs at once would collide), so
# STATE_DIR/bin/srun puts SLURM_CONF back; callers put STATE_DIR/bin first on PATH.
mkdir -p "$state/bin"
real_srun=$(command -v srun) || fail "srun not found"
printf '#!/bin/sh\nSLURM_CONF=%q exec %q "$@"\n' "$SLURM_CONF" "$real_srun" >"$state/bin/srun"
chmod 0755 "$state/bin/srun"
printf 'export SLURM_CONF=%q\nexport PATH=%q:"$PATH"\n' "$SLURM_CONF" "$state/bin" >"$state/env"

# ---- daemons, each in the foreground (-D) as a background process of ours
slurmctld -D -c -i -f "$SLURM_CONF" >>"$state/log/slurmctld.out" 2>&1 &
record slurmctld $!
ok=0
for _ in $(seq 1 $((wait_timeout * 2))); do
    if scontrol ping 2>/dev/null | grep -q UP; then ok=1; break; fi
    kill -0 "$(awk '$1=="slurmctld"{print $2}' "$state/pids")" 2>/dev/null || fail "slurmctld exited"
    sleep 0.5
done
[[ $ok == 1 ]] || fail "slurmctld did not answer 'scontrol ping' within ${wait_timeout}s"

mkdir -p "$state/spool/$node"
slurmd -D -N "$node" -f "$SLURM_CONF" >>"$state/log/slurmd.out" 2>&1 &
record slurmd $!
ok=0
for _ in $(seq 1 $((wait_timeout * 2))); do
    st=$(sinfo -h -p debug -n "$node" -o '%T' 2>/dev/null || true)
    if [[ $st == idle ]]; then ok=1; break; fi
    kill -0 "$(awk '$1=="slurmd"{print $2}' "$state/pids")" 2>/dev/null || fail "slurmd exited"
    sleep 0.5
done
[[ $ok == 1 ]] || fail "node $node not idle within ${wait_timeout}s (state: ${st:-none})"

sinfo -N -o '%N %P %T %c %m %G' >&2
cat "$state/env"
