"""Which GPU a job takes on a machine with several: each concurrent kml job gets one of its own while free
ones remain.

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

import os
import re
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
        free = next((i for i, gpu in enumerate(gpu_ids) if locks.hold_until_exit(folder / _file_name(gpu))), None)
        if free is None:
            free = os.getpid() % len(gpu_ids)
            print(f"kml: every one of the {len(gpu_ids)} GPUs is taken by another kml job; sharing GPU {free}",
                  file=sys.stderr)
        _claims[key] = free
    return _claims[key]


def _file_name(gpu_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", gpu_id) + ".lock"
