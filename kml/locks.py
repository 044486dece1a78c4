"""Exclusive lock files: one process at a time in a run folder, or on one file being downloaded.

`exclusive_lock(path, busy)` holds an advisory `flock` on `path` for a with-block and writes the holder
("PID 1234 on node17") into the file, so whoever finds the lock taken can say who holds it. The kernel
releases a flock when its holder dies, however it dies, so a lock file left behind by a killed process
never blocks anyone: the next process simply takes it over. The file is deleted on release.

Deleting a lock file is safe only with care: a rival may have opened the file just before it was deleted
and then lock a file nobody else can see any more. So a holder checks, once locked, that `path` is still
the file it locked, and starts over if not.

Shared file systems (a Slurm job's run folder): on NFS, Linux implements flock with the NFS lock manager,
so it keeps out processes on other nodes too. Lustre does so only when mounted with `-o flock`; with
`localflock` it keeps out processes on the same node only, and without either flock fails: kml then warns
and goes on unprotected.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

# flock's answers on file systems without locking (NFS mounted nolock, Lustre without -o flock).
_NO_LOCKING = {errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL}
_UNKNOWN_HOLDER = "another process"


@contextmanager
def exclusive_lock(path: Path, busy: Callable[[str], None]) -> Iterator[None]:
    """Hold an exclusive lock on `path` for the with-block.

    If another process holds it, `busy(holder)` is called first: raising there refuses, returning waits for
    the lock. `holder` is what the holding process recorded, e.g. "PID 1234 on node17".
    """
    while (descriptor := _lock(path, busy)) is None:
        pass  # the previous holder deleted the file we had locked: lock the new one
    try:
        _record_holder(descriptor)
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(descriptor)


def hold_until_exit(path: Path) -> bool:
    """Lock `path` for the rest of this process's life if no other process holds it; whether it did.

    The file stays (another process's lock on it must keep meaning the same file); the kernel releases the
    lock when the process ends.
    """
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    if not _flock(descriptor, path, blocking=False):
        os.close(descriptor)
        return False
    _record_holder(descriptor)  # the descriptor stays open: closing it would release the lock
    return True


def _lock(path: Path, busy: Callable[[str], None]) -> int | None:
    """A descriptor of `path`, locked, or None if the file was replaced while we waited for it."""
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _flock(descriptor, path, blocking=False):
            busy(_holder(descriptor))
            _flock(descriptor, path, blocking=True)
        if _is_current(descriptor, path):
            return descriptor
    except BaseException:
        os.close(descriptor)
        raise
    os.close(descriptor)
    return None


def _flock(descriptor: int, path: Path, *, blocking: bool) -> bool:
    """Lock; False if another process holds the lock and `blocking` is off."""
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as error:
        if error.errno not in _NO_LOCKING:
            raise
        print(f"kml: warning: cannot lock {path} ({error.strerror}): this file system does not support "
              "locks, so nothing keeps a second process out", file=sys.stderr)
    return True


def _is_current(descriptor: int, path: Path) -> bool:
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    opened = os.fstat(descriptor)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


def _holder(descriptor: int) -> str:
    recorded = os.pread(descriptor, 256, 0).decode(errors="replace").strip()
    return recorded or _UNKNOWN_HOLDER


def _record_holder(descriptor: int) -> None:
    try:
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, f"PID {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    except OSError:
        pass  # e.g. a full disk: the lock holds all the same, only its holder goes unnamed
