"""Atomic files and random-number-generator state: what a checkpoint needs to survive a kill -9.

A file is written to a temporary name beside its destination, flushed to disk and renamed over it, so a reader
(or a resumed run) sees either the old complete file or the new complete one, never a torn one. Its content
is serialized in memory first, so a full disk fails one plain write, with the size it needed known.
Checkpoints hold only tensors and plain Python values, so they load with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import errno
import io
import os
import pickle
import random
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from kml import KmlError
from kml.diskspace import write_errors_explained

TEMPORARY_MARK = ".tmp-"


class CheckpointError(KmlError, ValueError):
    """A checkpoint or model file is unreadable or not what it should be."""


def atomic_write(path: str | Path, data: bytes | memoryview) -> None:
    """Write `data` to a temporary file, fsync it and rename it to `path`; a full disk raises NoSpaceError."""
    path = Path(path)
    tmp = _temporary(path)
    with write_errors_explained(path, len(data)):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            descriptor = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                _write_all(descriptor, data)
                os.fsync(descriptor)  # some file systems (NFS) report a full disk only here
            finally:
                os.close(descriptor)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _sync_directory(path.parent)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, text.encode())


def append_text(path: str | Path, text: str) -> None:
    """Append `text` to `path` (not atomic: a kill may tear it, so readers must skip a torn last line); a full
    disk raises NoSpaceError."""
    data = text.encode()
    with write_errors_explained(path, len(data)):
        descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            _write_all(descriptor, data)
        finally:
            os.close(descriptor)


def _write_all(descriptor: int, data: bytes | memoryview) -> None:
    remaining = memoryview(data)
    while remaining:
        remaining = remaining[os.write(descriptor, remaining):]


def atomic_link(source: Path, path: Path) -> None:
    """Make `path` a hard link to `source` (no second copy on disk), replacing any file there atomically; a
    copy where the file system has no hard links."""
    tmp = _temporary(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, tmp)
    except OSError as error:
        if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        atomic_write(path, source.read_bytes())
        return
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_directory(path.parent)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMPORARY_MARK}{os.getpid()}")


def _sync_directory(folder: Path) -> None:
    # A rename lives in the directory; without this a power loss could undo it.
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


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
        raise CheckpointError(f"{path}: cannot be read ({error.strerror}); give the path of a file written by "
                              "`kml train` that you may read") from None
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
