"""`kml report claims`: the paper's comparisons tested task by task, on constructed cells with known
answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from kml import KmlError
from kml.cell_csv import cell_frame
from kml.cli import main
from kml.config import RunConfig, TaskConfig
from kml.report import report_claims
from kml.report.claims import COMPARISONS, compare
from kml.report.summary import read_cells

# 2Mode† 5-shot in the paper: MMAML+KML − MAML = −0.39, − Multi-MAML = +0.21, − MMAML = +1.70 points.
SETTING, SHOTS, MODES = "2mode_dagger", 5, ("miniimagenet", "fc100")
TASKS = 200
COLUMNS = ["setting", "shots", "method", "baseline", "delta_pct", "ci95_pct", "p_value", "p_holm", "n_tasks",
           "n_seeds", "paper_delta_pct", "verdict"]


def write_cell(root, method, correct, setting=SETTING, shots=SHOTS, modes=MODES, task_ids=None):
    """A cell CSV as `kml evaluate` writes it, from each task's number of correct queries out of 75."""
    task_ids = list(range(len(correct))) if task_ids is None else task_ids
    config = RunConfig(method=method, modes=modes, setting=setting, task=TaskConfig(shots=shots))
    frame = cell_frame(config, task_ids, [modes[t % len(modes)] for t in task_ids], np.asarray(correct) / 75)
    path = root / setting / method / f"{shots}shot.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path


def base_correct(seed=0, tasks=TASKS):
    """Per-task correct counts out of 75: two modes far apart, as in a real mixed-mode cell."""
    rng = np.random.default_rng(seed)
    return np.where(np.arange(tasks) % 2 == 0, rng.integers(35, 60, tasks), rng.integers(15, 40, tasks))


def test_verdicts_where_the_answer_is_known(tmp_path):
    """MMAML+KML better on every task: reproduced where the paper's difference is positive, contradicted where
    it is negative; MMAML identical to MAML: not significant."""
    base = base_correct()
    better = base + np.random.default_rng(1).integers(1, 4, TASKS)  # 1 to 3 more correct queries per task
    cells = [write_cell(tmp_path, method, correct) for method, correct in
             (("maml", base), ("multi_maml", base), ("mmaml", base), ("mmaml_kml", better))]
    claims = compare(read_cells(cells))
    assert list(claims.columns) == COLUMNS
    # no ProtoNet cells: absent
    assert list(zip(claims["method"], claims["baseline"])) == list(COMPARISONS[:4])
    verdicts = dict(zip(zip(claims["method"], claims["baseline"]), claims["verdict"]))
    assert verdicts == {
        ("mmaml_kml", "maml"): "contradicted",  # the paper: -0.39
        ("mmaml_kml", "multi_maml"): "reproduced",  # +0.21
        ("mmaml_kml", "mmaml"): "reproduced",  # +1.70
        ("mmaml", "maml"): "not significant",  # identical cells
    }
    assert claims["paper_delta_pct"].tolist() == [-0.39, 0.21, 1.7, -2.09]
    assert (claims["n_tasks"] == TASKS).all()
    same = claims.iloc[3]
    assert (same.delta_pct, same.ci95_pct, same.p_value) == (0.0, 0.0, 1.0)
    expected_gain = 100 * (better - base).mean() / 75
    assert claims["delta_pct"].iloc[0] == pytest.approx(expected_gain, abs=1e-4)


def test_statistics_equal_scipys_paired_t_test_on_the_written_task_rows(tmp_path):
    cells, accuracy = [], {}
    for seed, method in enumerate(("protonet", "multi_protonet", "mprotonet", "mprotonet_kml")):
        correct = np.clip(base_correct() + np.random.default_rng(seed).integers(-6, 7 + seed, TASKS), 0, 75)
        cells.append(write_cell(tmp_path, method, correct))
        tasks = pd.read_csv(cells[-1]).query("kind == 'task'").set_index("task_id")
        accuracy[method] = tasks["accuracy_pct"]
    claims = compare(read_cells(cells))
    assert len(claims) == 4
    for row in claims.itertuples():
        a, b = accuracy[row.method], accuracy[row.baseline]
        test = scipy_stats.ttest_rel(a, b)
        low, high = test.confidence_interval(0.95)
        assert row.delta_pct == pytest.approx((a - b).mean(), abs=1e-4)
        assert row.ci95_pct == pytest.approx((high - low) / 2, abs=1e-4)
        assert row.p_value == pytest.approx(test.pvalue, rel=1e-9)
        assert row.n_tasks == TASKS
    # Holm over the 4 comparisons: the smallest p is multiplied by 4, and no adjusted p falls below its own.
    smallest = claims["p_value"].idxmin()
    assert claims.at[smallest, "p_holm"] == pytest.approx(min(1.0, 4 * claims.at[smallest, "p_value"]))
    assert (claims["p_holm"] >= claims["p_value"]).all()
    # The verdict rests on the adjusted p.
    for row in claims.itertuples():
        significant = row.p_holm < 0.05
        assert (row.verdict != "not significant") == significant, row


def test_rows_follow_the_papers_order_whatever_order_the_cells_come_in(tmp_path):
    cells = [write_cell(tmp_path, method, base_correct(seed), setting=setting, shots=shots, modes=modes)
             for seed, (setting, modes) in enumerate((("5mode", ("omniglot", "miniimagenet", "fc100", "cub",
                                                                   "aircraft")),
                                                      ("2mode", ("omniglot", "miniimagenet"))))
             for shots in (5, 1) for method in ("mprotonet", "protonet", "mmaml", "maml")]
    claims = compare(read_cells(cells))
    assert list(claims[["setting", "shots", "method", "baseline"]].itertuples(index=False, name=None)) == [
        (setting, shots, *pair) for setting in ("2mode", "5mode") for shots in (1, 5)
        for pair in (("mmaml", "maml"), ("mprotonet", "protonet"))]


@pytest.mark.parametrize("kind", ["fewer tasks", "other modes"])
def test_cells_on_different_tasks_are_an_error_naming_both_files(tmp_path, kind, capsys):
    first = write_cell(tmp_path, "maml", base_correct())
    if kind == "fewer tasks":
        second = write_cell(tmp_path, "mmaml", base_correct()[:180])
    else:  # the same ids, but the modes trade places
        second = write_cell(tmp_path, "mmaml", base_correct(), modes=MODES[::-1])
    with pytest.raises(KmlError, match="not evaluated on the same test tasks") as error:
        compare(read_cells([first, second]))
    assert str(second) in str(error.value) and str(first) in str(error.value)
    assert "eval.tasks_per_mode and eval.seed" in str(error.value)
    assert main(["report", "claims", str(first), str(second), "--out-dir", str(tmp_path / "out")]) == 2
    message = capsys.readouterr().err
    assert str(first) in message and "Traceback" not in message


def test_cli_writes_the_csv_table_and_figure(tmp_path):
    cells = [write_cell(tmp_path / "eval", method, base_correct(seed))
             for seed, method in enumerate(("maml", "mmaml"))]
    out = tmp_path / "results"
    assert main(["report", "claims", *map(str, cells), "--out-dir", str(out), "--note", "plumbing only"]) == 0
    claims = pd.read_csv(out / "claims.csv")
    assert list(claims.columns) == COLUMNS and len(claims) == 1
    table = (out / "tables" / "claims.tex").read_text()
    assert "plumbing only" in table and r"MMAML vs MAML & $" in table
    assert r"MMAML+KML vs MAML & -- & -- & $-0.39$ & -- \\" in table  # a comparison whose cells were not run
    assert table.count(r"\begin{table}") == 2  # one float per family
    pdf, png = out / "figures" / "claims.pdf", out / "figures" / "claims.png"
    assert pdf.read_bytes()[:5] == b"%PDF-" and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_no_pair_among_the_cells_gives_an_empty_file_and_a_table_of_missing_rows(tmp_path):
    written = report_claims([write_cell(tmp_path, "maml", base_correct())], tmp_path / "results")
    assert [path.name for path in written] == ["claims.csv", "claims.tex", "claims.pdf", "claims.png"]
    claims = pd.read_csv(tmp_path / "results" / "claims.csv")
    assert list(claims.columns) == COLUMNS and claims.empty


def test_cells_of_several_seeds_are_compared_seed_by_seed_with_the_seed_inclusive_test(tmp_path):
    from kml.cell_csv import seeds_cell_frame
    from kml.stats import seeds_by_tasks

    def seeded_cell(method, corrects):
        config = RunConfig(method=method, modes=MODES, setting=SETTING, task=TaskConfig(shots=SHOTS))
        modes = [MODES[t % 2] for t in range(TASKS)]
        frames = [cell_frame(config, range(TASKS), modes, np.asarray(correct) / 75, seed)
                  for seed, correct in zip((0, 1, 2), corrects)]
        path = tmp_path / f"{method}.csv"
        seeds_cell_frame(config, frames).to_csv(path, index=False)
        return path

    base = [base_correct(seed) for seed in (0, 1, 2)]
    better = [correct + np.random.default_rng(9 + i).integers(-1, 4, TASKS) for i, correct in enumerate(base)]
    # MMAML with two seeds only: compared with MMAML+KML on the seeds both have
    cells = [seeded_cell("mmaml", base[:2]), seeded_cell("mmaml_kml", better)]
    claims = compare(read_cells(cells)).set_index(["method", "baseline"])
    row = claims.loc[("mmaml_kml", "mmaml")]
    expected = seeds_by_tasks(100 * (np.stack(better[:2]) - np.stack(base[:2])) / 75)
    assert (row["n_seeds"], row["n_tasks"]) == (2, TASKS)
    assert row["delta_pct"] == pytest.approx(expected.mean, abs=1e-4)
    assert row["ci95_pct"] == pytest.approx(expected.ci95, abs=1e-4)
    assert row["p_value"] == pytest.approx(expected.p_value, rel=1e-6)
