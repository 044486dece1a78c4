"""Benchmarks (`kml bench`): how fast the pipeline's parts run on this machine.

Each measurement is one function `(BenchSettings) -> list[Result]`, registered in BENCHMARKS under the name
`--only` selects; adding a measurement is adding such a function. Every result becomes one row appended to
a CSV (columns CSV_COLUMNS), and the Markdown table beside it is rewritten with the latest row of each
(method, shots, device, quick) from the whole CSV.

Timing protocol: a few warm-up iterations (first-touch allocations, lazy initialisation), then several
timed repeats of a fixed number of iterations; a result reports the median over the repeats of seconds per
iteration, and the fastest and slowest repeat as its spread.

`training` (the speed issue's benchmark) compares kml's meta-training iteration with the released code's way
of computing one (`ReleasedStyle`), on the same weights and tasks, after checking that both give the same
loss and gradients; the two take turns repeat by repeat, so that a shared machine's load hits both alike.
From the measured seconds and kml/plan.py's job counts it estimates the paper preset's compute time.
"""

from __future__ import annotations

import copy
import csv
import ctypes
import ctypes.util
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

import kml
from kml import MODES, KmlError
from kml.baseline import ReleasedImages, ReleasedStyle, released_splits
from kml.config import (
    EvalConfig,
    MAMLConfig,
    ModelConfig,
    RunConfig,
    TaskConfig,
    TrainConfig,
    run_config_from_dict,
)
from kml.data.episodes import PIXEL_MAX, MetaBatch, MultimodalSampler, SplitImages
from kml.execution import Execution, resolve_device
from kml.execution import peak_memory_mb as lifetime_peak_memory_mb
from kml.methods.base import MetaLearner
from kml.methods.registry import build_method
from kml.methods.table import JOINT_METHOD_NAMES as JOINT_METHODS
from kml.plan import Plan
from kml.train import build_optimizers, training_step

CSV_COLUMNS = (
    "date", "device", "method", "ways", "shots", "queries", "meta_batch_size", "image_size", "repeats",
    "seconds_per_iteration", "seconds_per_iteration_min", "seconds_per_iteration_max",
    "meta_batches_per_second", "cpu_seconds_per_iteration", "load_average", "quick", "notes", "kml_version",
    "torch_version",
    # training: the released code's way side by side, evaluation, memory, work done; paper-preset estimate
    "baseline_seconds_per_iteration", "baseline_seconds_per_iteration_min", "baseline_seconds_per_iteration_max",
    "baseline_cpu_seconds_per_iteration", "speedup", "cpu_speedup", "seconds_per_eval_task", "peak_memory_mb",
    "baseline_peak_memory_mb", "flops_per_iteration", "flops_per_second", "peak_flops_per_second",
    "fraction_of_peak", "baseline_fraction_of_peak", "max_relative_error", "estimated_hours",
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
    methods: tuple[str, ...] | None = None  # `--methods`: the methods to measure (None: every one)
    shots: tuple[int, ...] = SHOTS  # `--shots`


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


def bench_sampler(settings: BenchSettings) -> Iterator[Result]:
    """Training meta-batches of all five modes per second, converted to float on the CPU as a CPU run does."""
    task, train, image_size = TaskConfig(), TrainConfig(), ModelConfig().image_size
    sizes = {mode: QUICK_SPLIT_SIZE for mode in MODES} if settings.quick else TRAIN_SPLIT_SIZES
    splits = random_splits(sizes, image_size)
    notes = (f"{len(MODES)} modes, round robin; random uint8 images, "
             + ("tiny splits" if settings.quick else "real train-split class and image counts")
             + "; includes the float conversion on the cpu")
    for shots in SHOTS:
        sampler = MultimodalSampler(splits, ways=task.ways, shots=shots, queries=task.queries,
                                    meta_batch_size=train.meta_batch_size, seed=train.seed)
        timing = time_iterations(lambda i, sampler=sampler: sampler.meta_batch(i).to("cpu"), settings)
        yield Result("sampler", cpu_description(), task.ways, shots, task.queries, train.meta_batch_size,
                     image_size, timing, settings.quick, notes)


def bench_transference(settings: BenchSettings) -> Iterator[Result]:
    """One snapshot's transference analysis (`kml transference`: TransferenceConfig's sources x targets, plus
    the targets' self lookaheads) against as many training iterations of the same method as there are
    sources, i.e. the cost of taking each lookahead as a training step; 2Mode-dagger, random images."""
    from kml import transference as tr
    from kml.config import TransferenceConfig

    device = resolve_device("auto")
    # Quick: tiny networks and task sets; full: the paper's networks and TransferenceConfig's defaults.
    model = ModelConfig(channels=(8, 8, 8, 8), image_size=16, embedding_dim=8) if settings.quick else ModelConfig()
    analysis = TransferenceConfig(sources=4, targets=2, batch_size=2) if settings.quick else TransferenceConfig()
    task, train = TaskConfig(), TrainConfig()
    # Task content does not change the speed, so the smallest splits that hold a task do.
    splits = random_splits({mode: QUICK_SPLIT_SIZE for mode in (analysis.source_mode, analysis.target_mode)},
                           model.image_size)
    where = cpu_description() if device.type == "cpu" else torch.cuda.get_device_name(device)
    for name in settings.methods or JOINT_METHODS:
        for shots in settings.shots:
            config = RunConfig(method=name, modes=tuple(splits), task=replace(task, shots=shots), model=model,
                               transference=analysis)
            method = build_method(config).to(device)
            optimizers = build_optimizers(method, config.optim)
            sampler = MultimodalSampler(splits, ways=task.ways, shots=shots, queries=task.queries,
                                        meta_batch_size=train.meta_batch_size, seed=train.seed)
            method.train()
            execution = Execution.of(config.train, device)
            train_step = _training_step(method, optimizers, sampler, execution)
            # Also leaves the Adam state an Adam lookahead (transference.lookahead: adam) would read.
            training = time_iterations(train_step, settings if settings.quick else TRAINING_FULL)
            sources = tr.task_set(splits[analysis.source_mode], tr.SOURCE_SPLIT, config, analysis.sources,
                                  tr.SOURCE_STREAM)
            targets = tr.task_set(splits[analysis.target_mode], tr.TARGET_SPLIT, config, analysis.targets,
                                  tr.TARGET_STREAM)
            state = {"optimizers": {group: optimizer.state_dict() for group, optimizer in optimizers.items()}}
            lookahead = tr.build_lookahead(method, state, config, "benchmark")
            # One analysis takes minutes at the paper's sizes: timed once, after the training steps' warm-up.
            timing = time_iterations(lambda i, method=method, lookahead=lookahead, sources=sources, targets=targets,
                                     execution=execution:
                                     tr.lookahead_losses(method, [lookahead], sources, targets, execution),
                                     replace(settings, warmup=0, repeats=1, iterations=1))
            steps = analysis.sources
            wall, cpu = (steps * statistics.median(values) for values in (training.seconds, training.cpu_seconds))
            notes = (f"one snapshot: {analysis.sources} sources x {analysis.targets} targets + {analysis.targets} "
                     f"self, {'batched (vmap)' if execution.vmap_tasks else 'loop'} path, chunks of {analysis.batch_size}; "
                     f"{steps} training iterations (meta-batch {train.meta_batch_size}): {wall:.1f} s wall, "
                     f"{cpu:.1f} s cpu; analysis / training: {timing.seconds[0] / wall:.2f} wall, "
                     f"{timing.cpu_seconds[0] / cpu:.2f} cpu; {model.image_size} px, channels "
                     f"{'/'.join(map(str, model.channels))}")
            yield Result(f"transference {name}", where, task.ways, shots, task.queries, analysis.batch_size,
                         model.image_size, timing, settings.quick, notes)


# ---- meta-training: kml's fast path against the released code's way of computing a meta-batch ----------------

# The fast path and the baseline must agree this closely (relative; in float64, see compare_training) before
# they are timed; the tests hold the two paths to it in float32 at small sizes.
EQUIVALENCE_TOLERANCE = 1e-5
# A training iteration takes seconds at 84 px on a CPU: a few repeats of one iteration each.
TRAINING_FULL = BenchSettings(quick=False, warmup=1, repeats=3, iterations=1)
KIB, MIB = 2**10, 2**20
# Writing "5" to /proc/self/clear_refs resets the peak resident set size (VmHWM) to the current one (Linux).
CLEAR_REFS, RESET_PEAK_RSS, PROC_STATUS = Path("/proc/self/clear_refs"), "5", Path("/proc/self/status")
# The measured peak is the best of this many timed matrix products (after one untimed).
MATMUL_REPEATS = 5
HOUR = 3600
# The workflow configuration of the paper preset, beside the package in a source checkout.
PAPER_CONFIG = Path(kml.__file__).resolve().parents[1] / "config.yaml"
# The bench's modes: 2Mode-dagger; task content does not change the speed, so random images in tiny splits.
BENCH_MODES = ("miniimagenet", "fc100")


@dataclass(frozen=True)
class Scale:
    """The sizes a training benchmark runs at."""

    model: ModelConfig
    task: TaskConfig  # ways and queries; the shots vary
    matmul_size: int  # side of the matrices whose product measures the CPU's peak FLOP/s
    gpu_matmul_size: int  # the same on a GPU, which a CPU-sized product leaves launch-bound
    # Quick runs shrink meta-batches and inner loops as well, keeping the paper preset's distinct
    # configurations distinct, so that every step of the estimate runs.
    meta_batch_divisor: int = 1
    max_inner_steps: int | None = None

    def matmul_side(self, device: torch.device) -> int:
        return self.matmul_size if device.type == "cpu" else self.gpu_matmul_size

    def meta_batch_size(self, paper: int) -> int:
        return -(-paper // self.meta_batch_divisor)

    def inner_steps(self, paper: int) -> int:
        return paper if self.max_inner_steps is None else min(paper, self.max_inner_steps)


PAPER_SCALE = Scale(ModelConfig(), TaskConfig(), matmul_size=2048, gpu_matmul_size=8192)
# Quick: 16 px rather than less, so that the last feature map still has 2x2 pixels and batch-statistics
# BatchNorm stays well enough conditioned for the fp32 equivalence check.
QUICK_SCALE = Scale(ModelConfig(channels=(4, 4, 4, 4), image_size=16, embedding_dim=8), TaskConfig(queries=2),
                    matmul_size=256, gpu_matmul_size=256, meta_batch_divisor=5, max_inner_steps=2)


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
            row |= {"flops_per_iteration": f"{self.flops:.4g}", "flops_per_second": f"{self.flops / seconds:.4g}",
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
                "method": f"paper preset {self.part}", "shots": "", "quick": str(self.quick), "notes": self.notes,
                "estimated_hours": f"{self.seconds / HOUR:.2f}", "kml_version": kml.__version__,
                "torch_version": torch.__version__}


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
    glibc kept (measured: gigabytes after a 5-shot MAML iteration)."""
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


@contextmanager
def exact_float32() -> Iterator[None]:
    """No TF32 inside: cuDNN convolutions use it by default on recent GPUs, and the equivalence check compares
    float32 computations. (Timing keeps PyTorch's defaults, as training does.)"""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


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


def time_side_by_side(steps: dict[str, Callable[[int], object]], settings: BenchSettings,
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


def choose_threads(step: Callable[[int], object], settings: BenchSettings) -> str:
    """Set torch's CPU thread count to the candidate under which `step` runs fastest; describe the choice.

    Measured rather than assumed: on a machine shared with other processes, more threads than free cores
    make OpenMP's barriers wait for threads the scheduler has put aside, and fewer threads win."""
    def with_threads(count: int) -> Callable[[int], object]:
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
    return f"{best} torch threads, the fastest of ({listing}) per protonet 1-shot iteration"


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """‖value − reference‖ / ‖reference‖, in float64."""
    value, reference = value.detach().double(), reference.detach().double()
    return (torch.linalg.vector_norm(value - reference) / torch.linalg.vector_norm(reference)).item()


def gradient_errors(value: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, float]:
    """Relative error of the gradient of each network part (backbone, encoder, generator: a parameter name's
    first component), all its tensors as one vector.

    Per part rather than per tensor: two float32 computations that sum in different orders differ by rounding,
    which a second-order inner loop amplifies; conv biases and KML's Δb, whose true gradient is zero (they feed
    batch-statistics BatchNorm, REFERENCE §2.4), and small BatchNorm scale vectors then hold nothing but that
    rounding, tensor by tensor. Any real discrepancy in a tensor that matters shows at the part's level.
    """
    if value.keys() != reference.keys():
        raise ValueError(f"different parameters: {sorted(value.keys() ^ reference.keys())}")
    parts: dict[str, list[str]] = {}
    for name in reference:
        parts.setdefault(name.split(".")[0], []).append(name)
    return {part: relative_error(torch.cat([value[n].flatten() for n in names]),
                                 torch.cat([reference[n].flatten() for n in names]))
            for part, names in parts.items()}


def bench_config(key: CostKey, scale: Scale) -> RunConfig:
    """The run configuration measured for a paper-preset cost key at `scale`."""
    method, shots, meta_batch_size, inner_steps = key
    train, maml, evaluation = TrainConfig(), MAMLConfig(), EvalConfig()
    return RunConfig(
        method=method, modes=BENCH_MODES, task=replace(scale.task, shots=shots), model=scale.model,
        maml=replace(maml, inner_steps=scale.inner_steps(inner_steps or maml.inner_steps)),
        train=replace(train, meta_batch_size=scale.meta_batch_size(meta_batch_size)),
        eval=replace(evaluation, meta_batch_size=scale.meta_batch_size(evaluation.meta_batch_size)),
    )


def joint_key(method: str, shots: int) -> CostKey:
    """The cost key of a joint training with the configuration defaults (the paper's)."""
    return cost_key(RunConfig(method=method, modes=BENCH_MODES, task=TaskConfig(shots=shots)))


def _training_step(method: MetaLearner, optimizers: dict[str, torch.optim.Adam], sampler: MultimodalSampler,
                   execution: Execution) -> Callable[[int], None]:
    """One meta-training iteration as `kml train` runs it: sample, convert on the device, `training_step`."""

    def step(index: int) -> None:
        training_step(method, optimizers, sampler.meta_batch(index).to(execution.device), execution)

    return step


def _eval_seconds_per_task(method: MetaLearner, config: RunConfig, splits: dict[str, SplitImages],
                           settings: BenchSettings, execution: Execution) -> float:
    """Median seconds per evaluation task (eval mode, no graph), in meta-batches of eval.meta_batch_size."""
    tasks = config.eval.meta_batch_size
    sampler = MultimodalSampler(splits, ways=config.task.ways, shots=config.task.shots,
                                queries=config.task.queries, meta_batch_size=tasks, seed=config.eval.seed)

    def evaluate(index: int) -> None:
        with torch.no_grad():
            execution.run(method, sampler.meta_batch(index).to(execution.device)).task_accuracies.tolist()

    method.eval()
    timing = time_iterations(evaluate, settings)
    method.train()
    return statistics.median(timing.seconds) / tasks


def _path_notes(execution: Execution) -> str:
    if execution.vmap_tasks:
        return "fast path: tasks vmapped"
    return "fast path: task loop, channels-last" if execution.channels_last else "fast path: task loop"


def path_differences(fast: MetaLearner, baseline: ReleasedStyle, batch: MetaBatch,
                     execution: Execution) -> tuple[dict[str, float], float]:
    """Relative differences of the two paths on one meta-batch, in their parameters' dtype (the loss, then
    each network part's gradient), and the FLOPs of the baseline's forward and backward."""
    dtype = next(fast.parameters()).dtype
    images = batch.to(execution.device)
    images = replace(images, support_images=images.support_images.to(dtype),
                     query_images=images.query_images.to(dtype))
    params = dict(fast.named_parameters())
    with exact_float32():
        loss = execution.run(fast, images).loss
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))
        with FlopCounterMode(display=False) as counter:
            baseline_loss = baseline.loss(batch)
            baseline_grads = dict(zip(baseline.params,
                                      torch.autograd.grad(baseline_loss, list(baseline.params.values())),
                                      strict=True))
    differences = {"loss": relative_error(loss, baseline_loss), **gradient_errors(grads, baseline_grads)}
    return differences, counter.get_total_flops()


def compare_training(config: RunConfig, splits: dict[str, SplitImages], released: dict[str, ReleasedImages],
                     settings: BenchSettings, device: torch.device, peak_flops: float, quick: bool,
                     threads: str) -> TrainingResult:
    """kml's training iteration against `ReleasedStyle`'s on the same weights and tasks: first the losses and
    gradients of one meta-batch must agree (EQUIVALENCE_TOLERANCE), then the two are timed taking turns.

    The check runs in float64. At the paper's sizes float32 itself is only accurate to a few 1e-4 (measured
    against float64: second-order MAML through five steps of BatchNorm over 5 images), so two correct float32
    computations that merely round differently (vmap's grouped convolutions, say) differ by that much, while
    in float64 rounding stays far below the tolerance and a disagreement is a real one. The float32 difference
    is recorded as max_relative_error; where both paths run the same kernels it is exactly 0."""
    fast = build_method(config).to(device)
    execution = Execution.of(config.train, device)
    baseline = ReleasedStyle(config, fast, released, device)
    sampler = MultimodalSampler(splits, ways=config.task.ways, shots=config.task.shots,
                                queries=config.task.queries, meta_batch_size=config.train.meta_batch_size,
                                seed=config.train.seed)
    batch = sampler.meta_batch(0)
    exact = copy.deepcopy(fast).double()
    differences, _ = path_differences(exact, ReleasedStyle(config, exact, released, device), batch, execution)
    if max(differences.values()) > EQUIVALENCE_TOLERANCE:
        listing = ", ".join(f"{part} {error:.1e}" for part, error in differences.items())
        raise BenchError(f"{config.method} {config.task.shots}-shot: the fast path and the baseline disagree beyond "
                         f"{EQUIVALENCE_TOLERANCE:g} in float64 (relative: {listing}); not timing different "
                         "computations")
    del exact
    float64_note = f"float64 check: max rel. difference {max(differences.values()):.1e}"
    differences, flops = path_differences(fast, baseline, batch, execution)
    steps = {"fast": _training_step(fast, build_optimizers(fast, config.optim), sampler, execution),
             "baseline": lambda index: baseline.step(sampler.meta_batch(index))}
    baseline.load_seconds.clear()
    measured = time_side_by_side(steps, settings, device)
    (timing, peak), (baseline_timing, baseline_peak) = measured["fast"], measured["baseline"]
    second_order = config.family == "maml" and not config.maml.first_order
    timed = slice(settings.warmup, settings.warmup + settings.repeats * settings.iterations)
    loading = statistics.median(baseline.load_seconds[timed])
    computing = statistics.median(baseline_timing.seconds) - loading
    notes = (f"{_path_notes(execution)}; baseline: the released code's way (kml/baseline.py: per-load image "
             f"decoding and resizing of {len(config.modes)}x{config.train.meta_batch_size} tasks, task loop, "
             f"hand-written layers{', autograd.grad create_graph inner loop' if second_order else ''}), of "
             f"which loading {loading:.3g} s; without its loading the baseline would take {computing:.3g} s, "
             f"{computing / statistics.median(timing.seconds):.2f}x kml's; {float64_note}; "
             f"{model_notes(config)}; {threads}")
    return TrainingResult(config.method, device_description(device), config, timing, baseline_timing,
                          _eval_seconds_per_task(fast, config, splits, settings, execution), peak, baseline_peak,
                          flops, peak_flops, max(differences.values()), quick, notes)


def measure_fast(config: RunConfig, label: str, splits: dict[str, SplitImages], settings: BenchSettings,
                 device: torch.device, peak_flops: float, quick: bool, why: str) -> TrainingResult:
    """kml's training iteration and evaluation task alone (configurations the estimate needs beyond the
    compared ones)."""
    method = build_method(config).to(device)
    execution = Execution.of(config.train, device)
    sampler = MultimodalSampler(splits, ways=config.task.ways, shots=config.task.shots,
                                queries=config.task.queries, meta_batch_size=config.train.meta_batch_size,
                                seed=config.train.seed)
    step = _training_step(method, build_optimizers(method, config.optim), sampler, execution)
    timing, peak = time_side_by_side({"fast": step}, settings, device)["fast"]
    notes = f"{why}; {_path_notes(execution)}; no baseline; {model_notes(config)}"
    return TrainingResult(label, device_description(device), config, timing, None,
                          _eval_seconds_per_task(method, config, splits, settings, execution), peak, None, None,
                          peak_flops, None, quick, notes)


def model_notes(config: RunConfig) -> str:
    notes = f"channels {'/'.join(map(str, config.model.channels))}"
    if config.family == "maml":
        order = "first" if config.maml.first_order else "second"
        notes += f", {config.maml.inner_steps} inner steps, {order} order"
    return notes


CostKey = tuple[str, int, int, int]  # method as trained, shots, meta-batch size, inner steps (0: ProtoNet)


def cost_key(config: RunConfig) -> CostKey:
    """What a run's cost per iteration or per task depends on (a Multi-* member trains as maml/protonet)."""
    steps = config.maml.inner_steps if config.family == "maml" else 0
    return config.method.removeprefix("multi_"), config.task.shots, config.train.meta_batch_size, steps


def paper_plan() -> Plan | None:
    """The paper preset's jobs (kml/plan.py on config.yaml), or None outside a source checkout."""
    if not PAPER_CONFIG.exists():
        return None
    return Plan(yaml.safe_load(PAPER_CONFIG.read_text()))


def preset_configs(plan: Plan) -> list[RunConfig]:
    """Every training configuration of the plan (a cell's and a transference run's models are among them)."""
    return [run_config_from_dict(training.run_config) for training in plan.trainings.values()]


def preset_estimate(plan: Plan, costs: dict[CostKey, TrainingResult]) -> dict[str, tuple[float, str]]:
    """Seconds (and how they were counted) of the plan's training, evaluation and transference jobs, from the
    measured seconds per iteration (training) and per evaluation task of each cost key."""
    def iteration(config: RunConfig) -> float:
        return statistics.median(costs[cost_key(config)].timing.seconds)

    def task(config: RunConfig) -> float:
        return costs[cost_key(config)].eval_seconds_per_task

    trainings = preset_configs(plan)
    training = sum(c.train.iterations * iteration(c) for c in trainings)
    iterations = sum(c.train.iterations for c in trainings)
    evaluation, eval_tasks = 0.0, 0
    for cell in plan.cells.values():
        per_mode = run_config_from_dict(cell.run_config).eval.tasks_per_mode
        for member in cell.trainings:  # one joint model on every mode, or one member per mode
            config = run_config_from_dict(member.run_config)
            tasks = per_mode * len(config.modes) if len(cell.trainings) == 1 else per_mode
            evaluation += tasks * task(config)
            eval_tasks += tasks
    def lookaheads(config: RunConfig, sources: int, targets: int, steps: int) -> float:
        """One snapshot: a one-task gradient per source and per target (self), and the target losses before,
        and after each source's and each target's own update of each step size."""
        gradients = (sources + targets) * iteration(config) / config.train.meta_batch_size
        return gradients + (2 * targets + steps * sources * targets) * task(config)

    transference, snapshots = 0.0, 0
    for run in plan.transference.values():
        config = run_config_from_dict(run.training.run_config)
        analysis = run_config_from_dict(run.run_config).transference
        sweep = run_config_from_dict(run.sweep_run_config).transference.sweep
        transference += len(run.training.snapshots) * lookaheads(config, analysis.sources, analysis.targets, 1)
        transference += lookaheads(config, sweep.sources, sweep.targets, len(sweep.step_sizes))
        snapshots += len(run.training.snapshots)
    runs = (f"{len(plan.transference)} runs, {snapshots} snapshots and a step-size sweep each; one-task updates "
            "costed as 1/meta-batch")
    return {
        "training": (training, f"{len(trainings)} trainings, {iterations:,} iterations in all"),
        "evaluation": (evaluation, f"{len(plan.cells)} cells, {eval_tasks:,} test tasks"),
        "transference": (transference, f"{runs} of an iteration"),
    }


def bench_training(settings: BenchSettings) -> Iterator[TrainingResult | EstimateResult]:
    """Seconds per meta-training iteration of each joint method at the paper's settings, kml's fast path
    against the released code's way (`ReleasedStyle`), with seconds per evaluation task, peak memory, FLOPs
    and the fraction of the measured peak; then, when every method and shot count was measured, the paper
    preset's estimated compute time on this machine."""
    device = resolve_device("auto")
    scale = QUICK_SCALE if settings.quick else PAPER_SCALE
    timing = settings if settings.quick else TRAINING_FULL
    methods, shots = settings.methods or JOINT_METHODS, settings.shots
    splits, released = released_splits({mode: QUICK_SPLIT_SIZE for mode in BENCH_MODES}, scale.model.image_size)
    threads = "GPU"
    if device.type == "cpu":
        config = bench_config(joint_key("protonet", SHOTS[0]), scale)
        method = build_method(config)
        sampler = MultimodalSampler(splits, ways=config.task.ways, shots=config.task.shots,
                                    queries=config.task.queries, meta_batch_size=config.train.meta_batch_size,
                                    seed=config.train.seed)
        threads = choose_threads(_training_step(method, build_optimizers(method, config.optim), sampler,
                                                Execution.of(config.train, device)), timing)
    peak_flops = matmul_peak_flops(device, scale.matmul_side(device))
    costs: dict[CostKey, TrainingResult] = {}
    for method in methods:
        for k in shots:
            key = joint_key(method, k)
            costs[key] = compare_training(bench_config(key, scale), splits, released, timing, device,
                                          peak_flops, settings.quick, threads)
            yield costs[key]
    plan = paper_plan()
    if plan is None or set(methods) != set(JOINT_METHODS) or set(shots) != set(SHOTS):
        return
    for config in preset_configs(plan):
        key = cost_key(config)
        if key not in costs:
            _, _, meta_batch, steps = key
            label = f"{config.method} member (meta-batch {meta_batch}, inner steps {steps})"
            costs[key] = measure_fast(bench_config(key, scale), label, splits, timing, device, peak_flops,
                                      settings.quick, f"a paper-preset member configuration; {threads}")
            yield costs[key]
    parts = preset_estimate(plan, costs)
    where = device_description(device)
    for part, (seconds, notes) in parts.items():
        yield EstimateResult(part, where, seconds, settings.quick,
                             f"{notes}; counts from kml/plan.py on {PAPER_CONFIG.name}; "
                             f"measured fast-path seconds x counts, sampling included; {threads}")
    total = sum(seconds for seconds, _ in parts.values())
    yield EstimateResult("total", where, total, settings.quick, "training + evaluation + transference")


def bench_bf16(settings: BenchSettings) -> Iterator[TrainingResult]:
    """bfloat16 autocast, measured rather than assumed: per method and shots, the fast path with autocast
    against the float32 fast path (as the baseline), taking turns, and the relative deviation of its loss
    and gradients from float32 on one meta-batch (its effect on accuracy after training is measured by
    tests/test_evaluate.py's bf16 learning test)."""
    device = resolve_device("auto")
    scale = QUICK_SCALE if settings.quick else PAPER_SCALE
    timing = settings if settings.quick else TRAINING_FULL
    splits = random_splits({mode: QUICK_SPLIT_SIZE for mode in BENCH_MODES}, scale.model.image_size)
    peak_flops = matmul_peak_flops(device, scale.matmul_side(device))
    for method in settings.methods or JOINT_METHODS:
        for shots in settings.shots:
            config = bench_config(joint_key(method, shots), scale)
            models = {"bf16": build_method(config).to(device), "fp32": build_method(config).to(device)}
            fp32 = Execution.of(config.train, device)
            executions = {"bf16": replace(fp32, amp_bf16=True), "fp32": fp32}
            sampler = MultimodalSampler(splits, ways=config.task.ways, shots=config.task.shots,
                                        queries=config.task.queries, meta_batch_size=config.train.meta_batch_size,
                                        seed=config.train.seed)
            batch = sampler.meta_batch(0).to(device)
            losses, grads = {}, {}
            for name, model in models.items():
                params = dict(model.named_parameters())
                losses[name] = executions[name].run(model, batch).loss
                grads[name] = dict(zip(params, torch.autograd.grad(losses[name], list(params.values())),
                                       strict=True))
            deviation = max(relative_error(losses["bf16"], losses["fp32"]),
                            *gradient_errors(grads["bf16"], grads["fp32"]).values())
            del batch, losses, grads
            steps = {name: _training_step(model, build_optimizers(model, config.optim), sampler, executions[name])
                     for name, model in models.items()}
            measured = time_side_by_side(steps, timing, device)
            notes = (f"bfloat16 autocast on the fast path; baseline: the float32 fast path; max rel. error: the "
                     f"bf16 loss and gradients against float32 on one meta-batch; {_path_notes(executions['bf16'])}; "
                     f"{model_notes(config)}; {torch.get_num_threads()} torch threads")
            yield TrainingResult(f"{method} bf16", device_description(device), config, measured["bf16"][0],
                                 measured["fp32"][0], None, measured["bf16"][1], measured["fp32"][1], None,
                                 peak_flops, deviation, settings.quick, notes)


class Row(Protocol):
    def row(self) -> dict[str, str]: ...


BENCHMARKS: dict[str, Callable[[BenchSettings], Iterable[Row]]] = {"sampler": bench_sampler,
                                                                   "transference": bench_transference,
                                                                   "training": bench_training,
                                                                   "bf16": bench_bf16}
# Run only when named with --only: bf16 doubles a full run's time for an option that is off by default, and
# one paper-size transference analysis per method and shots takes hours on a CPU.
OPT_IN = ("bf16", "transference")


def run_benchmarks(out: Path, only: Sequence[str] | None = None, quick: bool = False,
                   methods: Sequence[str] | None = None, shots: Sequence[int] | None = None) -> list[Row]:
    """Run the chosen benchmarks (by default all but OPT_IN's); append each result's row to `out` as soon as it is measured
    (a long run interrupted keeps what it measured), rewrite the Markdown table beside it and print a line."""
    names = list(only) if only else [name for name in BENCHMARKS if name not in OPT_IN]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise BenchError(f"--only: unknown benchmarks {unknown}; choose from {', '.join(BENCHMARKS)}")
    wrong = [m for m in methods or () if m not in JOINT_METHODS] + [str(k) for k in shots or () if k not in SHOTS]
    if wrong:
        raise BenchError(f"--methods/--shots: {', '.join(wrong)} not benchmarked; methods are "
                         f"{', '.join(JOINT_METHODS)} (Multi-* members train as maml/protonet), shots {SHOTS}")
    settings = replace(QUICK if quick else FULL, methods=tuple(methods) if methods else None,
                       shots=tuple(shots) if shots else SHOTS)
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
    if trainings:
        lines += ["", *training_table(trainings)]
    if estimates:
        lines += ["", *estimate_table(estimates)]
    return "\n".join(lines) + "\n"


def _number(value: str, spec: str) -> str:
    return format(float(value), spec) if value else "–"


def training_table(rows: list[dict[str, str]]) -> list[str]:
    lines = [
        "Meta-training iterations: kml's fast path against the released code's way (baseline), same weights",
        "and tasks, taking turns; seconds are wall-clock medians (fastest – slowest repeat); the speedup is",
        "baseline / fast. FLOPs are counted on the baseline's iteration (the work both do); the peak is the",
        "fastest float32 matrix product measured in the same run.",
        "",
        ("| method | shots | device | s / iteration | baseline s / iteration | speedup | cpu speedup "
         "| s / eval task | peak MB (baseline) | GFLOP / iteration | fraction of peak (baseline) "
         "| max rel. error | load | quick | date | notes |"),
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["device"], r["quick"], r["method"], int(r["shots"]))):
        lines.append(
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
            f"| {r['notes']} |")
    return lines


def estimate_table(rows: list[dict[str, str]]) -> list[str]:
    lines = [
        "The paper preset's estimated compute time on the measuring machine: measured seconds per iteration",
        "and per evaluation task times the job counts of kml/plan.py (config.yaml).",
        "",
        "| part | device | hours | quick | date | notes |",
        "|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["device"], r["quick"], r["date"])):
        lines.append(f"| {r['method']} | {r['device']} | {float(r['estimated_hours']):.1f} | {r['quick']} "
                     f"| {r['date']} | {r['notes']} |")
    return lines
