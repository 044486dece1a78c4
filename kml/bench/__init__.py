"""Benchmarks (`kml bench`): how fast the pipeline's parts run on this machine.

Each benchmark is one function `(BenchSettings) -> iterable of results`, registered in BENCHMARKS under the
name `--only` selects; adding a measurement is adding such a function. Each result becomes a row of the
results CSV and its Markdown tables (output.py) as soon as it is measured.

    settings.py      what a run is asked for, and how many times it repeats a measurement
    timing.py        timing loops (alone, or taking turns) and the CPU thread count
    resources.py     peak memory, the machine's peak FLOP/s, the device's description
    workload.py      the random-image splits, sizes and run configurations measured; the training iteration
    equivalence.py   kml's methods against the released-code baseline (kml/baseline.py), checked in float64
    estimate.py      the paper preset's estimated compute time from the measured costs and the plan's jobs
    output.py        result rows, the CSV and the Markdown tables
    sampler.py, transference.py, training.py, bf16.py: the benchmarks
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from kml.bench.bf16 import bench_bf16
from kml.bench.output import Row, append_rows, markdown_table, prepare_csv, summary_line
from kml.bench.sampler import bench_sampler
from kml.bench.settings import BenchError, BenchSettings, WorkflowPlan, requested_settings
from kml.bench.training import bench_training
from kml.bench.transference import bench_transference

BENCHMARKS: dict[str, Callable[[BenchSettings], Iterable[Row]]] = {"sampler": bench_sampler,
                                                                   "transference": bench_transference,
                                                                   "training": bench_training,
                                                                   "bf16": bench_bf16}
# Run only when named with --only: bf16 times every training configuration again, for an option that is off
# by default, and a paper-size transference analysis per method and shots is long on a CPU
# (docs/performance.md).
OPT_IN = ("bf16", "transference")


def chosen_benchmarks(only: Sequence[str] | None) -> list[str]:
    """The benchmarks `--only` names (by default all but OPT_IN's), after checking the names."""
    names = list(only) if only else [name for name in BENCHMARKS if name not in OPT_IN]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise BenchError(f"--only: unknown benchmarks {unknown}; choose from {', '.join(BENCHMARKS)}")
    return names


def estimates_paper_preset(only: Sequence[str] | None, methods: Sequence[str] | None,
                           shots: Sequence[int] | None) -> bool:
    """Whether a run with these options ends with the paper-preset estimate, which needs the workflow's plan:
    it runs the training benchmark for every joint method at both shot counts."""
    training = "training" in chosen_benchmarks(only)
    return training and requested_settings(False, methods, shots).every_configuration


def run_benchmarks(out: Path, only: Sequence[str] | None = None, quick: bool = False,
                   methods: Sequence[str] | None = None, shots: Sequence[int] | None = None,
                   workflow: WorkflowPlan | None = None) -> list[Row]:
    """Run the chosen benchmarks (by default all but OPT_IN's); append each result's row to `out` as soon as
    it is measured (a long run interrupted keeps what it measured), rewrite the Markdown table beside it and
    print a line. `workflow`: the jobs the paper-preset estimate counts (None: no estimate)."""
    names = chosen_benchmarks(only)
    settings = requested_settings(quick, methods, shots, workflow)
    prepare_csv(out)
    results = []
    for name in names:
        for result in BENCHMARKS[name](settings):
            row = result.row()
            append_rows(out, [row])
            out.with_suffix(".md").write_text(markdown_table(out))
            print(f"kml bench {name}: {summary_line(row)}", flush=True)
            results.append(result)
    return results
