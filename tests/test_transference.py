"""Transference: loss ratios after one-task lookaheads (kml/transference.py), on tiny models trained for a few
iterations on synthetic data, and `kml report transference` on them (the report's rules on hand-made rows:
tests/test_transference_report.py)."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch
from synthetic import one_thread, small_run_config, synthetic_files  # noqa: F401  (fixtures)

from kml import checkpoint
from kml import transference as tr
from kml.cli import main
from kml.config import RunConfig, save_run_config
from kml.layout import TRANSFERENCE_FIGURES as FIGURES
from kml.methods.registry import build_method
from kml.train import train
from kml.transference import (
    CSV_COLUMNS,
    BatchedEvaluator,
    LoopEvaluator,
    _tensors,
    build_lookahead,
    load_snapshot,
    run_transference,
    transference_tasks,
)

pytestmark = pytest.mark.usefixtures("one_thread")

MODES = ("miniimagenet", "fc100")
IMAGE_SIZE = 8
SNAPSHOTS = (2, 3)
SOURCES, TARGETS = 5, 3
# Plain and modulated of each family. On the CPU, where tests run, `kml transference` takes the loop path;
# the batched (accelerator) path is compared with it directly.
METHODS = ("protonet", "mprotonet_kml", "maml", "mmaml_kml")
TASK_KEYS = ["source_mode", "source_split", "source_task", "source_classes", "target_mode", "target_task",
             "target_classes", "self"]


def _config(files, method: str, **transference) -> RunConfig:
    # Chunks of 2 over 5 sources: an uneven last chunk, whose lookaheads are evaluated as a chunk of 1.
    settings = {"sources": SOURCES, "targets": TARGETS, "batch_size": 2, **transference}
    return small_run_config(
        files, method, task={"ways": 3, "shots": 1, "queries": 2},
        model={"channels": [4, 4, 4, 4], "embedding_dim": 4}, maml={"inner_steps": 1},
        train={"iterations": max(SNAPSHOTS), "meta_batch_size": 2, "extra_checkpoints": list(SNAPSHOTS),
               "device": "cpu"},
        transference=settings)


@pytest.fixture(scope="module")
def files(synthetic_files):  # noqa: F811
    return synthetic_files(MODES, IMAGE_SIZE)


@pytest.fixture(scope="module")
def snapshots(files, tmp_path_factory):
    """snapshots(method) -> {iteration: snapshot path} of a short training run, trained once per module."""
    root, runs = tmp_path_factory.mktemp("runs"), {}

    def run(method):
        if method not in runs:
            train(_config(files, method), root / method)
            runs[method] = {n: root / method / "snapshots" / f"iter{n:06d}.pt" for n in SNAPSHOTS}
        return runs[method]

    return run


def _ratios(files, snapshots, method, tmp_path, **transference) -> pd.DataFrame:
    [csv] = run_transference(_config(files, method, **transference), [snapshots(method)[SNAPSHOTS[-1]]],
                             tmp_path)
    return pd.read_csv(csv)


def _zero_gradients(monkeypatch, evaluator: type) -> None:
    """Make `kml transference` use `evaluator`, with every source's gradient replaced by zeros."""
    real = evaluator.gradients
    monkeypatch.setattr(tr, "evaluator_for", lambda method, lookahead, targets, vmap_tasks: evaluator(
        method, lookahead, targets))
    monkeypatch.setattr(evaluator, "gradients",
                        lambda self, tasks: {name: torch.zeros_like(g)
                                             for name, g in real(self, tasks).items()})


@pytest.mark.parametrize("evaluator", [LoopEvaluator, BatchedEvaluator])
@pytest.mark.parametrize("method", METHODS)
def test_only_the_source_gradient_enters_the_default_lookahead(files, snapshots, method, evaluator, tmp_path,
                                                                monkeypatch):
    snapshot = checkpoint.load(snapshots(method)[SNAPSHOTS[-1]])
    momentum = [state["exp_avg"] for optimizer in snapshot["optimizers"].values()
                for state in optimizer["state"].values()]
    assert all(m.abs().sum() > 0 for m in momentum)  # Adam state that could leak into the step
    real = _ratios(files, snapshots, method, tmp_path / "real")
    assert (real["ratio"] != 1.0).all() and (real["lookahead"] == "sgd").all()
    _zero_gradients(monkeypatch, evaluator)
    zero = _ratios(files, snapshots, method, tmp_path / "zero")
    assert len(zero) == SOURCES * TARGETS + TARGETS
    assert (zero["ratio"] == 1.0).all()
    # The Adam option moves θ without any source gradient: the test above could see a leak of its state.
    adam = _ratios(files, snapshots, method, tmp_path / "adam", lookahead="adam")
    assert (adam["ratio"] != 1.0).all()
    assert np.allclose(adam["ratio_to_momentum_only"], 1.0, rtol=0, atol=1e-6)
    if evaluator is LoopEvaluator:  # the momentum-only losses come from the same kernels there
        assert (adam["ratio_to_momentum_only"] == 1.0).all()


@pytest.mark.parametrize("method", ["protonet", "mmaml_kml"])
def test_the_default_lookahead_is_first_order_in_the_step_size(files, snapshots, method):
    """(LR(2α) − 1) / (LR(α) − 1) = 2 for a small α: LR − 1 is proportional to α (float64, no rounding)."""
    model, lookahead, sources, targets = _evaluation(files, snapshots, method, dtype=torch.float64)
    alpha = 1e-7  # these tiny networks are sharply curved: at 1e-6 the second-order term is ~1e-3
    steps = [replace(lookahead, step_size=alpha).apply, replace(lookahead, step_size=2 * alpha).apply]
    evaluator = LoopEvaluator(model, lookahead, targets)
    changes = []
    for chunk in sources:
        before, (once, twice) = evaluator.cross(chunk, steps)
        changes.append(torch.stack([once / before - 1, twice / before - 1]))
    once, twice = torch.cat(changes, dim=1)
    assert (once.abs() > 1e-10).all()  # far above float64 rounding
    # A step of α², a step with an offset or one that misses the source gradient would fail these.
    torch.testing.assert_close(twice / once, torch.full_like(once, 2.0), rtol=0, atol=1e-3)


@pytest.mark.parametrize("method", METHODS)
def test_a_small_step_on_the_target_itself_lowers_its_loss(files, snapshots, method, tmp_path):
    # Small enough that the first-order decrease dominates: these tiny networks are sharply curved (a step of
    # 1e-4 already overshoots on some tasks).
    rows = _ratios(files, snapshots, method, tmp_path, step_size={"maml": 1e-5, "protonet": 1e-5})
    own = rows[rows["self"]]
    assert len(own) == TARGETS and (own["source_task"] == own["target_task"]).all()
    assert (own["source_mode"] == "fc100").all() and (own["source_split"] == "test").all()
    assert (own["ratio"] < 1).all()


def test_each_family_takes_its_own_step_size_and_every_row_records_it(files, snapshots, tmp_path):
    sizes = {"maml": 2e-3, "protonet": 5e-4}
    for method in ("protonet", "mmaml_kml"):
        rows = _ratios(files, snapshots, method, tmp_path / method, step_size=sizes)
        family = "protonet" if "protonet" in method else "maml"
        assert (rows["step_size"] == sizes[family]).all() and (rows["lookahead"] == "sgd").all()
        assert rows["loss_after_momentum_only"].isna().all() and rows["ratio_to_momentum_only"].isna().all()
    adam = _ratios(files, snapshots, "protonet", tmp_path / "adam", lookahead="adam")
    # The Adam option records the snapshot's learning rate (training's default, 1e-3) as its step size.
    assert (adam["lookahead"] == "adam").all() and (adam["step_size"] == 1e-3).all()
    # One momentum-only loss per target, whatever the source.
    cross = adam[~adam["self"]]
    assert cross.groupby("target_task")["loss_after_momentum_only"].nunique().eq(1).all()
    assert np.allclose(adam["ratio_to_momentum_only"], adam["loss_after"] / adam["loss_after_momentum_only"])


def test_the_sweep_evaluates_the_first_tasks_at_every_step_size(files, snapshots, tmp_path):
    grid = [1e-4, 1e-3]
    sweep = {"sources": 3, "targets": 2, "step_sizes": grid}
    config = _config(files, "protonet", sweep=sweep, step_size={"maml": 1e-3, "protonet": 1e-3})
    [csv] = run_transference(config, [snapshots("protonet")[SNAPSHOTS[-1]]], tmp_path / "sweep", sweep=True)
    rows = pd.read_csv(csv)
    assert list(rows.columns) == list(CSV_COLUMNS) and sorted(rows["step_size"].unique()) == grid
    assert len(rows) == len(grid) * (3 * 2 + 2)
    # Its tasks are the analysis's first ones, and at the analysis's α its ratios are the analysis's.
    main = _ratios(files, snapshots, "protonet", tmp_path / "main",
                   step_size={"maml": 1e-3, "protonet": 1e-3})
    keys = ["source_task", "source_classes", "target_task", "target_classes", "self"]
    shared = rows[rows["step_size"] == 1e-3].merge(main, on=keys, suffixes=("", "_main"))
    assert len(shared) == 3 * 2 + 2
    np.testing.assert_allclose(shared["ratio"], shared["ratio_main"], rtol=0, atol=1e-6)


def test_sources_and_targets_are_fixed_by_the_seed_and_shared_by_every_method_and_snapshot(files, snapshots,
                                                                                           tmp_path):
    tables = []
    for method in ("protonet", "maml"):
        config = _config(files, method)
        csvs = run_transference(config, list(snapshots(method).values()), tmp_path / method)
        assert [p.name for p in csvs] == [f"iter{n}.csv" for n in SNAPSHOTS]
        tables += [pd.read_csv(p)[TASK_KEYS] for p in csvs]
    for table in tables[1:]:
        pd.testing.assert_frame_equal(table, tables[0])
    cross = tables[0][~tables[0]["self"]]
    assert (cross["source_mode"] == "miniimagenet").all() and (cross["source_split"] == "train").all()
    assert cross["source_classes"].str.split("|").map(len).eq(3).all()

    def images(config):
        sources, targets = transference_tasks(config)
        return [torch.cat([c.support_images for c in tasks.chunks]) for tasks in (sources, targets)]

    same, other = images(_config(files, "mmaml_kml")), images(_config(files, "protonet", seed=6))
    base = images(_config(files, "protonet"))
    assert all(torch.equal(a, b) for a, b in zip(base, same))
    assert not any(torch.equal(a, b) for a, b in zip(base, other))


@pytest.mark.parametrize("params", ["all", "base"])
def test_adam_lookahead_is_what_torch_adam_would_do_next(files, params):
    method = build_method(_config(files, "mprotonet_kml"))
    groups = method.parameter_groups()
    # Non-default hyperparameters, different per network, so that each must be read from the saved state.
    optimizers = {"base": torch.optim.Adam(groups["base"], lr=0.02, betas=(0.8, 0.95), eps=1e-4),
                  "modulation": torch.optim.Adam(groups["modulation"], lr=0.005, betas=(0.7, 0.9), eps=1e-6)}
    generator = torch.Generator().manual_seed(0)
    named = dict(method.named_parameters())

    def random_gradients():
        return {name: torch.randn(p.shape, generator=generator) for name, p in named.items()}

    for _ in range(3):
        for name, g in random_gradients().items():
            named[name].grad = g
        for optimizer in optimizers.values():
            optimizer.step()
    state = {"optimizers": {name: copy.deepcopy(o.state_dict()) for name, o in optimizers.items()}}
    config = _config(files, "mprotonet_kml", lookahead="adam", lookahead_params=params)
    lookahead = build_lookahead(method, state, config, "test")
    gradients = random_gradients()
    twice = {name: torch.stack([g, -g]) for name, g in gradients.items()}
    ours, batched = lookahead.apply(gradients), lookahead.apply(twice)
    for name, g in gradients.items():
        named[name].grad = g
    for name, optimizer in optimizers.items():
        if params == "all" or name == "base":
            optimizer.step()
    base = {n for n, p in named.items() if any(p is q for q in groups["base"])}
    assert set(ours) == (set(named) if params == "all" else base)
    for name, value in ours.items():
        assert torch.equal(value, named[name].detach())  # bitwise: torch's single-tensor path on the CPU
        torch.testing.assert_close(batched[name][0], value, rtol=0, atol=0)
        assert not torch.equal(batched[name][1], value)
    assert set(lookahead.fixed) == set(named) - set(ours)
    assert lookahead.step_size == 0.02  # the base network's learning rate, recorded in the CSV


def _evaluation(files, snapshots, method, dtype=torch.float32, **transference):
    """(model, lookahead, source chunks, all targets) of the method's last snapshot, as tensors on the CPU."""
    config = _config(files, method, **transference)
    cpu = torch.device("cpu")
    model, snapshot, _ = load_snapshot(snapshots(method)[SNAPSHOTS[-1]], config, cpu)
    model.to(dtype)
    lookahead = build_lookahead(model, snapshot, config, "test")

    def tensors(chunk):
        return tuple(x.to(dtype) if x.is_floating_point() else x for x in _tensors(chunk, cpu))

    sources, targets = transference_tasks(config)
    joined = tuple(torch.cat(parts) for parts in zip(*map(tensors, targets.chunks)))
    return model, lookahead, [tensors(chunk) for chunk in sources.chunks], joined


@pytest.mark.parametrize(("method", "params"), [*((m, "all") for m in METHODS), ("mprotonet_kml", "base"),
                                                ("mmaml_kml", "base")])
def test_batched_path_equals_a_loop_over_sources(files, snapshots, method, params):
    # In float64, where the two paths' different summation orders leave no visible trace: in float32 their
    # second-order MAML gradients differ by rounding that a gradient step turns into ~0.5 % of LR − 1.
    model, lookahead, sources, targets = _evaluation(files, snapshots, method, dtype=torch.float64,
                                                     lookahead_params=params)
    loop, batched = LoopEvaluator(model, lookahead, targets), BatchedEvaluator(model, lookahead, targets)
    updates = [lookahead.apply, replace(lookahead, step_size=lookahead.step_size / 10).apply]
    pairs = [(loop.cross(chunk, updates), batched.cross(chunk, updates))
             for chunk in sources]  # chunks 2, 2, 1
    pairs.append((loop.own(targets, updates), batched.own(targets, updates)))
    for (loop_before, loop_after), (batched_before, batched_after) in pairs:
        for loop_losses, batched_losses in zip(loop_after, batched_after):
            torch.testing.assert_close(batched_losses / batched_before - 1, loop_losses / loop_before - 1,
                                       rtol=1e-9, atol=1e-12)
            assert (loop_losses != loop_before).all()  # the lookahead changes every loss


def test_cli_writes_a_csv_per_snapshot_and_the_report_every_output(files, snapshots, tmp_path, capsys):
    csvs = []
    for method in ("protonet", "mprotonet_kml"):
        config_file = tmp_path / f"{method}.yaml"
        save_run_config(_config(files, method), config_file)
        out = tmp_path / "transference" / method / "1shot"
        options = [arg for n in SNAPSHOTS for arg in ("--checkpoint", str(snapshots(method)[n]))]
        assert main(["transference", "--config", str(config_file), *options, "--out-dir", str(out)]) == 0
        csvs += [out / f"iter{n}.csv" for n in SNAPSHOTS]
    results = tmp_path / "results"
    assert main(["report", "transference", *map(str, csvs), "--out-dir", str(results),
                 "--note", "smoke & 50%"]) == 0
    summary = pd.read_csv(results / "transference" / "summary.csv")
    assert list(summary[["method", "iteration"]].itertuples(index=False, name=None)) == [
        ("protonet", 2), ("protonet", 3), ("mprotonet_kml", 2), ("mprotonet_kml", 3)]
    table = (results / "tables" / "transference.tex").read_text()
    assert r"\toprule" in table and "MProtoNet+KML" in table and r"smoke \& 50\%" in table
    for name in FIGURES:
        for ext in ("pdf", "png"):
            assert (results / "figures" / f"transference_{name}.{ext}").stat().st_size > 0


def test_a_snapshot_trained_before_the_transference_section_changed_is_still_analysed(files, snapshots,
                                                                                      tmp_path):
    snapshot = checkpoint.load(snapshots("protonet")[SNAPSHOTS[-1]])
    # What kml saved with every model before the step size became per family.
    snapshot["config"]["transference"] = {"lookahead": "adam", "sgd_lr": 0.001}
    old = tmp_path / "old.pt"
    checkpoint.save(snapshot, old)
    [csv] = run_transference(_config(files, "protonet"), [old], tmp_path)
    assert len(pd.read_csv(csv)) == SOURCES * TARGETS + TARGETS


def test_a_final_model_serves_the_default_lookahead_but_not_the_adam_one(files, snapshots, tmp_path, capsys):
    config = _config(files, "protonet", lookahead="adam")
    final = tmp_path / "model.pt"
    model, _, _ = load_snapshot(snapshots("protonet")[SNAPSHOTS[-1]], config, torch.device("cpu"))
    checkpoint.save({"config": config.to_dict(), "model": model.state_dict(), "iteration": 3}, final)
    config_file = tmp_path / "run.yaml"
    save_run_config(config, config_file)
    code = main(["transference", "--config", str(config_file), "--checkpoint", str(final),
                 "--out-dir", str(tmp_path)])
    assert code == 2 and "no optimizer state" in capsys.readouterr().err
    save_run_config(_config(files, "protonet"), config_file)
    assert main(["transference", "--config", str(config_file), "--checkpoint", str(final), "--out-dir",
                 str(tmp_path)]) == 0
    save_run_config(_config(files, "maml"), config_file)
    code = main(["transference", "--config", str(config_file), "--checkpoint", str(snapshots("protonet")[2]),
                 "--out-dir", str(tmp_path)])
    assert code == 2 and "trained as protonet" in capsys.readouterr().err
