"""Benchmarks (`kml bench`): how fast the pipeline's parts run on this machine.

Each measurement is one function `(BenchSettings) -> list[Result]`, registered in BENCHMARKS under the name
`--only` selects; adding a measurement is adding such a function. Every result becomes one row appended to
a CSV (columns CSV_COLUMNS), and the Markdown table beside it is rewritten with the latest row of each
(method, shots, device, quick) from the whole CSV.

Timing protocol: a few warm-up iterations (first-touch allocations, lazy initialisation), then several
timed repeats of a fixed number of iterations; a result reports the median over the repeats of seconds per
iteration, and the fastest and slowest repeat as its spread.
"""

from __future__ import annotations

import csv
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch

import kml
from kml import MODES, KmlError
from kml.config import ModelConfig, TaskConfig, TrainConfig
from kml.data.episodes import PIXEL_MAX, MultimodalSampler, SplitImages

CSV_COLUMNS = (
    "date", "device", "method", "ways", "shots", "queries", "meta_batch_size", "image_size", "repeats",
    "seconds_per_iteration", "seconds_per_iteration_min", "seconds_per_iteration_max",
    "meta_batches_per_second", "cpu_seconds_per_iteration", "load_average", "quick", "notes", "kml_version",
    "torch_version",
)

# The paper's two shot settings; every benchmark that depends on K measures both.
SHOTS = (1, 5)


class BenchError(KmlError, ValueError):
    """A benchmark request or results file cannot be used; the message says which and how to fix it."""


@dataclass(frozen=True)
class BenchSettings:
    quick: bool
    warmup: int  # untimed iterations before the first repeat
    repeats: int  # timed repeats; the result is their median
    iterations: int  # iterations per timed repeat


FULL = BenchSettings(quick=False, warmup=5, repeats=7, iterations=20)
# For CI: proves the benchmark runs, measures nothing worth keeping.
QUICK = BenchSettings(quick=True, warmup=1, repeats=2, iterations=1)


@dataclass(frozen=True)
class Timing:
    seconds: tuple[float, ...]  # wall seconds per iteration, one value per timed repeat
    # Process CPU seconds (all threads) per iteration, one per repeat: on a shared machine, wall time
    # measures the other processes too, and CPU time is the steadier figure.
    cpu_seconds: tuple[float, ...]
    # 1-minute load average when timing began; above the core count, other processes were competing.
    load_average: float


@dataclass(frozen=True)
class Result:
    method: str
    device: str
    ways: int
    shots: int
    queries: int
    meta_batch_size: int
    image_size: int
    timing: Timing
    quick: bool
    notes: str

    def row(self) -> dict[str, str]:
        seconds = self.timing.seconds
        median = statistics.median(seconds)
        return {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "device": self.device, "method": self.method, "ways": str(self.ways), "shots": str(self.shots),
            "queries": str(self.queries), "meta_batch_size": str(self.meta_batch_size),
            "image_size": str(self.image_size), "repeats": str(len(seconds)),
            "seconds_per_iteration": f"{median:.6f}",
            "seconds_per_iteration_min": f"{min(seconds):.6f}",
            "seconds_per_iteration_max": f"{max(seconds):.6f}",
            "meta_batches_per_second": f"{1 / median:.3f}",
            "cpu_seconds_per_iteration": f"{statistics.median(self.timing.cpu_seconds):.6f}",
            "load_average": f"{self.timing.load_average:.2f}",
            "quick": str(self.quick), "notes": self.notes,
            "kml_version": kml.__version__, "torch_version": torch.__version__,
        }


def time_iterations(step: Callable[[int], object], settings: BenchSettings) -> Timing:
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


def cpu_description() -> str:
    return f"cpu {platform.machine()} ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


# (classes, images per class) of each mode's train split (REFERENCE §1.2; CUB averages about 60 a class).
TRAIN_SPLIT_SIZES = {"omniglot": (1100, 20), "miniimagenet": (64, 600), "fc100": (60, 600), "cub": (140, 60),
                     "aircraft": (70, 100)}
# Quick runs: just enough classes and images for one 5-way 5-shot 15-query task.
QUICK_SPLIT_SIZE = (6, 20)


def random_splits(sizes: dict[str, tuple[int, int]], image_size: int, seed: int = 0) -> dict[str, SplitImages]:
    """In-memory splits of the given sizes with random pixels: sampling speed does not depend on content."""
    rng = np.random.default_rng(seed)
    splits = {}
    for mode, (classes, per_class) in sizes.items():
        images = rng.integers(0, PIXEL_MAX, size=(classes * per_class, 3, image_size, image_size),
                              dtype=np.uint8, endpoint=True)
        splits[mode] = SplitImages(mode, torch.from_numpy(images), np.arange(classes + 1) * per_class,
                                   tuple(f"class{c}" for c in range(classes)), origin=f"random {mode}")
    return splits


def bench_sampler(settings: BenchSettings) -> list[Result]:
    """Training meta-batches of all five modes per second, converted to float on the CPU as a CPU run does."""
    task, train, image_size = TaskConfig(), TrainConfig(), ModelConfig().image_size
    sizes = {mode: QUICK_SPLIT_SIZE for mode in MODES} if settings.quick else TRAIN_SPLIT_SIZES
    splits = random_splits(sizes, image_size)
    notes = (f"{len(MODES)} modes, round robin; random uint8 images, "
             + ("tiny splits" if settings.quick else "real train-split class and image counts")
             + "; includes the float conversion on the cpu")
    results = []
    for shots in SHOTS:
        sampler = MultimodalSampler(splits, ways=task.ways, shots=shots, queries=task.queries,
                                    meta_batch_size=train.meta_batch_size, seed=train.seed)
        timing = time_iterations(lambda i, sampler=sampler: sampler.meta_batch(i).to("cpu"), settings)
        results.append(Result("sampler", cpu_description(), task.ways, shots, task.queries,
                              train.meta_batch_size, image_size, timing, settings.quick, notes))
    return results


BENCHMARKS: dict[str, Callable[[BenchSettings], list[Result]]] = {"sampler": bench_sampler}


def run_benchmarks(out: Path, only: Sequence[str] | None = None, quick: bool = False) -> list[Result]:
    """Run the chosen benchmarks (all by default), append their rows to `out` and rewrite the Markdown table."""
    names = list(only) if only else list(BENCHMARKS)
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise BenchError(f"--only: unknown benchmarks {unknown}; choose from {', '.join(BENCHMARKS)}")
    settings = QUICK if quick else FULL
    results = [result for name in names for result in BENCHMARKS[name](settings)]
    append_rows(out, [result.row() for result in results])
    out.with_suffix(".md").write_text(markdown_table(out))
    return results


def append_rows(path: Path, rows: list[dict[str, str]]) -> None:
    if path.exists():
        with path.open(newline="") as f:
            header = next(csv.reader(f), None)
        if header is not None and tuple(header) != CSV_COLUMNS:
            raise BenchError(f"{path}: its columns differ from this version's ({', '.join(CSV_COLUMNS)}); "
                             "move it aside or pass another --out")
    path.parent.mkdir(parents=True, exist_ok=True)
    is_new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        if is_new:
            writer.writeheader()
        writer.writerows(rows)


def markdown_table(csv_path: Path) -> str:
    """The latest row of each (method, shots, device, quick) in the CSV, as a Markdown table."""
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    latest = {(r["method"], r["shots"], r["device"], r["quick"]): r for r in rows}
    lines = [
        f"Latest results from `{csv_path.name}` (written by `kml bench`; one row per method, shots, device).",
        "Seconds are wall-clock per iteration (for the sampler: per meta-batch); a load average above the",
        "core count means other processes competed, and the CPU seconds are then the steadier figure.",
        "",
        ("| method | shots | device | seconds / iteration (median) | fastest – slowest repeat | per second "
         "| cpu seconds / iteration | load | quick | date | notes |"),
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(latest.values(), key=lambda r: (r["method"], int(r["shots"]), r["device"], r["quick"])):
        lines.append(f"| {r['method']} | {r['shots']} | {r['device']} | {float(r['seconds_per_iteration']):.4f} "
                     f"| {float(r['seconds_per_iteration_min']):.4f} – {float(r['seconds_per_iteration_max']):.4f} "
                     f"| {float(r['meta_batches_per_second']):.1f} | {float(r['cpu_seconds_per_iteration']):.4f} "
                     f"| {r['load_average']} | {r['quick']} | {r['date']} | {r['notes']} |")
    return "\n".join(lines) + "\n"
