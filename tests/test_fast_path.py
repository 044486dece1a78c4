"""The fast path: the vectorized execution (vmap over a meta-batch's tasks, kml/execution.py) computes what
the reference per-task loop computes, losses and gradients, in float32, for every joint method, first and
second order; and the training benchmark runs end to end in its quick mode (nothing about time is
asserted).

Tiny networks on 16-px images (four stride-2 layers leave 1x1 feature maps: batch-statistics BatchNorm over
fewer pixels amplifies fp32 rounding towards the tolerance), so that each case takes about a second."""

from __future__ import annotations

import csv

import pytest
import torch

from kml.bench.equivalence import EQUIVALENCE_TOLERANCE, gradient_errors, relative_error
from kml.bench.output import CSV_COLUMNS
from kml.cli import main
from kml.config import MAMLConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig
from kml.execution import Execution
from kml.method_table import JOINT_METHOD_NAMES as JOINT_METHODS
from kml.methods.registry import build_method

WAYS, SHOTS, QUERIES, SIZE, TASKS = 3, 3, 4, 16, 4
# float64 leaves rounding about 1e-15; the margin covers its amplification through the second-order loop.
FLOAT64_TOLERANCE = 1e-10
CASES = [(method, first_order) for method in JOINT_METHODS for first_order in (False, True)
         if not (first_order and "protonet" in method)]  # ProtoNet has no inner loop to make first order


CPU = torch.device("cpu")


def build(method, first_order):
    config = RunConfig(
        method=method, modes=("fc100",), task=TaskConfig(ways=WAYS, shots=SHOTS, queries=QUERIES),
        model=ModelConfig(channels=(4, 6, 5, 3), image_size=SIZE, embedding_dim=5),
        maml=MAMLConfig(inner_steps=3, first_order=first_order),
    )
    return build_method(config)


def execution(task_batching, device=CPU, **options):
    return Execution.of(TrainConfig(task_batching=task_batching, **options), device)


def tasks(seed=0):
    generator = torch.Generator().manual_seed(seed)

    def images(per_class):
        return torch.rand(TASKS, WAYS * per_class, 3, SIZE, SIZE, generator=generator)

    def labels(per_class):
        return torch.arange(WAYS).repeat_interleave(per_class).expand(TASKS, -1)

    return images(SHOTS), labels(SHOTS), images(QUERIES), labels(QUERIES)


def losses_and_gradients(model, batch, execution):
    result = execution.run_tasks(model, *batch)
    params = dict(model.named_parameters())
    return result, dict(zip(params, torch.autograd.grad(result.loss, list(params.values())), strict=True))


@pytest.mark.parametrize(("method", "first_order"), CASES)
def test_vectorized_and_per_task_paths_give_the_same_losses_and_gradients(method, first_order):
    fast, reference = build(method, first_order), build(method, first_order)
    vmapped, looped = execution("vmap"), execution("loop")
    assert vmapped.vmap_tasks and not looped.vmap_tasks
    batch = tasks()
    fast_result, fast_grads = losses_and_gradients(fast, batch, vmapped)
    ref_result, ref_grads = losses_and_gradients(reference, batch, looped)
    assert relative_error(fast_result.task_losses, ref_result.task_losses) < EQUIVALENCE_TOLERANCE
    assert torch.equal(fast_result.task_accuracies, ref_result.task_accuracies)
    errors = gradient_errors(fast_grads, ref_grads)
    assert set(errors) == {"backbone"} | ({"encoder", "generator"} if fast.encoder is not None else set())
    assert max(errors.values()) < EQUIVALENCE_TOLERANCE, errors
    for part in errors:  # a vanishing gradient would make the comparison vacuous
        assert sum(g.abs().sum() for name, g in ref_grads.items() if name.startswith(part)) > 0, part


@pytest.mark.parametrize(("method", "first_order"), CASES)
def test_in_float64_the_two_paths_agree_to_rounding(method, first_order):
    fast, reference = build(method, first_order).double(), build(method, first_order).double()
    batch = tuple(x.double() if x.is_floating_point() else x for x in tasks())
    fast_result, fast_grads = losses_and_gradients(fast, batch, execution("vmap"))
    ref_result, ref_grads = losses_and_gradients(reference, batch, execution("loop"))
    assert relative_error(fast_result.task_losses, ref_result.task_losses) < FLOAT64_TOLERANCE
    assert max(gradient_errors(fast_grads, ref_grads).values()) < FLOAT64_TOLERANCE


@pytest.mark.parametrize("method", ["maml", "mprotonet_kml"])
def test_channels_last_computes_the_same_in_float64(method):
    """train.channels_last changes the memory layout only: in float64 the losses and gradients agree to
    rounding (in float32 its oneDNN kernels round differently, docs/performance.md)."""
    layouts = {}
    for channels_last in (False, True):
        model = build(method, False).double()
        batch = tuple(x.double() if x.is_floating_point() else x for x in tasks())
        layout = execution("loop", channels_last=channels_last)
        layouts[channels_last] = losses_and_gradients(model, batch, layout)
    (nchw, nchw_grads), (nhwc, nhwc_grads) = layouts[False], layouts[True]
    assert relative_error(nhwc.task_losses, nchw.task_losses) < FLOAT64_TOLERANCE
    assert max(gradient_errors(nhwc_grads, nchw_grads).values()) < FLOAT64_TOLERANCE


@pytest.mark.parametrize("method", ["maml", "mmaml_kml"])
def test_the_comparison_resolves_first_from_second_order(method):
    """The tolerance is tight enough to fail: dropping the second-order terms exceeds it by far."""
    batch = tasks()
    _, second = losses_and_gradients(build(method, False), batch, execution("vmap"))
    _, first = losses_and_gradients(build(method, True), batch, execution("vmap"))
    assert max(gradient_errors(first, second).values()) > 100 * EQUIVALENCE_TOLERANCE


@pytest.mark.parametrize("method", ["mmaml_kml", "mprotonet"])
def test_vectorized_evaluation_matches_the_loop_and_keeps_no_graph(method):
    fast, reference = build(method, False).eval(), build(method, False).eval()
    batch = tasks(seed=1)
    with torch.no_grad():
        fast_result = execution("vmap").run_tasks(fast, *batch)
        ref_result = execution("loop").run_tasks(reference, *batch)
    assert fast_result.loss.grad_fn is None
    assert relative_error(fast_result.task_losses, ref_result.task_losses) < EQUIVALENCE_TOLERANCE
    assert torch.equal(fast_result.task_accuracies, ref_result.task_accuracies)


def test_auto_batching_loops_on_the_cpu_and_vmaps_on_the_gpu():
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    for _ in JOINT_METHODS:  # one policy for every method, training, evaluation and transference alike
        assert not execution("auto", cpu).vmap_tasks and execution("auto", gpu).vmap_tasks


def test_bf16_autocast_keeps_float32_losses_and_accuracies():
    model = build("mmaml_kml", False)
    result = execution("vmap", amp_bf16=True).run_tasks(model, *tasks())
    assert result.task_losses.dtype == result.task_accuracies.dtype == torch.float32
    hits = result.task_accuracies * WAYS * QUERIES  # whole numbers, which a bfloat16 mean would not give back
    torch.testing.assert_close(hits, hits.round(), rtol=0, atol=1e-5)


REQUIRED_COLUMNS = {"date", "device", "method", "shots", "seconds_per_iteration",
                    "baseline_seconds_per_iteration", "speedup", "peak_memory_mb", "fraction_of_peak"}


def test_quick_training_bench_writes_the_comparison_and_the_paper_estimate(tmp_path):
    out = tmp_path / "results.csv"
    assert main(["bench", "--quick", "--only", "training", "--out", str(out)]) == 0
    with out.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert REQUIRED_COLUMNS <= set(reader.fieldnames) and tuple(reader.fieldnames) == CSV_COLUMNS
    compared = [r for r in rows if r["baseline_seconds_per_iteration"]]
    assert sorted((r["method"], r["shots"]) for r in compared) == sorted(
        (m, k) for m in JOINT_METHODS for k in ("1", "5"))
    for r in compared:
        assert float(r["max_relative_error"]) <= EQUIVALENCE_TOLERANCE
        for column in REQUIRED_COLUMNS - {"date", "device", "method", "shots"}:
            assert float(r[column]) > 0, column
    members = [r for r in rows if r["method"].startswith("multi_maml member")]
    assert len(members) == 4  # Omniglot's (1 inner step) and the other modes' (meta-batch 4), both shots
    parts = {r["method"]: float(r["estimated_hours"]) for r in rows if r["estimated_hours"]}
    assert set(parts) == {f"paper preset {p}" for p in ("training", "evaluation", "transference", "total")}
    assert parts["paper preset total"] == pytest.approx(sum(v for p, v in parts.items() if "total" not in p),
                                                        abs=0.02)
    table = out.with_suffix(".md").read_text()
    assert table.count("| maml |") == 2 and "| paper preset total |" in table


def test_training_bench_filters_and_rejects_unknown_methods(tmp_path, capsys):
    out = tmp_path / "results.csv"
    assert main(["bench", "--quick", "--only", "training", "--methods", "protonet", "--shots", "5",
                 "--out", str(out)]) == 0
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["shots"]) for r in rows] == [("protonet", "5")]  # no estimate from a subset
    assert main(["bench", "--quick", "--only", "training", "--methods", "multi_maml", "--out", str(out)]) == 2
    assert "multi_maml" in capsys.readouterr().err
