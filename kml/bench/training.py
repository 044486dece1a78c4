"""The training benchmark (`training`): seconds per meta-training iteration of each joint method, kml's fast
path against the released code's way of computing one (`ReleasedStyle`, kml/baseline.py), on the same weights
and tasks, after checking that both give the same loss and gradients; the two take turns repeat by repeat, so
that a shared machine's load hits both alike. Beside them: seconds per evaluation task, peak memory, FLOPs and
the fraction of the machine's peak. From the measured seconds and the plan's job counts it estimates the
paper preset's compute time (kml/bench/estimate.py)."""

from __future__ import annotations

import statistics
from collections.abc import Iterator

import torch

from kml.baseline import ReleasedImages, ReleasedStyle, released_splits
from kml.bench.equivalence import check_equivalence, path_differences
from kml.bench.estimate import estimate_results, preset_configs
from kml.bench.output import EstimateResult, TrainingResult
from kml.bench.resources import device_description, matmul_peak_flops
from kml.bench.settings import SHOTS, TRAINING_FULL, BenchSettings
from kml.bench.timing import choose_threads, time_iterations, time_side_by_side
from kml.bench.workload import (
    BENCH_MODES,
    PAPER_SCALE,
    QUICK_SCALE,
    QUICK_SPLIT_SIZE,
    CostKey,
    bench_config,
    cost_key,
    joint_key,
    training_iteration,
)
from kml.config import RunConfig
from kml.data.episodes import MultimodalSampler, SplitImages
from kml.execution import Execution, resolve_device
from kml.method_table import JOINT_METHOD_NAMES as JOINT_METHODS
from kml.methods.base import MetaLearner
from kml.methods.registry import build_method
from kml.tasks import training_sampler
from kml.train import build_optimizers


def eval_seconds_per_task(method: MetaLearner, config: RunConfig, splits: dict[str, SplitImages],
                          settings: BenchSettings, execution: Execution) -> float:
    """Median seconds per evaluation task (eval mode, no graph), in meta-batches of eval.meta_batch_size."""
    tasks = config.eval.meta_batch_size
    sampler = MultimodalSampler(splits, ways=config.task.ways, shots=config.task.shots,
                                queries=config.task.queries, meta_batch_size=tasks, seed=config.eval.seed)

    def evaluate(index: int) -> None:
        with torch.no_grad():
            execution.run(method, execution.to_device(sampler.meta_batch(index))).task_accuracies.tolist()

    method.eval()
    timing = time_iterations(evaluate, settings)
    method.train()
    return statistics.median(timing.seconds) / tasks


def path_notes(execution: Execution) -> str:
    if execution.vmap_tasks:
        return "fast path: tasks vmapped"
    return "fast path: task loop, channels-last" if execution.channels_last else "fast path: task loop"


def model_notes(config: RunConfig) -> str:
    notes = f"channels {'/'.join(map(str, config.model.channels))}"
    if config.family == "maml":
        order = "first" if config.maml.first_order else "second"
        notes += f", {config.maml.inner_steps} inner steps, {order} order"
    return notes


def compare_training(config: RunConfig, splits: dict[str, SplitImages], released: dict[str, ReleasedImages],
                     settings: BenchSettings, device: torch.device, peak_flops: float, quick: bool,
                     threads: str) -> TrainingResult:
    """kml's training iteration against `ReleasedStyle`'s on the same weights and tasks: first the losses and
    gradients of one meta-batch must agree in float64 (`check_equivalence`), then the two are timed taking
    turns. The float32 difference is recorded as max_relative_error; where both paths run the same kernels it
    is exactly 0."""
    fast = build_method(config).to(device)
    execution = Execution.of(config.train, device)
    baseline = ReleasedStyle(config, fast, released, device)
    sampler = training_sampler(config, splits)
    batch = sampler.meta_batch(0)
    float64_note = (f"float64 check: max rel. difference "
                    f"{check_equivalence(config, fast, released, batch, execution):.1e}")
    differences, flops = path_differences(fast, baseline, batch, execution)
    steps = {"fast": training_iteration(fast, build_optimizers(fast, config.optim), sampler, execution),
             "baseline": lambda index: baseline.step(sampler.meta_batch(index))}
    baseline.load_seconds.clear()
    measured = time_side_by_side(steps, settings, device)
    (timing, peak), (baseline_timing, baseline_peak) = measured["fast"], measured["baseline"]
    second_order = config.family == "maml" and not config.maml.first_order
    timed = slice(settings.warmup, settings.warmup + settings.repeats * settings.iterations)
    loading = statistics.median(baseline.load_seconds[timed])
    computing = statistics.median(baseline_timing.seconds) - loading
    notes = (f"{path_notes(execution)}; baseline: the released code's way (kml/baseline.py: per-load image "
             f"decoding and resizing of {len(config.modes)}x{config.train.meta_batch_size} tasks, task loop, "
             f"hand-written layers{', autograd.grad create_graph inner loop' if second_order else ''}), of "
             f"which loading {loading:.3g} s; without its loading the baseline would take {computing:.3g} s, "
             f"{computing / statistics.median(timing.seconds):.2f}x kml's; {float64_note}; "
             f"{model_notes(config)}; {threads}")
    return TrainingResult(config.method, device_description(device), config, timing, baseline_timing,
                          eval_seconds_per_task(fast, config, splits, settings, execution), peak,
                          baseline_peak, flops, peak_flops, max(differences.values()), quick, notes)


def measure_fast(config: RunConfig, label: str, splits: dict[str, SplitImages], settings: BenchSettings,
                 device: torch.device, peak_flops: float, quick: bool, why: str) -> TrainingResult:
    """kml's training iteration and evaluation task alone (configurations the estimate needs beyond the
    compared ones)."""
    method = build_method(config).to(device)
    execution = Execution.of(config.train, device)
    step = training_iteration(method, build_optimizers(method, config.optim),
                              training_sampler(config, splits), execution)
    timing, peak = time_side_by_side({"fast": step}, settings, device)["fast"]
    notes = f"{why}; {path_notes(execution)}; no baseline; {model_notes(config)}"
    return TrainingResult(label, device_description(device), config, timing, None,
                          eval_seconds_per_task(method, config, splits, settings, execution), peak, None,
                          None, peak_flops, None, quick, notes)


def bench_training(settings: BenchSettings) -> Iterator[TrainingResult | EstimateResult]:
    """Seconds per meta-training iteration of each joint method at the paper's settings, kml's fast path
    against the released code's way (`ReleasedStyle`), with seconds per evaluation task, peak memory, FLOPs
    and the fraction of the measured peak; then, given the workflow's plan and when every method and shot
    count was measured, the paper preset's estimated compute time on this machine."""
    device = resolve_device("auto")
    scale = QUICK_SCALE if settings.quick else PAPER_SCALE
    timing = settings if settings.quick else TRAINING_FULL
    methods, shots = settings.methods or JOINT_METHODS, settings.shots
    splits, released = released_splits({mode: QUICK_SPLIT_SIZE for mode in BENCH_MODES},
                                       scale.model.image_size)
    threads = "GPU"
    if device.type == "cpu":
        config = bench_config(joint_key("protonet", SHOTS[0]), scale)
        method = build_method(config)
        step = training_iteration(method, build_optimizers(method, config.optim),
                                  training_sampler(config, splits), Execution.of(config.train, device))
        threads = choose_threads(step, timing, f"protonet {SHOTS[0]}-shot")
    peak_flops = matmul_peak_flops(device, scale.matmul_side(device))
    costs: dict[CostKey, TrainingResult] = {}
    for method in methods:
        for k in shots:
            key = joint_key(method, k)
            costs[key] = compare_training(bench_config(key, scale), splits, released, timing, device,
                                          peak_flops, settings.quick, threads)
            yield costs[key]
    if settings.workflow is None or not settings.every_configuration:
        return
    for config in preset_configs(settings.workflow.plan):
        key = cost_key(config)
        if key not in costs:
            _, _, meta_batch, steps = key
            label = f"{config.method} member (meta-batch {meta_batch}, inner steps {steps})"
            costs[key] = measure_fast(bench_config(key, scale), label, splits, timing, device, peak_flops,
                                      settings.quick, f"a paper-preset member configuration; {threads}")
            yield costs[key]
    yield from estimate_results(settings.workflow, costs, device_description(device), settings.quick, threads)
