"""The transference benchmark (`transference`): one snapshot's transference analysis against as many
training iterations as it has sources."""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import replace

from kml import transference as tr
from kml.bench.output import Result
from kml.bench.resources import device_description
from kml.bench.settings import TRAINING_FULL, BenchSettings
from kml.bench.timing import time_iterations
from kml.bench.workload import QUICK_SPLIT_SIZE, random_splits, training_iteration
from kml.config import ModelConfig, RunConfig, TaskConfig, TransferenceConfig
from kml.execution import Execution, resolve_device
from kml.method_table import JOINT_METHOD_NAMES as JOINT_METHODS
from kml.methods.registry import build_method
from kml.tasks import training_sampler
from kml.train import build_optimizers


def bench_transference(settings: BenchSettings) -> Iterator[Result]:
    """One snapshot's transference analysis (`kml transference`: TransferenceConfig's sources x targets, plus
    the targets' self lookaheads) against as many training iterations of the same method as there are
    sources, i.e. the cost of taking each lookahead as a training step; 2Mode-dagger, random images."""
    device = resolve_device("auto")
    # Quick: tiny networks and task sets; full: the paper's networks and TransferenceConfig's defaults.
    if settings.quick:
        model = ModelConfig(channels=(8, 8, 8, 8), image_size=16, embedding_dim=8)
        analysis = TransferenceConfig(sources=4, targets=2, batch_size=2)
    else:
        model, analysis = ModelConfig(), TransferenceConfig()
    task = TaskConfig()
    # Task content does not change the speed, so the smallest splits that hold a task do.
    splits = random_splits({mode: QUICK_SPLIT_SIZE for mode in (analysis.source_mode, analysis.target_mode)},
                           model.image_size)
    where = device_description(device)
    for name in settings.methods or JOINT_METHODS:
        for shots in settings.shots:
            config = RunConfig(method=name, modes=tuple(splits), task=replace(task, shots=shots), model=model,
                               transference=analysis)
            method = build_method(config).to(device)
            optimizers = build_optimizers(method, config.optim)
            method.train()
            execution = Execution.of(config.train, device)
            train_step = training_iteration(method, optimizers, training_sampler(config, splits), execution)
            # Also leaves the Adam state an Adam lookahead (transference.lookahead: adam) would read.
            training = time_iterations(train_step, settings if settings.quick else TRAINING_FULL)
            sources = tr.task_set(splits[analysis.source_mode], tr.SOURCE_SPLIT, config, analysis.sources,
                                  tr.SOURCE_STREAM)
            targets = tr.task_set(splits[analysis.target_mode], tr.TARGET_SPLIT, config, analysis.targets,
                                  tr.TARGET_STREAM)
            state = {"optimizers": {group: optimizer.state_dict() for group, optimizer in optimizers.items()}}
            lookahead = tr.build_lookahead(method, state, config, "benchmark")
            # An analysis at the paper's sizes is long (docs/performance.md): timed once, after the training
            # steps' warm-up.
            timing = time_iterations(lambda i, method=method, lookahead=lookahead, sources=sources,
                                     targets=targets, execution=execution:
                                     tr.lookahead_losses(method, [lookahead], sources, targets, execution),
                                     replace(settings, warmup=0, repeats=1, iterations=1))
            steps = analysis.sources
            wall, cpu = (steps * statistics.median(values)
                         for values in (training.seconds, training.cpu_seconds))
            path = "batched (vmap)" if execution.vmap_tasks else "loop"
            notes = (f"one snapshot: {analysis.sources} sources x {analysis.targets} targets + "
                     f"{analysis.targets} self, {path} path, chunks of {analysis.batch_size}; "
                     f"{steps} training iterations (meta-batch {config.train.meta_batch_size}): "
                     f"{wall:.1f} s wall, {cpu:.1f} s cpu; analysis / training: "
                     f"{timing.seconds[0] / wall:.2f} wall, {timing.cpu_seconds[0] / cpu:.2f} cpu; "
                     f"{model.image_size} px, channels {'/'.join(map(str, model.channels))}")
            yield Result(f"transference {name}", where, task.ways, shots, task.queries, analysis.batch_size,
                         model.image_size, timing, settings.quick, notes)
