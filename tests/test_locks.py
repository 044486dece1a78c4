"""Lock files: the holder is named, a dead holder never blocks, a waiter gets the lock, nothing is left."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from kml.locks import exclusive_lock

# Holds the lock given as argv[1], says so on stdout, then sleeps until killed.
HOLDER = """
import sys, time
from pathlib import Path
from kml.locks import exclusive_lock
with exclusive_lock(Path(sys.argv[1]), busy=print):
    print("held", flush=True)
    time.sleep(600)
"""


class Refused(Exception):
    pass


def _refuse(holder: str) -> None:
    raise Refused(holder)


@pytest.fixture
def holder(tmp_path):
    """A process that holds tmp_path/run.lock until the test kills it."""
    process = subprocess.Popen([sys.executable, "-c", HOLDER, str(tmp_path / "run.lock")],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n"
    yield process
    process.kill()
    process.wait()


def test_a_held_lock_names_its_holder_and_a_dead_holder_blocks_nobody(tmp_path, holder):
    lock = tmp_path / "run.lock"
    with pytest.raises(Refused, match=f"^PID {holder.pid} on {socket.gethostname()}$"), \
            exclusive_lock(lock, busy=_refuse):
        pass
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert lock.exists()  # left behind by the killed holder, unlocked by the kernel
    with exclusive_lock(lock, busy=_refuse):
        assert lock.exists()
    assert not lock.exists()


def test_a_waiter_takes_the_lock_once_released_even_though_the_file_was_deleted(tmp_path):
    lock = tmp_path / "run.lock"
    waiting, inside = threading.Event(), []

    def wait_for_lock() -> None:
        with exclusive_lock(lock, busy=lambda holder: waiting.set()):
            inside.append(lock.exists())

    with exclusive_lock(lock, busy=_refuse):
        waiter = threading.Thread(target=wait_for_lock)
        waiter.start()
        assert waiting.wait(20)
        time.sleep(0.1)  # let the waiter block on the file about to be deleted
        assert inside == []
    waiter.join(20)
    # The waiter locked the deleted file first, saw that, and locked the file now at the path instead.
    assert inside == [True] and not lock.exists()
