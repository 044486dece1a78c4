"""A write that fails as one clear error: for a full disk, the file, the space it needs and the space left."""

from __future__ import annotations

import errno
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kml import KmlError

# What a write answers when the file system, or the user's quota on it, is full.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class WriteError(KmlError, OSError):
    """A file cannot be written (no permission, a missing folder, an I/O error, ...)."""


class NoSpaceError(WriteError):
    """A file cannot be written: its file system (or the quota on it) is full."""


@contextmanager
def write_errors_explained(path: str | Path, needed: int) -> Iterator[None]:
    """Turn an OSError while writing `path` (`needed` bytes in all) into NoSpaceError for a full disk and
    WriteError otherwise, each one line naming the file."""
    try:
        yield
    except WriteError:
        raise
    except OSError as error:
        if error.errno in _NO_SPACE:
            raise no_space(path, needed) from None
        raise WriteError(f"{path}: cannot write it ({error.strerror or error}); check that its folder may be "
                         "written to, then rerun the same command") from None


def no_space(path: str | Path, needed: int) -> NoSpaceError:
    """The error for `path`, which needs `needed` bytes, not fitting on its file system."""
    return NoSpaceError(f"{path}: not enough disk space: {format_bytes(needed)} needed, "
                        f"{format_bytes(free_bytes(path))} free on its file system (or the quota is full); "
                        "free some space or write elsewhere, then rerun the same command")


def require_free_space(path: str | Path, needed: int) -> None:
    """Refuse to start writing `path` (`needed` bytes) where it cannot fit."""
    if free_bytes(path) < needed:
        raise no_space(path, needed)


def free_bytes(path: str | Path) -> int:
    """Free bytes on the file system that holds `path` (or would, once its folders exist)."""
    existing = Path(path).absolute()
    while not existing.exists():
        existing = existing.parent
    return shutil.disk_usage(existing).free


def format_bytes(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    value, unit = count / 1024, "KiB"
    for larger in ("MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{value:.1f} {unit}"
