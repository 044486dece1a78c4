"""What a benchmark measures besides time: peak memory, the machine's peak FLOP/s, and which machine it is."""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import os
import platform
import time
from pathlib import Path

import torch

from kml.execution import peak_memory_mb as lifetime_peak_memory_mb

KIB, MIB = 2**10, 2**20
# Writing "5" to /proc/self/clear_refs resets the peak resident set size (VmHWM) to the current one (Linux).
CLEAR_REFS, RESET_PEAK_RSS, PROC_STATUS = Path("/proc/self/clear_refs"), "5", Path("/proc/self/status")
# The measured peak is the best of this many timed matrix products (after one untimed).
MATMUL_REPEATS = 5


def cpu_description() -> str:
    return f"cpu {platform.machine()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def device_description(device: torch.device) -> str:
    return cpu_description() if device.type == "cpu" else torch.cuda.get_device_name(device)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak_memory(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return
    release_freed_memory()
    try:
        CLEAR_REFS.write_text(RESET_PEAK_RSS)
    except OSError:  # not Linux: peak_memory_mb falls back to the process's lifetime peak
        pass


def release_freed_memory() -> None:
    """Hand the C heap's free memory back to the system (glibc's malloc_trim), so that the resident set, and
    the peak counted from it after a reset, is live memory rather than what earlier measurements freed and
    glibc kept, which can dwarf the live memory (docs/performance.md)."""
    if platform.libc_ver()[0] == "glibc":
        ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)


def peak_memory_mb(device: torch.device) -> float:
    """Peak allocated GPU memory, or the CPU process's peak resident set size, since `reset_peak_memory`."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / MIB
    try:
        status = PROC_STATUS.read_text()
    except OSError:
        return lifetime_peak_memory_mb(device)
    kibibytes = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM:"))
    return kibibytes * KIB / MIB


def matmul_peak_flops(device: torch.device, size: int) -> float:
    """The machine's measured peak: FLOP/s of the fastest of a few float32 size x size matrix products."""
    a, b = (torch.rand(size, size, device=device) for _ in range(2))
    fastest = math.inf
    for repeat in range(MATMUL_REPEATS + 1):
        synchronize(device)
        begin = time.perf_counter()
        torch.mm(a, b)
        synchronize(device)
        if repeat:  # the first product is the warm-up
            fastest = min(fastest, time.perf_counter() - begin)
    return 2 * size**3 / fastest
