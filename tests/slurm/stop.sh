#!/usr/bin/env bash
# Stop the cluster that tests/slurm/start.sh STATE_DIR started:
#
#   tests/slurm/stop.sh STATE_DIR
#
# First cancels whatever jobs are still on that (private) cluster, so no job step outlives it, then stops
# exactly the processes listed in STATE_DIR/pids, in reverse start order (slurmd, slurmctld, munged):
# SIGTERM, up to 15 s grace, then SIGKILL. A PID is only signalled while /proc/PID/cmdline still names the
# daemon it was recorded for (no stray kill of a recycled PID). Removes STATE_DIR/pids when done, so a
# second start.sh in the same STATE_DIR works. Idempotent: stopping a stopped cluster is a no-op.
set -uo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

if [[ $# -ne 1 ]]; then
    echo "usage: $0 STATE_DIR" >&2
    exit 64
fi
state=$1
pids_file=$state/pids
[[ -f $pids_file ]] || exit 0

# is PID alive and still the daemon NAME we started?
ours() {
    local pid=$1 name=$2 cmd
    [[ -r /proc/$pid/cmdline ]] || return 1
    cmd=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null) || return 1
    [[ $cmd == *"$name"* ]]
}

# cancel leftover jobs (a failed test) while slurmctld still runs; the cluster is private, so all of them
ctld_pid=$(awk '$1=="slurmctld"{print $2}' "$pids_file")
if [[ -n $ctld_pid && -f $state/etc/slurm.conf ]] && ours "$ctld_pid" slurmctld; then
    export SLURM_CONF=$state/etc/slurm.conf
    if [[ -n $(squeue -h -t PD,R,CG,CF,S -o %i 2>/dev/null) ]]; then
        scancel --full --quiet --user="$(id -un)" 2>/dev/null || true
        for _ in $(seq 1 20); do
            [[ -z $(squeue -h -t PD,R,CG,CF,S -o %i 2>/dev/null) ]] && break
            sleep 0.5
        done
    fi
fi

status=0
while read -r name pid; do
    [[ -n ${pid:-} ]] || continue
    ours "$pid" "$name" || continue
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 30); do
        ours "$pid" "$name" || break
        sleep 0.5
    done
    if ours "$pid" "$name"; then
        echo "stop.sh: $name ($pid) ignored SIGTERM, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
        if ours "$pid" "$name"; then
            echo "stop.sh: $name ($pid) still alive" >&2
            status=1
        fi
    fi
done < <(tac "$pids_file")

[[ $status == 0 ]] && rm -f "$pids_file"
exit $status
