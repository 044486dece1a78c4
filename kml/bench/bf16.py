"""The bfloat16 benchmark (`bf16`): the fast path under bfloat16 autocast against float32, in speed and in
the deviation of its loss and gradients."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import torch

from kml.bench.equivalence import gradient_errors, gradients, relative_error
from kml.bench.output import TrainingResult
from kml.bench.resources import device_description, matmul_peak_flops
from kml.bench.settings import TRAINING_FULL, BenchSettings
from kml.bench.timing import time_side_by_side
from kml.bench.training import model_notes, path_notes
from kml.bench.workload import (
    BENCH_MODES,
    PAPER_SCALE,
    QUICK_SCALE,
    QUICK_SPLIT_SIZE,
    bench_config,
    joint_key,
    random_splits,
    training_iteration,
)
from kml.execution import Execution, resolve_device
from kml.method_table import JOINT_METHOD_NAMES as JOINT_METHODS
from kml.methods.registry import build_method
from kml.tasks import training_sampler
from kml.train import build_optimizers


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
            sampler = training_sampler(config, splits)
            batch = fp32.to_device(sampler.meta_batch(0))
            losses, grads = {}, {}
            for name, model in models.items():
                losses[name] = executions[name].run(model, batch).loss
                grads[name] = gradients(losses[name], dict(model.named_parameters()))
            deviation = max(relative_error(losses["bf16"], losses["fp32"]),
                            *gradient_errors(grads["bf16"], grads["fp32"]).values())
            del batch, losses, grads
            steps = {name: training_iteration(model, build_optimizers(model, config.optim), sampler,
                                              executions[name])
                     for name, model in models.items()}
            measured = time_side_by_side(steps, timing, device)
            notes = (f"bfloat16 autocast on the fast path; baseline: the float32 fast path; max rel. error: "
                     f"the bf16 loss and gradients against float32 on one meta-batch; "
                     f"{path_notes(executions['bf16'])}; {model_notes(config)}; "
                     f"{torch.get_num_threads()} torch threads")
            yield TrainingResult(f"{method} bf16", device_description(device), config, measured["bf16"][0],
                                 measured["fp32"][0], None, measured["bf16"][1], measured["fp32"][1], None,
                                 peak_flops, deviation, settings.quick, notes)
