"""Writing files so that a failure leaves no torn file behind and ends in one clear error.

A file is written under a temporary name beside its destination, flushed to disk and renamed over it, and the
rename is flushed too: a reader (or a resumed run) sees either the old complete file or the new complete one,
never a torn one, even after a kill -9 or a power loss. The temporary names carry TEMPORARY_MARK, so that the
leftovers of a killed writer can be found and deleted. Any OSError on the way becomes one line naming the
file: NoSpaceError for a full disk (with the space needed and the space free), WriteError otherwise.
"""

from __future__ import annotations

import errno
import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kml import KmlError

TEMPORARY_MARK = ".tmp-"
# What a write answers when the file system, or the user's quota on it, is full.
_NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})


class WriteError(KmlError, OSError):
    """A file cannot be written (no permission, a missing folder, an I/O error, ...)."""


class NoSpaceError(WriteError):
    """A file cannot be written: its file system (or the quota on it) is full."""


# ---- Errors and free space -------------------------------------------------------------------------------

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


# ---- Atomic files ----------------------------------------------------------------------------------------

@contextmanager
def atomic_file(path: str | Path, needed: int) -> Iterator[io.RawIOBase]:
    """A readable, seekable binary file that becomes `path` when the block ends without an error.

    `needed` (bytes) is only for the message of a full disk. The file survives libraries that cannot handle a
    failed write: after the first failed write it discards the rest, and that write's error is raised when
    the block ends, in place of whatever the library raised after it. Without the temporary file nothing of
    a failed write remains, and an existing `path` is left as it was.
    """
    path = Path(path)
    tmp = _temporary(path)
    with write_errors_explained(path, needed):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "w+b", buffering=0) as raw:
                target = _DiscardAfterError(raw)
                try:
                    yield target
                except Exception:
                    if target.error is None:
                        raise
                if target.error is not None:
                    raise target.error
                os.fsync(raw.fileno())  # some file systems (NFS) report a full disk only here
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    _sync_directory(path.parent)


def atomic_write(path: str | Path, data: bytes | memoryview) -> None:
    """Make `data` the content of `path` (see atomic_file); a full disk raises NoSpaceError."""
    with atomic_file(path, len(data)) as f:
        f.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, text.encode())


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


def remove_temporaries(folder: str | Path) -> None:
    """Delete the temporary files under `folder` that writers killed before their rename left behind."""
    for leftover in Path(folder).rglob(f".*{TEMPORARY_MARK}*"):
        leftover.unlink(missing_ok=True)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMPORARY_MARK}{os.getpid()}")


def _write_all(descriptor: int, data: bytes | memoryview) -> None:
    remaining = memoryview(data).cast("B")
    while remaining:
        remaining = remaining[os.write(descriptor, remaining):]


def _sync_directory(folder: Path) -> None:
    # A rename lives in the directory; without this a power loss could undo it.
    directory = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class _DiscardAfterError(io.RawIOBase):
    """The file `atomic_file` hands out. After a write fails (a full disk) it records the error and discards
    the rest. HDF5 is why: after a failed write h5py cannot close the file and the process crashes at exit (a
    segmentation fault), so HDF5 must never see the failure."""

    def __init__(self, raw: io.FileIO) -> None:
        super().__init__()
        self.raw = raw
        self.error: OSError | None = None

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self.raw.readinto(buffer)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                _write_all(self.raw.fileno(), view)
                return len(view)
            except OSError as error:
                self.error = error
        self.raw.seek(len(view), io.SEEK_CUR)  # where the writer expects the position after a write
        return len(view)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self.raw.truncate(size)
            except OSError as error:
                self.error = error
        return self.raw.tell() if size is None else size
