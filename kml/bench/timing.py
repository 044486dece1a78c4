"""Timing loops: seconds per iteration of a step, alone or taking turns with others, and the CPU thread count
a step runs fastest with.

The protocol: a few warm-up iterations (first-touch allocations, lazy initialisation), then several timed
repeats of a fixed number of iterations (`BenchSettings`); a result reports the median over the repeats of
seconds per iteration, and the fastest and slowest repeat as its spread.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from kml.bench.resources import peak_memory_mb, reset_peak_memory, synchronize
from kml.bench.settings import BenchSettings

Step = Callable[[int], object]  # one iteration; it gets a new index, the task set's, on every call


@dataclass(frozen=True)
class Timing:
    seconds: tuple[float, ...]  # wall seconds per iteration, one value per timed repeat
    # Process CPU seconds (all threads) per iteration, one per repeat: on a shared machine, wall time
    # measures the other processes too, and CPU time is the steadier figure.
    cpu_seconds: tuple[float, ...]
    # 1-minute load average when timing began; above the core count, other processes were competing.
    load_average: float


def time_iterations(step: Step, settings: BenchSettings) -> Timing:
    """Wall and CPU seconds per call of `step` in each timed repeat; `step` gets a new index on every call."""
    index = 0
    for _ in range(settings.warmup):
        step(index)
        index += 1
    load_average = os.getloadavg()[0]
    seconds, cpu_seconds = [], []
    for _ in range(settings.repeats):
        wall_begin, cpu_begin = time.perf_counter(), time.process_time()
        for _ in range(settings.iterations):
            step(index)
            index += 1
        seconds.append((time.perf_counter() - wall_begin) / settings.iterations)
        cpu_seconds.append((time.process_time() - cpu_begin) / settings.iterations)
    return Timing(tuple(seconds), tuple(cpu_seconds), load_average)


def time_side_by_side(steps: dict[str, Step], settings: BenchSettings,
                      device: torch.device) -> dict[str, tuple[Timing, float]]:
    """Like `time_iterations`, but the steps take turns repeat by repeat, on the same iteration indices (the
    same tasks), so that a load change on a shared machine hits both alike. Per step: its Timing and its peak
    memory (MiB) in one more, untimed iteration, measured apart because on the CPU it starts from a trimmed
    heap (`reset_peak_memory`), whose pages the iteration then faults in again."""
    for index in range(settings.warmup):
        for step in steps.values():
            step(index)
    synchronize(device)
    load_average = os.getloadavg()[0]
    seconds = {name: [] for name in steps}
    cpu_seconds = {name: [] for name in steps}
    for repeat in range(settings.repeats):
        first = settings.warmup + repeat * settings.iterations
        for name, step in steps.items():
            wall_begin, cpu_begin = time.perf_counter(), time.process_time()
            for index in range(first, first + settings.iterations):
                step(index)
            synchronize(device)
            seconds[name].append((time.perf_counter() - wall_begin) / settings.iterations)
            cpu_seconds[name].append((time.process_time() - cpu_begin) / settings.iterations)
    after = settings.warmup + settings.repeats * settings.iterations
    peaks = {}
    for name, step in steps.items():
        reset_peak_memory(device)
        step(after)
        synchronize(device)
        peaks[name] = peak_memory_mb(device)
    return {name: (Timing(tuple(seconds[name]), tuple(cpu_seconds[name]), load_average), peaks[name])
            for name in steps}


def thread_counts() -> list[int]:
    """Candidate torch thread counts: 1, 2, 4, ... below the core count, and the core count."""
    cores = os.cpu_count() or 1
    return [*(1 << i for i in range(cores.bit_length()) if 1 << i < cores), cores]


def choose_threads(step: Step, settings: BenchSettings, what: str) -> str:
    """Set torch's CPU thread count to the candidate under which `step` (an iteration of `what`) runs fastest;
    describe the choice.

    Measured rather than assumed: on a machine shared with other processes, more threads than free cores
    make OpenMP's barriers wait for threads the scheduler has put aside, and fewer threads win."""
    def with_threads(count: int) -> Step:
        def run(index: int) -> object:
            torch.set_num_threads(count)
            return step(index)
        return run

    measured = time_side_by_side({str(count): with_threads(count) for count in thread_counts()}, settings,
                                 torch.device("cpu"))
    medians = {int(count): statistics.median(timing.seconds) for count, (timing, _) in measured.items()}
    best = min(medians, key=medians.__getitem__)
    torch.set_num_threads(best)
    listing = ", ".join(f"{count}: {seconds:.3g} s" for count, seconds in medians.items())
    return f"{best} torch threads, the fastest of ({listing}) per {what} iteration"
