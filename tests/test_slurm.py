"""The Slurm profile on a real (single-node, localhost) Slurm cluster.

The module fixture installs Debian's slurm-wlm and munge and the Snakemake Slurm plugin when missing
(tests/slurm/install.sh), starts munged, slurmctld and slurmd by hand (tests/slurm/start.sh: one node
with one fake GPU, no accounting) and stops exactly those processes afterwards (tests/slurm/stop.sh),
whatever the test's outcome. The test runs a slice of the smoke preset, one table cell, through
`--profile profiles/slurm` in one temporary copy of the repository and locally in another, checks that
every job Snakemake ran went through sbatch (slurmctld's job table, the jobs' Slurm logs and slurmctld's
log all know the job ids Snakemake reported), that training and evaluation asked Slurm for a GPU, and that
the cell CSV is byte-identical to the local run's. Skipped, with the reason, when not root or when the
packages cannot be installed. See docs/cluster.md.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Self

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "tests" / "slurm"

# One table cell of the smoke preset: synthesizes, downloads and prepares its two datasets, trains one
# model and evaluates it.
PRESET = "presets/smoke.yaml"
CELL = "results/eval/2mode/protonet/1shot.csv"
TARGETS = [CELL]
# The smoke preset runs on CPUs (gpu: 0); both runs here add the paper's GPU requests for these
# resource groups back (config.yaml: resources.train.gpu, resources.evaluate.gpu), so the Slurm run has
# GPU jobs to schedule. Submitted rules starting with these names must ask Slurm for a GPU, others not.
GPU_RESOURCE_GROUPS = ("train", "evaluate")
GPU_RULE_PREFIXES = ("train", "evaluate")
PARTITION = "kml"  # tests/slurm/start.sh: a partition that is not the default one

SNAKEMAKE_TIMEOUT = 600  # seconds per Snakemake run; a hang (e.g. sacct without accounting) fails the test
REPO_COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".snakemake",
    ".pytest_cache",
    ".benchmarks",
    "__pycache__",
    "*.egg-info",
    "build",
    "dist",
    ".venv",
    "venv",
    ".tox",
    ".mypy_cache",
    ".ruff_cache",
)
TOP_LEVEL_OUTPUT_DIRS = {"data", "results", "logs", "benchmarks"}

pytestmark = pytest.mark.slow


@dataclass
class Cluster:
    state: Path
    env: dict[str, str]

    def run(self, *args: str) -> str:
        """Run a Slurm client command against this cluster; its stdout."""
        return subprocess.run(
            args, env=self.env, check=True, capture_output=True, text=True, timeout=60
        ).stdout


def _script(name: str, *args: str, env: dict[str, str] | None = None, timeout: int = 120):
    return subprocess.run(
        ["bash", str(SCRIPTS / name), *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def _alive(pid: int) -> bool:
    """True while pid runs (a zombie waiting for its parent's wait() counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory) -> Cluster:
    """A running single-node cluster for this module; its daemons are stopped by PID at the end."""
    if os.geteuid() != 0:
        pytest.skip(
            "the Slurm test needs root: it apt-get installs slurm-wlm/munge and runs the daemons as root"
        )
    install_env = {**os.environ, "PYTHON": sys.executable}
    try:
        installed = _script("install.sh", env=install_env, timeout=900)
    except subprocess.TimeoutExpired:
        pytest.skip("installing slurm-wlm, munge and snakemake-executor-plugin-slurm took over 15 minutes")
    if installed.returncode != 0:
        pytest.skip(f"cannot install the Slurm test's packages: {installed.stderr.strip()}")

    state = tmp_path_factory.mktemp("slurm") / "state"
    try:
        started = _script("start.sh", str(state))
        if started.returncode != 0:
            pytest.fail(f"the test cluster did not start:\n{started.stderr}", pytrace=False)
        env = {
            **os.environ,
            "SLURM_CONF": str(state / "etc" / "slurm.conf"),
            "PATH": f"{state / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        yield Cluster(state=state, env=env)
    finally:
        pids = (
            [int(line.split()[1]) for line in (state / "pids").read_text().split("\n") if line.strip()]
            if (state / "pids").exists()
            else []
        )
        stopped = _script("stop.sh", str(state))
        still = [pid for pid in pids if _alive(pid)]
        assert stopped.returncode == 0 and not still, (
            f"stop.sh left daemons running: {still}\n{stopped.stderr}"
        )


def _copy_repo(dest: Path) -> Path:
    """The repository's files without outputs, caches or git metadata: a clean checkout to run in."""

    def ignore(directory: str, names: list[str]) -> set[str]:
        ignored = set(REPO_COPY_IGNORE(directory, names))
        if Path(directory) == REPO:
            ignored |= TOP_LEVEL_OUTPUT_DIRS & set(names)
        return ignored

    shutil.copytree(REPO, dest, ignore=ignore, symlinks=True)
    return dest


class Snakemake:
    """`python -m snakemake ARGS` in WORKDIR, in its own process group, output to LOG.

    Used as a context manager: leaving the block (a failed assertion included) kills what is still running
    of that process group, and only it.
    """

    def __init__(self, workdir: Path, args: list[str], env: dict[str, str], log: Path):
        self.cmd = [sys.executable, "-m", "snakemake", *args]
        self.log = log
        with open(log, "w") as out:
            self.proc = subprocess.Popen(
                self.cmd, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        self.deadline = time.monotonic() + SNAKEMAKE_TIMEOUT

    def result(self) -> tuple[int, str]:
        """Wait for the run (fail the test at the deadline): exit status and output."""
        try:
            self.proc.wait(timeout=max(1.0, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(
                f"snakemake ran over {SNAKEMAKE_TIMEOUT}s: {' '.join(self.cmd)}\n{self.output()[-4000:]}"
            )
        return self.proc.returncode, self.output()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        if self.proc.poll() is not None:
            return
        # SIGTERM first: Snakemake then cancels its Slurm jobs; it may wait for them, hence the SIGKILL
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(timeout=grace)
                return
            except subprocess.TimeoutExpired:
                continue

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def _require_workflow() -> None:
    missing = [p for p in ("Snakefile", PRESET, "profiles/slurm/config.yaml") if not (REPO / p).exists()]
    if missing:
        pytest.fail(f"the workflow is incomplete, missing: {', '.join(missing)}")


def _gpu_overlay(path: Path) -> Path:
    """A config overlay with the paper's GPU requests (config.yaml) for GPU_RESOURCE_GROUPS."""
    paper = yaml.safe_load((REPO / "config.yaml").read_text())["resources"]
    gpus = {group: paper[group]["gpu"] for group in GPU_RESOURCE_GROUPS}
    assert all(n >= 1 for n in gpus.values()), f"config.yaml no longer asks for GPUs: {gpus}"
    path.write_text(yaml.safe_dump({"resources": {group: {"gpu": n} for group, n in gpus.items()}}))
    return path


def test_smoke_cell_through_slurm_matches_local_run(slurm_cluster: Cluster, tmp_path: Path):
    _require_workflow()
    started = time.monotonic()
    cluster_repo = _copy_repo(tmp_path / "via_slurm")
    local_repo = _copy_repo(tmp_path / "local")
    configfiles = [PRESET, str(_gpu_overlay(tmp_path / "gpu.yaml"))]
    cores = slurm_cluster.run("sinfo", "--noheader", "--format=%c").split()[0]  # the node's CPUs

    # The same slice twice, at once (the Slurm run mostly waits): locally in one copy, through the Slurm
    # profile as shipped in the other. (--configfile takes several values, so an option must follow it.)
    local_env = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_")}
    slurm_env = {
        **slurm_cluster.env,
        # the profile's two placeholders: the test cluster's non-default partition (so a job there proves
        # that the profile's default-resources reached sbatch) and no account (no accounting, no accounts)
        "KML_SLURM_PARTITION": PARTITION,
        "KML_SLURM_ACCOUNT": "",
    }
    slurm_args = [
        "--profile",
        "profiles/slurm",
        "--configfile",
        *configfiles,
        # test-only: first poll after 10 s, then 30 s (polls come at i, 2i+10, 3i+30 s: jobs here take
        # 18-28 s; the profile's 40 s suits real clusters), and keep every job's Slurm log
        "--slurm-init-seconds-before-status-checks",
        "10",
        "--slurm-keep-successful-logs",
        # no job may ask for more CPUs than the node has; the local run gets the same thread counts
        "--max-threads",
        cores,
        *TARGETS,
    ]
    local_args = ["--configfile", *configfiles, "--cores", cores, *TARGETS]
    with (
        Snakemake(local_repo, local_args, local_env, tmp_path / "local.log") as local,
        Snakemake(cluster_repo, slurm_args, slurm_env, tmp_path / "slurm.log") as slurm,
    ):
        slurm_status, slurm_log = slurm.result()
        slurm_seconds = time.monotonic() - started
        local_status, local_log = local.result()
    assert slurm_status == 0, f"snakemake --profile profiles/slurm failed:\n{slurm_log[-6000:]}"
    assert local_status == 0, f"the local run failed:\n{local_log[-6000:]}"

    # ---- every job Snakemake reports went through sbatch
    submitted = {
        m["slurm_id"]: m["rule"]
        for m in re.finditer(
            r"has been submitted with SLURM jobid (?P<slurm_id>\d+) \(log: \S*/rule_(?P<rule>[A-Za-z0-9_]+)/",
            slurm_log,
        )
    }
    run_ids = set(re.findall(r"SLURM run ID: (\S+)", slurm_log))
    assert len(run_ids) == 1, f"expected one SLURM run ID in the log, found {run_ids}"
    (run_id,) = run_ids
    # Snakemake logs "rule X:" for jobs it hands to the executor and "localrule X:" for localrules
    remote_rules = set(re.findall(r"^rule (\w+):$", slurm_log, flags=re.MULTILINE))
    local_rules = set(re.findall(r"^localrule (\w+):$", slurm_log, flags=re.MULTILINE))
    assert remote_rules, "snakemake ran no rule through the executor"
    assert remote_rules == set(submitted.values()), (
        f"rules run by the executor {sorted(remote_rules)} != rules submitted with sbatch {submitted}"
    )
    for prefix in GPU_RULE_PREFIXES:
        assert any(rule.startswith(prefix) for rule in submitted.values()), (
            f"no {prefix}* job was submitted to Slurm: {submitted}"
        )

    # slurmctld's job table (MinJobAge keeps finished jobs): same ids, our run's name, all COMPLETED
    table = {}
    for line in slurm_cluster.run(
        "squeue", "--states=all", "--noheader", "--format=%i|%j|%T|%P|%k"
    ).splitlines():
        job_id, name, state, partition, comment = line.split("|", 4)
        table[job_id] = (name, state, partition, comment)
    for job_id, rule in submitted.items():
        assert job_id in table, f"Slurm job {job_id} ({rule}) unknown to squeue: {table}"
        name, state, partition, comment = table[job_id]
        assert (name, state, partition) == (run_id, "COMPLETED", PARTITION), (job_id, rule, table[job_id])
        assert comment == f"rule_{rule}" or comment.startswith(f"rule_{rule}_wildcards_"), (
            job_id,
            rule,
            comment,
        )
        # GPU rules asked for a GPU (gpu=1 -> --gpus=1); the others did not
        shown = slurm_cluster.run("scontrol", "show", "job", job_id)
        wants_gpu = "gres:gpu" in shown
        assert wants_gpu == rule.startswith(GPU_RULE_PREFIXES), f"job {job_id} ({rule}) GPU request:\n{shown}"
        # its Slurm log (kept) ran the rule inside the allocation
        logs = list((cluster_repo / ".snakemake" / "slurm_logs").glob(f"rule_{rule}/**/{job_id}.log"))
        assert logs and f"rule {rule}:" in logs[0].read_text(), f"no Slurm log for job {job_id} ({rule})"
    # slurmctld's own log: each id was an sbatch submission (batch job RPC) and completed with exit code 0
    ctld_log = (slurm_cluster.state / "log" / "slurmctld.log").read_text()
    for job_id in submitted:
        assert re.search(rf"_slurm_rpc_submit_batch_job: JobId={job_id}\b", ctld_log), (
            f"job {job_id} not sbatch'ed"
        )
        assert re.search(rf"_job_complete: JobId={job_id} WEXITSTATUS 0\b", ctld_log), (
            f"job {job_id} exit code"
        )

    # ---- the cell is byte-identical to the local run's
    for target in TARGETS:
        a, b = (cluster_repo / target).read_bytes(), (local_repo / target).read_bytes()
        assert a, f"{target} is empty"
        assert a == b, f"{target} differs between the Slurm and the local run"
    print(
        f"\nslurm: {len(submitted)} jobs via sbatch "
        f"{dict(sorted(submitted.items(), key=lambda kv: int(kv[0])))}"
        f", local rules {sorted(local_rules)}; slurm run {slurm_seconds:.0f}s, "
        f"total {time.monotonic() - started:.0f}s; {CELL} identical ({len(a)} bytes)"
    )
