"""Checkpoints and random-number-generator state: what a training run needs to survive a kill -9.

A checkpoint is serialized in memory first and then written atomically (kml/files.py), so a full disk fails
one plain write, with the size it needed known, and a reader never sees a torn file. Checkpoints hold only
tensors and plain Python values, so they load with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import io
import pickle
import random
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kml import KmlError
from kml.files import atomic_write


class CheckpointError(KmlError, ValueError):
    """A checkpoint or model file is unreadable or not what it should be."""


def save(state: dict[str, Any], path: str | Path) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getbuffer())


def load(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint or model file onto the CPU; anything else raises one line saying what it is."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file; train the model first (`kml train`)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about foreign pickles before refusing them
            return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as error:  # a folder, no permission, an I/O error
        raise CheckpointError(f"{path}: cannot be read ({error.strerror}); give the path of a file written "
                              "by `kml train` that you may read") from None
    # A corrupt or foreign file makes torch raise EOFError, KeyError, RuntimeError, UnpicklingError, ...
    except Exception as error:  # noqa: BLE001
        raise CheckpointError(f"{path}: {_not_loadable(path, error)}") from None


_RETRAIN = "delete it and run `kml train` again"
_FOREIGN = "give a file written by `kml train`"


def _not_loadable(path: Path, error: Exception) -> str:
    """What a file torch cannot load is, and how to replace it (torch's own messages run to many lines)."""
    with open(path, "rb") as f:
        head = f.read(64)
    size = path.stat().st_size
    if size == 0:
        return f"empty file (0 bytes), as a full disk or an interrupted copy leaves; {_RETRAIN}"
    if head.lstrip()[:14].lower().startswith((b"<!doctype html", b"<html")):
        return ("an HTML page, not a model: a download that got an error or sign-in page instead; fetch it "
                f"again, or {_RETRAIN}")
    if head.startswith(b"PK\x03\x04"):
        if isinstance(error, pickle.UnpicklingError) and zipfile.is_zipfile(path):
            return ("a PyTorch file holding Python objects besides tensors, so not one written by kml (kml "
                    f"loads only tensors and plain values: loading objects can run code); {_FOREIGN}")
        return f"a truncated or corrupt PyTorch file ({size} bytes); {_RETRAIN}"
    if head.startswith(b"\x80"):
        return f"a Python pickle, not a PyTorch file written by kml; {_FOREIGN}"
    return f"not a PyTorch file (it starts with {head[:8]!r}); {_FOREIGN}"


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
