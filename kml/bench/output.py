"""The results of `kml bench`: one row per result, appended to a CSV (columns CSV_COLUMNS), and the Markdown
tables beside it, rewritten with the latest row of each (method, shots, device, quick) from the whole CSV."""

from __future__ import annotations

import csv
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import torch

import kml
from kml.bench.settings import BenchError
from kml.bench.timing import Timing
from kml.config import RunConfig
from kml.gpus import PRESET_ESTIMATE_LABEL

CSV_COLUMNS = (
    "date", "device", "method", "ways", "shots", "queries", "meta_batch_size", "image_size", "repeats",
    "seconds_per_iteration", "seconds_per_iteration_min", "seconds_per_iteration_max",
    "meta_batches_per_second", "cpu_seconds_per_iteration", "load_average", "quick", "notes", "kml_version",
    "torch_version",
    # training: the released code's way side by side, evaluation, memory, work done; paper-preset estimate
    "baseline_seconds_per_iteration", "baseline_seconds_per_iteration_min",
    "baseline_seconds_per_iteration_max", "baseline_cpu_seconds_per_iteration", "speedup", "cpu_speedup",
    "seconds_per_eval_task", "peak_memory_mb", "baseline_peak_memory_mb", "flops_per_iteration",
    "flops_per_second", "peak_flops_per_second", "fraction_of_peak", "baseline_fraction_of_peak",
    "max_relative_error", "estimated_hours",
)

HOUR = 3600


class Row(Protocol):
    def row(self) -> dict[str, str]: ...


@dataclass(frozen=True)
class Result:
    """A timed step other than a training iteration: a meta-batch's sampling, a transference analysis."""

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


@dataclass(frozen=True)
class TrainingResult:
    """One configuration's meta-training iteration, fast path (`timing`) and, if measured, baseline."""

    method: str
    device: str
    config: RunConfig
    timing: Timing
    baseline: Timing | None
    eval_seconds_per_task: float | None
    peak_memory_mb: float
    baseline_peak_memory_mb: float | None
    flops: float | None  # per iteration, counted on the baseline
    peak_flops: float
    max_relative_error: float | None
    quick: bool
    notes: str

    def row(self) -> dict[str, str]:
        config, seconds = self.config, statistics.median(self.timing.seconds)
        cpu_seconds = statistics.median(self.timing.cpu_seconds)
        row = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"), "device": self.device,
            "method": self.method, "ways": str(config.task.ways), "shots": str(config.task.shots),
            "queries": str(config.task.queries), "meta_batch_size": str(config.train.meta_batch_size),
            "image_size": str(config.model.image_size), "repeats": str(len(self.timing.seconds)),
            "seconds_per_iteration": f"{seconds:.6f}",
            "seconds_per_iteration_min": f"{min(self.timing.seconds):.6f}",
            "seconds_per_iteration_max": f"{max(self.timing.seconds):.6f}",
            "meta_batches_per_second": f"{1 / seconds:.4f}",
            "cpu_seconds_per_iteration": f"{cpu_seconds:.6f}",
            "load_average": f"{self.timing.load_average:.2f}", "quick": str(self.quick), "notes": self.notes,
            "kml_version": kml.__version__, "torch_version": torch.__version__,
            "peak_memory_mb": f"{self.peak_memory_mb:.1f}", "peak_flops_per_second": f"{self.peak_flops:.4g}",
        }
        if self.eval_seconds_per_task is not None:
            row["seconds_per_eval_task"] = f"{self.eval_seconds_per_task:.6f}"
        if self.flops is not None:
            row |= {"flops_per_iteration": f"{self.flops:.4g}",
                    "flops_per_second": f"{self.flops / seconds:.4g}",
                    "fraction_of_peak": f"{self.flops / seconds / self.peak_flops:.4f}"}
        if self.baseline is not None:
            base = statistics.median(self.baseline.seconds)
            row |= {
                "baseline_seconds_per_iteration": f"{base:.6f}",
                "baseline_seconds_per_iteration_min": f"{min(self.baseline.seconds):.6f}",
                "baseline_seconds_per_iteration_max": f"{max(self.baseline.seconds):.6f}",
                "baseline_cpu_seconds_per_iteration": f"{statistics.median(self.baseline.cpu_seconds):.6f}",
                "speedup": f"{base / seconds:.3f}",
                "cpu_speedup": f"{statistics.median(self.baseline.cpu_seconds) / cpu_seconds:.3f}",
                "baseline_peak_memory_mb": f"{self.baseline_peak_memory_mb:.1f}",
                "max_relative_error": f"{self.max_relative_error:.2e}",
            }
            if self.flops is not None:
                row["baseline_fraction_of_peak"] = f"{self.flops / base / self.peak_flops:.4f}"
        return row


@dataclass(frozen=True)
class EstimateResult:
    """One part of the paper preset's estimated compute time on this machine."""

    part: str  # training, evaluation, transference, total
    device: str
    seconds: float
    quick: bool
    notes: str

    def row(self) -> dict[str, str]:
        return {"date": datetime.now(UTC).isoformat(timespec="seconds"), "device": self.device,
                "method": PRESET_ESTIMATE_LABEL.format(part=self.part), "shots": "", "quick": str(self.quick),
                "notes": self.notes,
                "estimated_hours": f"{self.seconds / HOUR:.2f}", "kml_version": kml.__version__,
                "torch_version": torch.__version__}


def summary_line(row: dict[str, str]) -> str:
    """One result in a line, for progress output."""
    what = f"{row['method']}" + (f" {row['shots']}-shot" if row["shots"] else "")
    if row.get("estimated_hours"):
        return f"{what}: {float(row['estimated_hours']):.1f} hours estimated"
    line = f"{what}: {float(row['seconds_per_iteration']):.4g} s per iteration"
    if row.get("speedup"):
        line += f", baseline {float(row['baseline_seconds_per_iteration']):.4g} s ({row['speedup']}x)"
    return line


def prepare_csv(path: Path) -> None:
    """Check that an existing results CSV can take this version's rows; add columns it lacks."""
    if not path.exists():
        return
    with path.open(newline="") as f:
        header = next(csv.reader(f), None)
    if header is not None and tuple(header) != CSV_COLUMNS:
        if not set(header) < set(CSV_COLUMNS):
            raise BenchError(f"{path}: its columns differ from this version's ({', '.join(CSV_COLUMNS)}); "
                             "move it aside or pass another --out")
        _add_columns(path)


def append_rows(path: Path, rows: list[dict[str, str]]) -> None:
    """Append rows to a results CSV that `prepare_csv` has checked (or a new one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    is_new = not path.exists() or path.stat().st_size == 0
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        if is_new:
            writer.writeheader()
        writer.writerows(rows)


def _add_columns(path: Path) -> None:
    """Rewrite a CSV written before columns were added: the new columns empty in its rows."""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def markdown_table(csv_path: Path) -> str:
    """The latest row of each (method, shots, device, quick) in the CSV, as Markdown tables: the training
    comparison and the paper-preset estimate apart from the others."""
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    latest = {(r["method"], r["shots"], r["device"], r["quick"]): r for r in rows}
    estimates = [r for r in latest.values() if r.get("estimated_hours")]
    trainings = [r for r in latest.values() if r.get("peak_memory_mb")]
    latest = {key: r for key, r in latest.items() if r not in estimates and r not in trainings}
    about = [
        f"Latest results from `{csv_path.name}` (written by `kml bench`; one row per method, shots, device).",
        "Seconds are wall-clock per iteration (for the sampler: per meta-batch); a load average above the",
        "core count means other processes competed, and the CPU seconds are then the steadier figure.",
    ]
    columns = ["method", "shots", "device", "seconds / iteration (median)", "fastest – slowest repeat",
               "per second", "cpu seconds / iteration", "load", "quick", "date", "notes"]
    lines = _table(about, columns, (
        f"| {r['method']} | {r['shots']} | {r['device']} | {float(r['seconds_per_iteration']):.4f} "
        f"| {float(r['seconds_per_iteration_min']):.4f} – {float(r['seconds_per_iteration_max']):.4f} "
        f"| {float(r['meta_batches_per_second']):.1f} | {float(r['cpu_seconds_per_iteration']):.4f} "
        f"| {r['load_average']} | {r['quick']} | {r['date']} | {r['notes']} |"
        for r in sorted(latest.values(),
                        key=lambda r: (r["method"], int(r["shots"]), r["device"], r["quick"]))))
    if trainings:
        lines += ["", *training_table(trainings)]
    if estimates:
        lines += ["", *estimate_table(estimates)]
    return "\n".join(lines) + "\n"


def _table(about: list[str], columns: list[str], rows: Iterable[str]) -> list[str]:
    """A Markdown table's lines: the lines `about` it, a blank line, its header and its rows."""
    return [*about, "", f"| {' | '.join(columns)} |", "|" + "---|" * len(columns), *rows]


def _number(value: str, spec: str) -> str:
    return format(float(value), spec) if value else "–"


def training_table(rows: list[dict[str, str]]) -> list[str]:
    about = [
        "Meta-training iterations: kml's fast path against the released code's way (baseline), same weights",
        "and tasks, taking turns; seconds are wall-clock medians (fastest – slowest repeat); the speedup is",
        "baseline / fast. FLOPs are counted on the baseline's iteration (the work both do); the peak is the",
        "fastest float32 matrix product measured in the same run.",
    ]
    columns = ["method", "shots", "device", "s / iteration", "baseline s / iteration", "speedup",
               "cpu speedup", "s / eval task", "peak MB (baseline)", "GFLOP / iteration",
               "fraction of peak (baseline)", "max rel. error", "load", "quick", "date", "notes"]
    return _table(about, columns, (
        f"| {r['method']} | {r['shots']} | {r['device']} | {float(r['seconds_per_iteration']):.3f} "
        f"({float(r['seconds_per_iteration_min']):.3f} – {float(r['seconds_per_iteration_max']):.3f}) "
        f"| {_number(r['baseline_seconds_per_iteration'], '.3f')} "
        f"({_number(r['baseline_seconds_per_iteration_min'], '.3f')} – "
        f"{_number(r['baseline_seconds_per_iteration_max'], '.3f')}) "
        f"| {_number(r['speedup'], '.2f')} | {_number(r['cpu_speedup'], '.2f')} "
        f"| {_number(r['seconds_per_eval_task'], '.4f')} | {float(r['peak_memory_mb']):.0f} "
        f"({_number(r['baseline_peak_memory_mb'], '.0f')}) "
        f"| {_number(r['flops_per_iteration'] and str(float(r['flops_per_iteration']) / 1e9), '.1f')} "
        f"| {_number(r['fraction_of_peak'], '.3f')} ({_number(r['baseline_fraction_of_peak'], '.3f')}) "
        f"| {r['max_relative_error'] or '–'} | {r['load_average']} | {r['quick']} | {r['date']} "
        f"| {r['notes']} |"
        for r in sorted(rows, key=lambda r: (r["device"], r["quick"], r["method"], int(r["shots"])))))


def estimate_table(rows: list[dict[str, str]]) -> list[str]:
    about = [
        "The paper preset's estimated compute time on the measuring machine: measured seconds per iteration",
        "and per evaluation task times the job counts of kml/plan.py on the workflow configuration that the",
        "notes name.",
    ]
    return _table(about, ["part", "device", "hours", "quick", "date", "notes"], (
        f"| {r['method']} | {r['device']} | {float(r['estimated_hours']):.1f} | {r['quick']} "
        f"| {r['date']} | {r['notes']} |"
        for r in sorted(rows, key=lambda r: (r["device"], r["quick"], r["date"]))))
