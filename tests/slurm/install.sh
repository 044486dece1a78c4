#!/usr/bin/env bash
# Install what the single-node test cluster needs, idempotently and quietly:
#   Debian's slurm-wlm (slurmctld, slurmd, sbatch, squeue, ...) and munge, via apt-get, when missing;
#   snakemake-executor-plugin-slurm, via pip, when missing (skip with KML_SLURM_SKIP_PIP=1).
# Exit status 0: everything is there. Non-zero: the reason is printed on stderr (the test skips with it).
set -euo pipefail

# Daemons live in /usr/sbin, which a non-login PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"
need_apt=()
for bin in slurmctld slurmd sbatch squeue scontrol sinfo scancel; do
    command -v "$bin" >/dev/null 2>&1 || { need_apt+=(slurm-wlm); break; }
done
for bin in munged mungekey; do
    command -v "$bin" >/dev/null 2>&1 || { need_apt+=(munge); break; }
done

if [[ ${#need_apt[@]} -gt 0 ]]; then
    if [[ $(id -u) -ne 0 ]]; then
        echo "install.sh: ${need_apt[*]} missing and not root, cannot apt-get install" >&2
        exit 2
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "install.sh: ${need_apt[*]} missing and no apt-get on this machine" >&2
        exit 2
    fi
    log=$(mktemp)
    export DEBIAN_FRONTEND=noninteractive
    if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_apt[@]}"; } >"$log" 2>&1; then
        echo "install.sh: apt-get install ${need_apt[*]} failed:" >&2
        tail -n 15 "$log" >&2
        rm -f "$log"
        exit 3
    fi
    rm -f "$log"
fi

if [[ ${KML_SLURM_SKIP_PIP:-0} != 1 ]]; then
    py=${PYTHON:-python3}
    if ! "$py" -c 'import snakemake_executor_plugin_slurm' >/dev/null 2>&1; then
        if ! "$py" -m pip install --quiet --disable-pip-version-check snakemake-executor-plugin-slurm >/dev/null 2>&1; then
            echo "install.sh: pip install snakemake-executor-plugin-slurm failed" >&2
            exit 4
        fi
    fi
fi
exit 0
