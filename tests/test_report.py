"""`kml report accuracy`: cell CSVs → summary CSVs, LaTeX tables and the comparison figure."""

from __future__ import annotations

import csv
import math
import shutil
import statistics
import subprocess
import sys
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest

from kml import KmlError
from kml.cell_csv import COLUMNS
from kml.cli import main
from kml.method_table import METHOD_LABELS
from kml.report import report_accuracy, report_claims
from kml.report.claims import CLAIMS_COLUMNS, paper_comparisons
from kml.report.paper import SETTING_LABELS
from kml.report.summary import intervals_overlap, per_mode, read_cells, summarize
from kml.report.tables import best_mask, claims_table, escape_latex, family_table, write_tables
from kml.stats import VERDICTS

PAPER_ORDER = [
    (s, k, m)
    for s in ("2mode_dagger", "2mode", "3mode", "5mode")
    for k in (1, 5)
    for m in (
        "maml",
        "multi_maml",
        "mmaml",
        "mmaml_kml",
        "protonet",
        "multi_protonet",
        "mprotonet",
        "mprotonet_kml",
    )
]
NOTE = r"Smoke preset: 50% of tasks & $x_1$ {#~^\} prove the plumbing, not the science."


def paper_numbers() -> dict[tuple[str, str, int], tuple[float, float]]:
    """The packaged paper table, read with the csv module rather than the code under test."""
    with files("kml.report").joinpath("paper_results.csv").open() as handle:
        return {
            (r["setting"], r["method"], int(r["shots"])): (float(r["accuracy"]), float(r["ci95"]))
            for r in csv.DictReader(handle)
        }


def hand_summary(accuracies: np.ndarray, modes: list[str]) -> dict[str, float]:
    """A summary row's mean and intervals, computed with the statistics module (not kml.stats)."""
    values = [float(value) for value in accuracies]
    n = len(values)
    strata = [[v for v, m in zip(values, modes) if m == mode] for mode in dict.fromkeys(modes)]
    stratified = (sum((len(s) / n) ** 2 * statistics.variance(s) / len(s) for s in strata)
                  if n > len(strata) else None)
    batches = [statistics.fmean(values[i:i + 10]) for i in range(0, n, 10)]
    return {
        "n_tasks": n,
        "accuracy_pct": statistics.fmean(values),
        "ci95_pct": 1.96 * statistics.pstdev(values) / math.sqrt(n),
        "ci95_stratified_pct": np.nan if stratified is None else 1.96 * math.sqrt(stratified),
        "ci95_batch_means_pct": 1.96 * statistics.pstdev(batches) / math.sqrt(len(batches))
        if len(batches) > 1 else np.nan,
    }


def write_cell(path, setting, method, shots, per_mode: dict[str, np.ndarray]):
    """A cell CSV as `kml evaluate` writes it (tasks numbered mode after mode); returns the hand-computed
    overall summary."""
    rows, modes, task_id = [], [], 0
    for mode, accuracies in per_mode.items():
        for accuracy in accuracies:
            rows.append({"kind": "task", "task_id": task_id, "mode": mode, "n_tasks": 1,
                         "accuracy_pct": accuracy})
            task_id += 1
        modes += [mode] * len(accuracies)
        rows.append({"kind": "mode", "mode": mode, **hand_summary(accuracies, [mode] * len(accuracies)),
                     "ci95_batch_means_pct": np.nan})
    overall = hand_summary(np.concatenate(list(per_mode.values())), modes)
    rows.append({"kind": "overall", **overall})
    frame = pd.DataFrame(rows).assign(setting=setting, method=method, shots=shots, seed=0, n_seeds=1)
    for interval in ("ci95", "ci95_stratified", "ci95_batch_means"):
        frame[f"{interval}_definition"] = np.where(frame["kind"] == "task", "", f"{interval} by hand")
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.reindex(columns=COLUMNS).to_csv(path, index=False)
    return overall


def one_shot_cell(root, setting, method, accuracies: dict[str, np.ndarray]):
    """A 1-shot cell CSV at root/{setting}/{method}/1shot.csv (the variant and ablation reports' tests)."""
    path = root / setting / method / "1shot.csv"
    write_cell(path, setting, method, 1, accuracies)
    return path


def random_cell(tmp_path, setting, method, shots, seed):
    rng = np.random.default_rng(seed)
    per_mode = {mode: rng.uniform(20, 90, size=n) for mode, n in (("fc100", 20), ("miniimagenet", 30))}
    path = tmp_path / "eval" / setting / method / f"{shots}shot.csv"
    return path, write_cell(path, setting, method, shots, per_mode)


def constant_cell(tmp_path, setting, method, shots, accuracy):
    """Every one of 20 tasks at `accuracy`, so the cell's mean is `accuracy` and its intervals have zero
    width."""
    path = tmp_path / f"{setting}-{method}-{shots}.csv"
    write_cell(path, setting, method, shots, {"omniglot": np.full(20, accuracy)})
    return path


# A partial run: eleven cells, both families, every setting, some rows missing cells.
PARTIAL = [cell for i, cell in enumerate(PAPER_ORDER) if i % 6 == 0]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    """A full report on a partial run, made once: (out dir, {cell: its hand-computed overall summary})."""
    root = tmp_path_factory.mktemp("report")
    written = {(s, m, k): random_cell(root, s, m, k, seed) for seed, (s, k, m) in enumerate(PARTIAL)}
    report_accuracy([path for path, _ in written.values()], root / "results", note=NOTE)
    report_claims([path for path, _ in written.values()], root / "results", note=NOTE)
    return root / "results", {cell: hand for cell, (_, hand) in written.items()}


def test_summary_compares_with_the_paper_through_the_batch_means_interval(report):
    out, hand = report
    summary = pd.read_csv(out / "summary.csv")
    paper = paper_numbers()
    assert list(summary.columns) == [
        "setting",
        "method",
        "shots",
        "accuracy",
        "ci95",
        "n_tasks",
        "n_seeds",
        "seed_sd",
        "paper_accuracy",
        "paper_ci95",
        "delta",
        "delta_ci95",
        "intervals_overlap",
        "ci95_stratified",
        "ci95_pooled",
        "ci95_definition",
    ]
    assert list(summary[["setting", "shots", "method"]].itertuples(index=False, name=None)) == PARTIAL
    for row in summary.itertuples():
        cell = hand[(row.setting, row.method, row.shots)]
        assert (row.accuracy, row.n_tasks) == pytest.approx((cell["accuracy_pct"], cell["n_tasks"]),
                                                            rel=1e-12)
        # ci95, the interval set beside the paper's, is the released MMAML code's over batch means.
        assert row.ci95 == pytest.approx(cell["ci95_batch_means_pct"], rel=1e-12)
        assert row.ci95_definition == "ci95_batch_means by hand"
        assert row.ci95_stratified == pytest.approx(cell["ci95_stratified_pct"], rel=1e-12)
        assert row.ci95_pooled == pytest.approx(cell["ci95_pct"], rel=1e-12)
        assert (row.paper_accuracy, row.paper_ci95) == paper[(row.setting, row.method, row.shots)]
        assert row.delta == pytest.approx(cell["accuracy_pct"] - row.paper_accuracy, abs=1e-4)
        assert row.delta_ci95 == pytest.approx(math.hypot(row.ci95, row.paper_ci95), abs=1e-4)
        assert row.intervals_overlap == (abs(row.delta) <= row.ci95 + row.paper_ci95)
    assert summary["intervals_overlap"].dtype == bool


def test_per_mode_rows_are_the_mode_summaries_and_claim_no_paper_numbers(report):
    out, _ = report
    per_mode = pd.read_csv(out / "per_mode.csv")
    assert len(per_mode) == 2 * len(PARTIAL)
    # Canonical mode order (mini-ImageNet before FC100) within each cell, whatever order the cell file used.
    assert list(per_mode["mode"][:2]) == ["miniimagenet", "fc100"]
    assert (per_mode["n_tasks"].to_numpy().reshape(-1, 2) == [30, 20]).all()
    assert not any(column.startswith("paper_acc") for column in per_mode.columns)
    assert per_mode["paper_note"].str.contains("no per-mode").all()


@pytest.mark.parametrize(
    ("ours", "paper", "overlap"),
    [
        ((1.0, 0.5), (2.0, 0.5), True),  # touching at 1.5
        ((1.0, 0.5), (2.25, 0.5), False),  # a 0.25 gap
        ((5.0, 3.0), (4.0, 0.25), True),  # one inside the other
        ((2.25, 0.5), (1.0, 0.5), False),  # the gap on the other side
    ],
)
def test_intervals_overlap(ours, paper, overlap):
    result = intervals_overlap(*(pd.Series([v]) for v in (*ours, *paper)))
    assert result.tolist() == [overlap]


def test_delta_and_overlap_against_the_paper(tmp_path):
    # Paper: 2Mode MMAML+KML 5-shot 77.02 ± 0.66, 5Mode ProtoNet 1-shot 49.31 ± 0.53.
    cells = [
        constant_cell(tmp_path, "2mode", "mmaml_kml", 5, 78.0),
        constant_cell(tmp_path, "5mode", "protonet", 1, 49.0),
    ]
    summary = summarize(read_cells(cells)).set_index("method")
    assert summary.at["mmaml_kml", "delta"] == pytest.approx(0.98)
    assert not summary.at["mmaml_kml", "intervals_overlap"]  # 78 lies above 77.02 + 0.66
    assert summary.at["protonet", "delta"] == pytest.approx(-0.31)
    assert summary.at["protonet", "intervals_overlap"]
    assert summary.at["protonet", "ci95"] == 0


def test_every_cell_of_the_paper_is_looked_up(tmp_path):
    paper = paper_numbers()
    assert len(paper) == 64 and set(paper) == {(s, m, k) for s, k, m in PAPER_ORDER}
    cells = [constant_cell(tmp_path, s, m, k, paper[(s, m, k)][0]) for s, m, k in reversed(list(paper))]
    summary = summarize(read_cells(cells))
    assert list(summary[["setting", "shots", "method"]].itertuples(index=False, name=None)) == PAPER_ORDER
    for row in summary.itertuples():
        assert (row.paper_accuracy, row.paper_ci95) == paper[(row.setting, row.method, row.shots)]
    assert (summary["delta"].abs() < 1e-9).all() and summary["intervals_overlap"].all()


def test_best_is_the_highest_printed_mean_and_ties_are_all_bold():
    means = pd.DataFrame(
        [
            [50.0, 60.0, 55.0],
            [60.0, 60.0, 55.0],
            [50.004, 50.001, 49.0],
            [np.nan, 40.0, 45.0],
            [np.nan, np.nan, np.nan],
        ],
        columns=["a", "b", "c"],
    )
    expected = [
        [False, True, False],  # a clear winner
        [True, True, False],  # an exact tie: both bold
        [True, True, False],  # both print as 50.00: both bold
        [False, False, True],  # a missing cell is never best
        [False, False, False],
    ]  # nothing run: nothing bold
    assert best_mask(means).to_numpy().tolist() == expected


def table_rows(text: str) -> list[list[str]]:
    """The tabular's rows (header first) as lists of fields."""
    return [line.removesuffix(r" \\").split(" & ") for line in text.splitlines() if " & " in line]


def test_tables_hold_every_label_the_note_and_dashes_for_missing_cells(report):
    out, _ = report
    methods, settings = list(METHOD_LABELS.values()), list(SETTING_LABELS.values())
    for name, family_methods in (("maml_family", methods[:4]), ("protonet_family", methods[4:])):
        header, *rows = table_rows((out / "tables" / f"{name}.tex").read_text())
        assert header[2:] == family_methods, name
        assert [row[0] for row in rows if row[0]] == settings, name
        assert [row[1] for row in rows] == ["1-shot", "5-shot"] * 4, name
    reproduction = (out / "tables" / "reproduction.tex").read_text()
    rows = [row for row in table_rows(reproduction) if row[0] != "Setting"]
    assert [row[2] for row in rows] == methods[:4] * 8 + methods[4:] * 8
    assert [row[0] for row in rows if row[0]] == settings * 2
    for name in ("maml_family", "protonet_family", "reproduction"):
        text = (out / "tables" / f"{name}.tex").read_text()
        assert escape_latex(NOTE) in text, name
        assert "& -- &" in text or "& --" in text, name  # the partial run leaves cells out
    assert escape_latex(NOTE).startswith(
        r"Smoke preset: 50\% of tasks \& \$x\_1\$ \{\#\textasciitilde{}\textasciicircum{}\textbackslash{}\}"
    )


def test_family_table_bolds_every_best_method_of_a_row(tmp_path):
    # 2Mode 1-shot: MAML 60, Multi-MAML and MMAML tied at 62, MMAML+KML not run.
    cells = [
        constant_cell(tmp_path, "2mode", method, 1, accuracy)
        for method, accuracy in (("maml", 60.0), ("multi_maml", 62.0), ("mmaml", 62.0))
    ]
    rows = table_rows(family_table(summarize(read_cells(cells)), "maml"))
    plain, bold = r"60.00 {\scriptsize $\pm$ 0.00}", r"\textbf{62.00 {\scriptsize $\pm$ 0.00}}"
    assert rows[3] == ["2Mode", "1-shot", plain, bold, bold, "--"]
    assert sum(field.startswith(r"\textbf") for row in rows for field in row) == 2


@pytest.fixture(scope="module")
def widest_report(tmp_path_factory):
    """Tables of all 64 cells at the widest numbers they hold (50.00 ± 69.30, over 10 seeds), all tied, so all
    bold, and of
    all 64 comparisons at the widest (-99.99 ± 99.99, the longest verdict)."""
    root = tmp_path_factory.mktemp("widest")
    accuracies = {"cub": np.repeat([0.0, 100.0], 10)}  # two batches of 10, at 0 and at 100
    cells = [root / f"{s}-{m}-{k}.csv" for s, k, m in PAPER_ORDER]
    for path, (s, k, m) in zip(cells, PAPER_ORDER, strict=True):
        write_cell(path, s, m, k, accuracies)
    # and the widest mark: every cell over 10 training seeds
    write_tables(summarize(read_cells(cells)).assign(n_seeds=10), root, note=NOTE)
    widest = paper_comparisons().assign(delta_pct=-99.99, ci95_pct=99.99, p_value=0.999, p_holm=0.999,
                                        n_tasks=5000, n_seeds=1, verdict=max(VERDICTS, key=len))
    (root / "tables" / "claims.tex").write_text(claims_table(widest[CLAIMS_COLUMNS], note=NOTE))
    return root


@pytest.mark.skipif(
    shutil.which("pdflatex") is None,
    reason="pdflatex not installed (apt-get install texlive-latex-base texlive-latex-recommended)",
)
@pytest.mark.parametrize("table", ["maml_family", "protonet_family", "reproduction", "claims"])
@pytest.mark.parametrize("run", ["partial", "widest"])
def test_tables_compile_with_booktabs_and_fit_the_page(request, run, table, tmp_path):
    out = (
        request.getfixturevalue("report")[0] if run == "partial" else request.getfixturevalue("widest_report")
    )
    document = tmp_path / "document.tex"
    document.write_text(
        "\\documentclass{article}\\usepackage{booktabs}\\begin{document}"
        f"\\input{{{(out / 'tables' / table).as_posix()}.tex}}\\end{{document}}\n"
    )
    result = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", document.name],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    log = (tmp_path / "document.log").read_text(errors="replace")
    assert result.returncode == 0, log[-3000:]
    assert (tmp_path / "document.pdf").stat().st_size > 0
    assert "Overfull \\hbox" not in log and "Float too large" not in log, log[-3000:]


def test_figure_is_written_as_pdf_and_png(report):
    out, _ = report
    pdf, png = out / "figures" / "reproduction.pdf", out / "figures" / "reproduction.png"
    assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 10_000
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


def test_cli_end_to_end_on_a_partial_run(tmp_path):
    cells = [random_cell(tmp_path, s, m, k, seed)[0] for seed, (s, k, m) in enumerate(PAPER_ORDER[:3])]
    out = tmp_path / "results"
    assert (
        main(["report", "accuracy", *map(str, cells), "--out-dir", str(out), "--note", "plumbing only"]) == 0
    )
    assert len(pd.read_csv(out / "summary.csv")) == 3
    for name in (
        "per_mode.csv",
        "tables/maml_family.tex",
        "tables/protonet_family.tex",
        "tables/reproduction.tex",
        "figures/reproduction.pdf",
        "figures/reproduction.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert "plumbing only" in (out / "tables" / "protonet_family.tex").read_text()


def _replace(column, value, row=-1):
    """An edit of one value, by default in the last row (the overall summary); row 1 is a task."""

    def edit(frame):
        frame[column] = frame[column].astype(object)
        frame.loc[frame.index[row], column] = value
        return frame

    return edit


@pytest.mark.parametrize(
    ("corrupt", "message"),
    [
        (lambda frame: frame.drop(columns="ci95_pct"), "missing columns ci95_pct"),
        (lambda frame: frame.drop(columns="ci95_batch_means_pct"),
         "older kml lacks columns: evaluate the cell again"),
        (_replace("ci95_stratified_pct", -0.5), "intervals >= 0 or empty"),
        (_replace("accuracy_pct", 120.0, row=1), "task rows need"),
        (_replace("task_id", 0, row=1), "a whole task_id given once per seed"),
        (_replace("task_id", 1.5, row=1), "a whole task_id given once per seed"),
        (_replace("kind", "summary"), "unknown kind"),
        (_replace("accuracy_pct", "high"), "accuracy_pct in"),
        (_replace("accuracy_pct", 120.0), "accuracy_pct in"),
        (_replace("method", "kml"), "exactly one"),
        (lambda frame: frame.assign(method="kml"), "not a cell of the paper"),
        (lambda frame: frame.assign(shots=3), "not a cell of the paper"),
        (lambda frame: pd.concat([frame, frame.tail(1)]), "exactly one 'overall' row"),
        (lambda frame: frame.replace("fc100", "cifar"), "unknown mode"),
    ],
)
def test_a_malformed_cell_is_an_error_naming_the_file(tmp_path, corrupt, message, capsys):
    path, _ = random_cell(tmp_path, "3mode", "mmaml", 1, seed=0)
    corrupt(pd.read_csv(path)).to_csv(path, index=False)
    with pytest.raises(KmlError, match=message) as error:
        read_cells([path])
    assert str(path) in str(error.value)
    assert main(["report", "accuracy", str(path), "--out-dir", str(tmp_path / "out")]) == 2
    assert str(path) in capsys.readouterr().err


def test_an_empty_file_or_a_repeated_cell_is_an_error_naming_the_files(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(KmlError, match="empty.csv: not a readable cell CSV"):
        read_cells([empty])
    first, _ = random_cell(tmp_path / "a", "2mode", "maml", 5, seed=1)
    second, _ = random_cell(tmp_path / "b", "2mode", "maml", 5, seed=2)
    with pytest.raises(KmlError, match="given more than once") as error:
        read_cells([first, second])
    assert str(first) in str(error.value) and str(second) in str(error.value)


def test_the_reports_and_the_plan_never_import_torch():
    """Reading CSVs must not need torch (a report environment may lack it; it costs seconds to import)."""
    modules = ["kml.report", "kml.report.step_size", "kml.report.transference_figures",
               "kml.report.ablations", "kml.plan", "kml.cli"]
    code = (f"import sys, {', '.join(modules)}; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", loaded


def test_a_cell_of_several_seeds_is_summarised_over_its_seeds(tmp_path):
    from kml.cell_csv import cell_frame, seeds_cell_frame
    from kml.config import RunConfig, TaskConfig

    config = RunConfig(method="mmaml", modes=("miniimagenet", "fc100"), setting="2mode_dagger",
                       task=TaskConfig(shots=1))
    rng = np.random.default_rng(3)
    modes = [config.modes[t % 2] for t in range(40)]
    frames = [cell_frame(config, range(40), modes, rng.integers(10, 60, 40) / 75, seed) for seed in (0, 1, 2)]
    path = tmp_path / "cell.csv"
    seeds_cell_frame(config, frames).to_csv(path, index=False)
    cells = read_cells([path])
    row = summarize(cells).iloc[0]
    over = cells[cells["kind"] == "overall_over_seeds"].iloc[0]
    per_seed = [frame[frame["kind"] == "overall"]["accuracy_pct"].item() for frame in frames]
    assert (row["n_seeds"], row["accuracy"], row["ci95"]) == (3, over["accuracy_pct"],
                                                              over["ci95_batch_means_pct"])
    assert row["seed_sd"] == pytest.approx(np.std(per_seed, ddof=1), abs=1e-4)
    assert "seed-inclusive" in row["ci95_definition"]
    assert per_mode(cells)["n_seeds"].tolist() == [3, 3]
    write_tables(summarize(cells), tmp_path)
    for table in ("maml_family", "reproduction"):
        text = (tmp_path / "tables" / f"{table}.tex").read_text()
        assert text.count(r"\textsuperscript{3}") == 1 and "mean over $n$ training seeds" in text
