"""kml's methods against the released code's way of computing a meta-batch (kml/baseline.py): the relative
differences of their losses and gradients (and the FLOPs of the baseline's iteration, counted on the way), and
the float64 check that the two compute the same before the training benchmark times them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch
from torch.utils.flop_counter import FlopCounterMode

from kml.baseline import ReleasedImages, ReleasedStyle
from kml.bench.settings import BenchError
from kml.config import RunConfig
from kml.data.episodes import MetaBatch
from kml.execution import Execution
from kml.methods.base import MetaLearner

# The fast path and the baseline must agree this closely (relative; in float64, see check_equivalence) before
# they are timed; the tests hold the two paths to it in float32 at small sizes.
EQUIVALENCE_TOLERANCE = 1e-5


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


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    """‖value − reference‖ / ‖reference‖, in float64."""
    value, reference = value.detach().double(), reference.detach().double()
    return (torch.linalg.vector_norm(value - reference) / torch.linalg.vector_norm(reference)).item()


def gradient_errors(value: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, float]:
    """Relative error of the gradient of each network part (backbone, encoder, generator: a parameter name's
    first component), all its tensors as one vector.

    Per part rather than per tensor: two float32 computations that sum in different orders differ by
    rounding, which a second-order inner loop amplifies; conv biases and KML's Δb, whose true gradient is zero
    (they feed batch-statistics BatchNorm, docs/specification.md §4.5), and small BatchNorm scale vectors then
    hold nothing but that rounding, tensor by tensor. Any real discrepancy in a tensor that matters shows at
    the part's level.
    """
    if value.keys() != reference.keys():
        raise ValueError(f"different parameters: {sorted(value.keys() ^ reference.keys())}")
    parts: dict[str, list[str]] = {}
    for name in reference:
        parts.setdefault(name.split(".")[0], []).append(name)
    return {part: relative_error(torch.cat([value[n].flatten() for n in names]),
                                 torch.cat([reference[n].flatten() for n in names]))
            for part, names in parts.items()}


def gradients(loss: torch.Tensor, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The gradient of `loss` with respect to each named parameter."""
    return dict(zip(params, torch.autograd.grad(loss, list(params.values())), strict=True))


def path_differences(fast: MetaLearner, baseline: ReleasedStyle, batch: MetaBatch,
                     execution: Execution) -> tuple[dict[str, float], float]:
    """Relative differences of the two paths on one meta-batch, in their parameters' dtype (the loss, then
    each network part's gradient), and the FLOPs of the baseline's forward and backward."""
    dtype = next(fast.parameters()).dtype
    images = batch.to(execution.device)
    images = replace(images, support_images=images.support_images.to(dtype),
                     query_images=images.query_images.to(dtype))
    with exact_float32():
        loss = execution.run(fast, images).loss
        grads = gradients(loss, dict(fast.named_parameters()))
        # Counted on this pass, which computes the baseline's iteration anyway.
        with FlopCounterMode(display=False) as counter:
            baseline_loss = baseline.loss(batch)
            baseline_grads = gradients(baseline_loss, baseline.params)
    differences = {"loss": relative_error(loss, baseline_loss), **gradient_errors(grads, baseline_grads)}
    return differences, counter.get_total_flops()


def check_equivalence(config: RunConfig, fast: MetaLearner, released: dict[str, ReleasedImages],
                      batch: MetaBatch, execution: Execution) -> float:
    """The largest relative difference between a float64 copy of `fast` and the baseline on `batch`; a
    BenchError if it exceeds EQUIVALENCE_TOLERANCE, so that different computations are never timed.

    In float64 because at the paper's sizes float32 itself is less accurate than the tolerance (a second-order
    inner loop through batch-statistics BatchNorm amplifies its rounding; docs/performance.md has the
    measurement), so two correct float32 computations that merely round differently (vmap's grouped
    convolutions, say) can disagree beyond it, while in float64 rounding stays far below the tolerance and a
    disagreement is a real one."""
    exact = copy.deepcopy(fast).double()
    differences, _ = path_differences(exact, ReleasedStyle(config, exact, released, execution.device), batch,
                                      execution)
    if max(differences.values()) > EQUIVALENCE_TOLERANCE:
        listing = ", ".join(f"{part} {error:.1e}" for part, error in differences.items())
        raise BenchError(f"{config.method} {config.task.shots}-shot: the fast path and the baseline disagree "
                         f"beyond {EQUIVALENCE_TOLERANCE:g} in float64 (relative: {listing}); not timing "
                         "different computations")
    return max(differences.values())
