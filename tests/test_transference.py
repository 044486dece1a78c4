"""Transference: loss ratios after one-task lookaheads (kml/transference.py) and their report
(kml/report/transference.py), on tiny models trained for a few iterations on synthetic data."""

from __future__ import annotations

import copy
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import torch
from synthetic import one_thread, small_run_config, synthetic_files  # noqa: F401  (fixtures)

from kml import KmlError, checkpoint
from kml.cli import main
from kml.config import RunConfig, TransferenceConfig, save_run_config
from kml.methods.registry import build_method
from kml.report.transference import (
    FIGURES,
    SUMMARY_COLUMNS,
    read_transference,
    summarize_transference,
    transference_table,
)
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
    [csv] = run_transference(_config(files, method, **transference), [snapshots(method)[SNAPSHOTS[-1]]], tmp_path)
    return pd.read_csv(csv)


@pytest.mark.parametrize("method", METHODS)
def test_a_zero_step_gives_a_ratio_of_exactly_one_and_a_real_step_does_not(files, snapshots, method, tmp_path):
    zero = _ratios(files, snapshots, method, tmp_path / "zero", lookahead="sgd", sgd_lr=0.0)
    assert len(zero) == SOURCES * TARGETS + TARGETS
    assert (zero["ratio"] == 1.0).all()
    adam = _ratios(files, snapshots, method, tmp_path / "adam")
    assert (adam["ratio"] != 1.0).all()


@pytest.mark.parametrize("method", METHODS)
def test_a_small_step_on_the_target_itself_lowers_its_loss(files, snapshots, method, tmp_path):
    # Small enough that the first-order decrease dominates: these tiny networks are sharply curved (a step of
    # 1e-4 already overshoots on some tasks).
    rows = _ratios(files, snapshots, method, tmp_path, lookahead="sgd", sgd_lr=1e-5)
    own = rows[rows["self"]]
    assert len(own) == TARGETS and (own["source_task"] == own["target_task"]).all()
    assert (own["source_mode"] == "fc100").all() and (own["source_split"] == "test").all()
    assert (own["ratio"] < 1).all()


def test_sources_and_targets_are_fixed_by_the_seed_and_shared_by_every_method_and_snapshot(files, snapshots, tmp_path):
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


def _hand_rows():
    """Two targets, four sources each (band 0.01), and a self row per target, as `kml transference` writes."""
    ratios = {0: [0.90, 0.995, 1.00, 1.20], 1: [0.50, 0.80, 0.98, 1.02]}
    rows = [{"target_task": t, "source_task": s, "self": False, "ratio": r}
            for t, values in ratios.items() for s, r in enumerate(values)]
    rows += [{"target_task": 0, "source_task": 0, "self": True, "ratio": 0.7},
             {"target_task": 1, "source_task": 1, "self": True, "ratio": 0.9}]
    frame = pd.DataFrame(rows).assign(
        setting="2mode_dagger", method="protonet", shots=1, iteration=100, lookahead="adam", lookahead_params="all",
        sgd_lr=np.nan, neutral_band=0.01, source_mode="miniimagenet", source_split="train", source_classes="a|b",
        target_mode="fc100", target_classes="c|d", loss_before=1.0)
    return frame.assign(loss_after=frame["ratio"])[list(CSV_COLUMNS)]


def test_fractions_cis_median_and_self_on_hand_made_ratios():
    [row] = summarize_transference(_hand_rows()).to_dict("records")
    # Per target: positive 1/4 and 3/4 (0.98 is outside the band), neutral 2/4 and 0, negative 1/4 and 1/4.
    ci = 1.96 * 25 / np.sqrt(2)  # population std of (25, 75) is 25
    assert row["positive_pct"] == pytest.approx(50) and row["positive_ci95_pct"] == pytest.approx(ci)
    assert row["neutral_pct"] == pytest.approx(25) and row["neutral_ci95_pct"] == pytest.approx(ci)
    assert row["negative_pct"] == pytest.approx(25) and row["negative_ci95_pct"] == pytest.approx(0)
    assert row["median_ratio"] == pytest.approx(np.median([0.9, 0.995, 1.0, 1.2, 0.5, 0.8, 0.98, 1.02]))
    assert row["self_ratio"] == pytest.approx(0.8)
    assert row["self_ratio_ci95"] == pytest.approx(1.96 * 0.1 / np.sqrt(2))
    assert (row["n_sources"], row["n_targets"]) == (4, 2)
    # The paper's teaser numbers for ProtoNet, with the caveat that it states neither shots nor stage.
    assert (row["paper_positive_pct"], row["paper_neutral_pct"], row["paper_negative_pct"]) == (28, 9, 63)
    assert "not stated" in row["paper_note"]
    assert list(summarize_transference(_hand_rows()).columns) == SUMMARY_COLUMNS


def test_a_single_target_has_no_confidence_interval_and_an_unreported_method_no_paper_numbers():
    rows = _hand_rows()
    rows = rows[rows["target_task"] == 0].assign(method="maml")
    [row] = summarize_transference(rows).to_dict("records")
    assert row["positive_pct"] == pytest.approx(25) and np.isnan(row["positive_ci95_pct"])
    assert np.isnan(row["paper_positive_pct"]) and "no transference numbers" in row["paper_note"]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda rows: rows.drop(columns="ratio"), "missing columns ratio"),
    (lambda rows: rows.assign(iteration=[100, 200] * 5), "exactly one (method, shots, iteration)"),
    (lambda rows: rows.assign(ratio=-1.0), "positive number"),
])
def test_a_malformed_csv_is_an_error_naming_the_file(tmp_path, edit, message):
    path = tmp_path / "iter100.csv"
    edit(_hand_rows()).to_csv(path, index=False)
    with pytest.raises(KmlError, match=f"{re.escape(str(path))}: .*{re.escape(message)}"):
        read_transference([path])


def test_csvs_of_one_snapshot_twice_or_of_different_analyses_are_an_error(tmp_path):
    first, second = tmp_path / "a.csv", tmp_path / "b.csv"
    _hand_rows().to_csv(first, index=False)
    _hand_rows().to_csv(second, index=False)
    with pytest.raises(KmlError, match="given twice"):
        read_transference([first, second])
    _hand_rows().assign(iteration=200, neutral_band=0.02).to_csv(second, index=False)
    with pytest.raises(KmlError, match="neutral_band: the CSVs differ"):
        read_transference([first, second])


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_table_compiles_with_booktabs_and_fits_the_page(tmp_path):
    # The widest rows: the longest method name, five-digit iterations, CIs and the paper's numbers.
    rows = pd.concat([_hand_rows().assign(method=m, iteration=20000) for m in ("mprotonet_kml", "mmaml")])
    (tmp_path / "table.tex").write_text(transference_table(summarize_transference(rows), "Smoke & 50% {note}"))
    (tmp_path / "document.tex").write_text(
        "\\documentclass{article}\\usepackage{booktabs}\\begin{document}\\input{table.tex}\\end{document}\n")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "document.tex"],
                            cwd=tmp_path, capture_output=True, text=True, check=False)
    log = (tmp_path / "document.log").read_text(errors="replace")
    assert result.returncode == 0, log[-3000:]
    assert "Overfull \\hbox" not in log, log[-3000:]


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
    lookahead = build_lookahead(method, state, TransferenceConfig(lookahead_params=params), "test")
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


def _evaluation(files, snapshots, method, **transference):
    """(model, lookahead, source chunks, all targets) of the method's last snapshot, as tensors on the CPU."""
    config = _config(files, method, **transference)
    cpu = torch.device("cpu")
    model, snapshot = load_snapshot(snapshots(method)[SNAPSHOTS[-1]], config, cpu)
    lookahead = build_lookahead(model, snapshot, config.transference, "test")
    sources, targets = transference_tasks(config)
    joined = tuple(torch.cat(parts) for parts in zip(*(_tensors(chunk, cpu) for chunk in targets.chunks)))
    return model, lookahead, [_tensors(chunk, cpu) for chunk in sources.chunks], joined


@pytest.mark.parametrize(("method", "params"), [*((m, "all") for m in METHODS), ("mprotonet_kml", "base"),
                                                ("mmaml_kml", "base")])
def test_batched_path_equals_a_loop_over_sources(files, snapshots, method, params):
    model, lookahead, sources, targets = _evaluation(files, snapshots, method, lookahead_params=params)
    loop, batched = LoopEvaluator(model, lookahead, targets), BatchedEvaluator(model, lookahead, targets)
    for chunk in sources:  # chunks of 2, 2 and 1
        (loop_before, loop_after), (batched_before, batched_after) = loop.cross(chunk), batched.cross(chunk)
        torch.testing.assert_close(batched_after / batched_before, loop_after / loop_before, rtol=0, atol=1e-5)
        assert not torch.allclose(loop_after, loop_before, rtol=0, atol=1e-4)  # the lookahead changes losses
    torch.testing.assert_close(batched.own(targets)[1], loop.own(targets)[1], rtol=0, atol=1e-5)


@pytest.mark.parametrize("method", METHODS)
def test_batched_path_gives_exactly_one_for_a_zero_step(files, snapshots, method):
    model, lookahead, sources, targets = _evaluation(files, snapshots, method, lookahead="sgd", sgd_lr=0.0)
    evaluator = BatchedEvaluator(model, lookahead, targets)
    for before, after in [*map(evaluator.cross, sources), evaluator.own(targets)]:
        assert torch.equal(before, after)


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
    assert main(["report", "transference", *map(str, csvs), "--out-dir", str(results), "--note", "smoke & 50%"]) == 0
    summary = pd.read_csv(results / "transference" / "summary.csv")
    assert list(summary[["method", "iteration"]].itertuples(index=False, name=None)) == [
        ("protonet", 2), ("protonet", 3), ("mprotonet_kml", 2), ("mprotonet_kml", 3)]
    table = (results / "tables" / "transference.tex").read_text()
    assert r"\toprule" in table and "MProtoNet+KML" in table and r"smoke \& 50\%" in table
    for name in FIGURES:
        for ext in ("pdf", "png"):
            assert (results / "figures" / f"transference_{name}.{ext}").stat().st_size > 0


def test_a_final_model_has_no_optimizer_state_for_the_adam_lookahead(files, snapshots, tmp_path, capsys):
    config = _config(files, "protonet")
    final = tmp_path / "model.pt"
    model, _ = load_snapshot(snapshots("protonet")[SNAPSHOTS[-1]], config, torch.device("cpu"))
    checkpoint.save({"config": config.to_dict(), "model": model.state_dict(), "iteration": 3}, final)
    config_file = tmp_path / "run.yaml"
    save_run_config(config, config_file)
    code = main(["transference", "--config", str(config_file), "--checkpoint", str(final), "--out-dir", str(tmp_path)])
    assert code == 2 and "no optimizer state" in capsys.readouterr().err
    save_run_config(_config(files, "maml"), config_file)
    code = main(["transference", "--config", str(config_file), "--checkpoint", str(snapshots("protonet")[2]),
                 "--out-dir", str(tmp_path)])
    assert code == 2 and "trained as protonet" in capsys.readouterr().err
