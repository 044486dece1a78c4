"""Atomic files and random-number-generator state: what a checkpoint needs to survive a kill -9.

A file is written to a temporary name beside its destination, flushed to disk and renamed over it, so a reader
(or a resumed run) sees either the old complete file or the new complete one, never a torn one.
Checkpoints hold only tensors and plain Python values, so they load with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch

from kml import KmlError

TEMPORARY_MARK = ".tmp-"


class CheckpointError(KmlError, ValueError):
    """A checkpoint or model file is unreadable or not what it should be."""


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Call `write(file)` on a temporary file, fsync it and rename it to `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}{TEMPORARY_MARK}{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    # The rename itself lives in the directory; without this a power loss could undo it.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def save(state: dict[str, Any], path: str | Path) -> None:
    atomic_write(path, lambda f: torch.save(state, f))


def load(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint or model file onto the CPU."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file; train the model first (`kml train`)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    # A corrupt or foreign file makes torch raise EOFError, KeyError, RuntimeError, UnpicklingError, ...
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(f"{path}: unreadable ({error}); delete it and run `kml train` again") from None


def remove_temporaries(folder: str | Path) -> None:
    """Delete the temporary files under `folder` that writers killed before their rename left behind."""
    for leftover in Path(folder).rglob(f".*{TEMPORARY_MARK}*"):
        leftover.unlink(missing_ok=True)


def rng_state() -> dict[str, Any]:
    """Every generator a training step might draw from: torch (CPU and each CUDA device), numpy, Python."""
    algorithm, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"algorithm": algorithm, "keys": keys.tolist(), "position": position,
                  "has_gauss": has_gauss, "cached_gaussian": cached_gaussian},
        "python": random.getstate(),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    # A run checkpointed on a GPU may resume on the CPU; the CUDA states then have nowhere to go.
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy = state["numpy"]
    np.random.set_state((numpy["algorithm"], np.array(numpy["keys"], dtype=np.uint32), numpy["position"],
                         numpy["has_gauss"], numpy["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
