"""Which GPU a job takes on a machine with several: each concurrent kml job gets one of its own while free
ones remain. And a warning for GPU-sized work started on a machine without one.

Snakemake runs up to `--cores N` jobs at once and knows nothing of GPUs, so without this every job would
run on the first one. `train.device: auto` on a machine with several visible GPUs therefore claims one for
the life of the process: the first that no other kml process on this machine holds (an flock on a file per
GPU, named by the GPU's UUID, so that processes with different CUDA_VISIBLE_DEVICES agree on which is
which). The kernel releases the claim when the process ends, however it ends. When every GPU is held, jobs
share them, spread by process id. With one visible GPU nothing is claimed.

Limit the GPUs with CUDA_VISIBLE_DEVICES, the number of concurrent GPU jobs with Snakemake's
`--resources gpu=N`, or pin a run with `train.device: cuda:K` (docs/running.md, "Several GPUs").
"""

from __future__ import annotations

import csv
import glob
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from kml import locks

# The claim of this process: (lock folder, GPU ids) -> the index it holds, kept for the process's life.
_claims: dict[tuple[str, tuple[str, ...]], int] = {}


def lock_dir() -> Path:
    """Where the claims live: per machine and user ($KML_GPU_LOCK_DIR overrides it, e.g. for tests)."""
    folder = os.environ.get("KML_GPU_LOCK_DIR") or Path(tempfile.gettempdir()) / f"kml-gpus-{os.getuid()}"
    Path(folder).mkdir(parents=True, exist_ok=True)
    return Path(folder)


def claim(gpu_ids: Sequence[str], folder: Path | None = None) -> int:
    """The index (into gpu_ids) of the GPU this process runs on: the first free one, claimed until it exits;
    when none is free, one shared with others. The same answer on every call in one process."""
    folder = lock_dir() if folder is None else folder
    key = (str(folder), tuple(gpu_ids))
    if key not in _claims:
        free = next((i for i, gpu in enumerate(gpu_ids) if locks.hold_until_exit(folder / _file_name(gpu))),
                    None)
        if free is None:
            free = os.getpid() % len(gpu_ids)
            print(f"kml: every one of the {len(gpu_ids)} GPUs is taken by another kml job; "
                  f"sharing GPU {free}", file=sys.stderr)
        _claims[key] = free
    return _claims[key]


def _file_name(gpu_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", gpu_id) + ".lock"


# ---- GPU-sized work on a machine without a GPU -------------------------------------------------------------
# A workflow whose trainings add up to this many iterations on "auto" or CUDA devices is GPU work (the paper
# preset: 3,220,000; the CPU preset runs on "cpu", the smoke preset a few hundred).
GPU_SCALE_ITERATIONS = 200_000
# `kml bench` labels its rows of the paper preset's estimated hours by part; this module reads the total's.
PRESET_ESTIMATE_LABEL = "paper preset {part}"
PRESET_ESTIMATE = PRESET_ESTIMATE_LABEL.format(part="total")


def gpu_visible() -> bool:
    """Whether this machine has an NVIDIA or AMD GPU, without importing torch (the workflow asks at start)."""
    return bool(glob.glob("/dev/nvidia[0-9]*") or os.path.exists("/dev/kfd") or shutil.which("nvidia-smi"))


def no_gpu_warning(iterations: int, trainings: int, bench_csv: Path) -> str:
    """What to tell a user who starts `iterations` training iterations on a machine without a GPU: the
    measured estimate of the paper preset (`kml bench`'s row in bench_csv, if there) and the CPU preset."""
    lines = [(f"kml: warning: no GPU on this machine, and this configuration trains {trainings} models for "
              f"{iterations:,} iterations in all, which is GPU work.")]
    estimate = _preset_estimate(bench_csv)
    if estimate:
        lines.append(f"  On a CPU the paper preset was estimated at {estimate}.")
    lines.append("  Without a GPU, run the CPU preset instead (a reduced but real reproduction, "
                 "docs/reproduction.md):"
                 "\n    snakemake --cores N --configfile presets/cpu.yaml")
    return "\n".join(lines)


def _preset_estimate(bench_csv: Path) -> str | None:
    try:
        with open(bench_csv, newline="") as f:
            rows = [row for row in csv.DictReader(f) if row.get("method") == PRESET_ESTIMATE]
        row = rows[-1]
        hours = float(row["estimated_hours"])
    except (OSError, IndexError, KeyError, ValueError):
        return None
    return (f"{hours:,.0f} hours ({hours / 24:,.0f} days) on {row['device']}, measured by `kml bench` on "
            f"{row['date'][:10]} ({bench_csv})")
