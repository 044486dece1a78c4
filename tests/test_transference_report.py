"""The transference report's rules (kml/report/transference*.py, kml/report/step_size.py) on hand-made rows of
`kml transference` CSVs: fractions, intervals, rounding, the single target, the claims and the step-size
sweep."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from kml import KmlError
from kml import stats as stats_module
from kml.cli import main
from kml.report.step_size import summarize_sweep
from kml.report.transference import (
    SUMMARY_COLUMNS,
    largest_remainder,
    read_transference,
    summarize_transference,
    transference_table,
)
from kml.report.transference_claims import CLAIMS_COLUMNS, claims_table, transference_claims
from kml.transference import CSV_COLUMNS


def compiles(tmp_path, table: str) -> None:
    """A table compiles with booktabs in an article without an overfull line."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "table.tex").write_text(table)
    (tmp_path / "document.tex").write_text(
        "\\documentclass{article}\\usepackage{booktabs}\\begin{document}\\input{table.tex}\\end{document}\n")
    result = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "document.tex"],
                            cwd=tmp_path, capture_output=True, text=True, check=False)
    log = (tmp_path / "document.log").read_text(errors="replace")
    assert result.returncode == 0, log[-3000:]
    assert "Overfull \\hbox" not in log, log[-3000:]


def snapshot_rows(ratios: dict[int, list[float]], self_ratios: dict[int, float] | None = None,
                  **constants) -> pd.DataFrame:
    """The rows `kml transference` writes for one snapshot: ratios[target] = each source's ratio; a self row
    per target of self_ratios (0.9 if not given). `constants` replace the defaults (protonet, 1-shot,
    iteration 100, α 0.01, band 0.01)."""
    self_ratios = self_ratios or dict.fromkeys(ratios, 0.9)
    rows = [{"target_task": t, "source_task": s, "self": False, "ratio": r, "source_classes": f"s{s}"}
            for t, values in ratios.items() for s, r in enumerate(values)]
    rows += [{"target_task": t, "source_task": t, "self": True, "ratio": r, "source_classes": f"t{t}"}
             for t, r in self_ratios.items()]
    frame = pd.DataFrame(rows)
    frame = frame.assign(**{
        "setting": "2mode_dagger", "method": "protonet", "shots": 1, "iteration": 100, "seed": 0,
        "lookahead": "sgd", "step_size": 0.01, "lookahead_params": "all", "neutral_band": 0.01,
        "source_mode": "miniimagenet", "source_split": "train", "target_mode": "fc100",
        "target_classes": frame["target_task"].map("t{}".format), "loss_before": 1.0,
        "loss_after": frame["ratio"], "loss_after_momentum_only": np.nan, "ratio_to_momentum_only": np.nan,
        **constants})
    return frame[list(CSV_COLUMNS)]


def _hand_rows():
    """Two targets, four sources each (band 0.01), and a self row per target."""
    return snapshot_rows({0: [0.90, 0.995, 1.00, 1.20], 1: [0.50, 0.80, 0.98, 1.02]}, {0: 0.7, 1: 0.9})


def test_fractions_cis_median_and_self_on_hand_made_ratios():
    [row] = summarize_transference(_hand_rows()).to_dict("records")
    # Per target: positive 1/4 and 3/4 (0.98 is outside the band), neutral 2/4 and 0, negative 1/4 and 1/4.
    ci = round(1.96 * 25 / np.sqrt(2), 1)  # population std of (25, 75) is 25
    assert (row["positive_pct"], row["neutral_pct"], row["negative_pct"]) == (50, 25, 25)
    assert row["positive_ci95_pct"] == ci and row["neutral_ci95_pct"] == ci and row["negative_ci95_pct"] == 0
    # The single-target view: target task 0 alone.
    assert row["single_target"] == 0
    assert (row["single_target_positive_pct"], row["single_target_neutral_pct"],
            row["single_target_negative_pct"]) == (25, 50, 25)
    assert row["median_ratio"] == pytest.approx(np.median([0.9, 0.995, 1.0, 1.2, 0.5, 0.8, 0.98, 1.02]))
    assert row["median_abs_change"] == pytest.approx(np.median([0.1, 0.005, 0, 0.2, 0.5, 0.2, 0.02, 0.02]))
    assert row["self_ratio"] == pytest.approx(0.8)
    assert row["self_ratio_ci95"] == pytest.approx(1.96 * 0.1 / np.sqrt(2))
    assert (row["n_sources"], row["n_targets"]) == (4, 2)
    assert ((row["lookahead"], row["step_size"]) == ("sgd", 0.01)
            and np.isnan(row["positive_vs_momentum_only_pct"]))
    # The paper's teaser numbers for ProtoNet, with the caveat that it states neither shots nor stage.
    assert (row["paper_positive_pct"], row["paper_neutral_pct"], row["paper_negative_pct"]) == (28, 9, 63)
    assert "not stated" in row["paper_note"]
    assert list(summarize_transference(_hand_rows()).columns) == SUMMARY_COLUMNS


@pytest.mark.parametrize(("values", "rounded"), [
    ([100 / 3] * 3, [34, 33, 33]),  # a tie goes to the first
    ([12.5, 62.5, 25.0], [13, 62, 25]),
    ([0.6, 0.3, 99.1], [1, 0, 99]),
    ([41.0, 4.0, 55.0], [41, 4, 55]),
])
def test_largest_remainder_rounding_adds_up_to_100(values, rounded):
    assert largest_remainder(values) == rounded and sum(rounded) == 100


def test_summary_percentages_add_up_to_100_and_the_adam_option_gives_them_against_the_momentum():
    # Three targets of three sources each: every mean is a third of something, so plain rounding loses one.
    rows = snapshot_rows({0: [0.9, 1.0, 1.1], 1: [0.9, 0.9, 1.1], 2: [0.9, 1.1, 1.1]}, lookahead="adam",
                         step_size=1e-3)
    rows = rows.assign(loss_after_momentum_only=0.95, ratio_to_momentum_only=rows["ratio"] / 0.95)
    [row] = summarize_transference(rows).to_dict("records")
    # Means 44.4 / 11.1 / 44.4: rounded each, they would add up to 99.
    assert (row["positive_pct"], row["neutral_pct"], row["negative_pct"]) == (45, 11, 44)
    # Against the momentum-only step, 0.95: only 0.9 is below it.
    assert (row["positive_vs_momentum_only_pct"], row["neutral_vs_momentum_only_pct"],
            row["negative_vs_momentum_only_pct"]) == (44, 0, 56)


def test_a_single_target_has_no_confidence_interval_and_an_unreported_method_no_paper_numbers():
    rows = _hand_rows()
    rows = rows[rows["target_task"] == 0].assign(method="maml")
    [row] = summarize_transference(rows).to_dict("records")
    assert row["positive_pct"] == pytest.approx(25) and np.isnan(row["positive_ci95_pct"])
    assert np.isnan(row["paper_positive_pct"]) and "no transference numbers" in row["paper_note"]


@pytest.mark.parametrize(("edit", "message"), [
    (lambda rows: rows.drop(columns="ratio"), "missing columns ratio"),
    (lambda rows: rows.assign(iteration=[100, 200] * 5), "exactly one (method, shots, iteration, seed)"),
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
    # Every method of a family takes the family's step size; the families may differ.
    _hand_rows().assign(method="mprotonet", step_size=0.02).to_csv(second, index=False)
    with pytest.raises(KmlError, match=r"step_size: the CSVs differ \(ProtoNet family\)"):
        read_transference([first, second])
    _hand_rows().assign(method="maml", step_size=0.02).to_csv(second, index=False)
    assert len(read_transference([first, second])) == 2 * len(_hand_rows())
    # The Adam option records the snapshot's learning rate, which the schedule halves.
    for path, (iteration, lr) in zip((first, second), ((100, 1e-3), (20000, 2.5e-4))):
        _hand_rows().assign(lookahead="adam", iteration=iteration, step_size=lr).to_csv(path, index=False)
    assert len(read_transference([first, second])) == 2 * len(_hand_rows())


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_table_compiles_with_booktabs_and_fits_the_page(tmp_path):
    # The widest rows: the longest method name, five-digit iterations, CIs and the paper's numbers.
    rows = pd.concat([_hand_rows().assign(method=m, iteration=20000) for m in ("mprotonet_kml", "mmaml")])
    compiles(tmp_path, transference_table(summarize_transference(rows), "Smoke & 50% {note}"))




# ---- claims ------------------------------------------------------------------------------------------------

# 75 75 75 50 % positive
MORE_POSITIVE = {t: [0.9, 0.9, 0.9, 1.1] for t in range(3)} | {3: [0.9, 0.9, 1.1, 1.1]}
LESS_POSITIVE = {t: [0.9, 1.1, 1.1, 1.1] for t in range(4)}  # 25 % positive, 75 % negative on every target


def _claim_rows(kml: dict, baseline: dict, pairs=(("mprotonet_kml", "protonet"),)) -> pd.DataFrame:
    return pd.concat([snapshot_rows(ratios, method=method)
                      for pair in pairs for method, ratios in zip(pair, (kml, baseline))], ignore_index=True)


def test_claims_pair_the_per_target_fractions_and_read_them_against_the_paper():
    pairs = (("mprotonet_kml", "protonet"), ("mmaml_kml", "maml"))
    claims = transference_claims(_claim_rows(MORE_POSITIVE, LESS_POSITIVE, pairs))
    assert list(claims.columns) == CLAIMS_COLUMNS and len(claims) == 4
    expected = stats.ttest_rel([75, 75, 75, 50], [25, 25, 25, 25])
    low, high = expected.confidence_interval(0.95)
    positive = claims[(claims["method"] == "mprotonet_kml") & (claims["outcome"] == "positive")].iloc[0]
    assert (positive["delta_pct"] == 43.75
            and positive["ci95_pct"] == pytest.approx((high - low) / 2, abs=0.01))
    assert positive["p_value"] == pytest.approx(expected.pvalue) and positive["n_targets"] == 4
    # Holm over the file's four comparisons, all with the same p-value.
    assert claims["p_holm"].tolist() == pytest.approx([4 * expected.pvalue] * 4)
    # The paper: MProtoNet+KML 41 % positive, 55 % negative; ProtoNet 28 % and 63 %.
    assert positive["paper_delta_pct"] == 13 and positive["verdict"] == "reproduced"
    negative = claims[(claims["method"] == "mprotonet_kml") & (claims["outcome"] == "negative")].iloc[0]
    assert ((negative["delta_pct"], negative["paper_delta_pct"], negative["verdict"])
            == (-43.75, -8, "reproduced"))
    # No MMAML-family numbers in the paper: nothing to reproduce.
    assert (claims.loc[claims["method"] == "mmaml_kml", "verdict"] == "no paper direction").all()
    assert claims["paper_delta_pct"].isna().sum() == 2


def test_a_claim_measured_the_other_way_is_contradicted():
    claims = transference_claims(_claim_rows(LESS_POSITIVE, MORE_POSITIVE))
    assert claims.set_index("outcome")["verdict"].to_dict() == {"positive": "contradicted",
                                                                 "negative": "contradicted"}


def test_equal_differences_in_sources_are_equal_numbers():
    # One more positive source of three on each target: 100/3 points each, whether from 1/3 to 2/3 or from
    # 2/3 to 3/3 (as differences of rounded percentages these would differ in the last bit).
    kml = {0: [0.9, 0.9, 1.1], 1: [0.9, 0.9, 0.9], 2: [0.9, 0.9, 1.1]}
    baseline = {0: [0.9, 1.1, 1.1], 1: [0.9, 0.9, 1.1], 2: [0.9, 1.1, 1.1]}
    positive = transference_claims(_claim_rows(kml, baseline)).set_index("outcome").loc["positive"]
    assert (positive["delta_pct"] == round(100 / 3, 2) and positive["ci95_pct"] == 0
            and positive["p_value"] == 0)


def test_claims_refuse_to_pair_different_target_tasks():
    rows = _claim_rows(MORE_POSITIVE, LESS_POSITIVE)
    rows.loc[rows["method"] == "protonet", "target_classes"] = "other"
    with pytest.raises(KmlError, match="MProtoNet\\+KML vs ProtoNet, 1-shot iteration 100: "
                                       "the two methods' target tasks differ"):
        transference_claims(rows)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_claims_table_compiles_and_fits_the_page(tmp_path):
    pairs = (("mprotonet_kml", "protonet"), ("mprotonet_kml", "mprotonet"), ("mmaml_kml", "maml"),
             ("mmaml_kml", "mmaml"))
    rows = _claim_rows(MORE_POSITIVE, LESS_POSITIVE, pairs).assign(iteration=20000)
    compiles(tmp_path / "full",
             claims_table(transference_claims(rows), summarize_transference(rows), "Smoke & 50%"))
    lonely = snapshot_rows(MORE_POSITIVE)
    compiles(tmp_path / "none", claims_table(transference_claims(lonely), summarize_transference(lonely)))


# ---- the step-size sweep -----------------------------------------------------------------------------------

SWEEP_GRID = (1e-7, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
SLOPES = np.linspace(1, 10, 10)


def _sweep_rows(method: str, change, slopes=SLOPES) -> pd.DataFrame:
    """A sweep's rows: two targets with a source per slope s, LR − 1 = change(α, s) at every α of
    SWEEP_GRID."""
    return pd.concat([snapshot_rows({t: list(1 + change(alpha, slopes)) for t in range(2)}, method=method,
                                    step_size=alpha, iteration=300) for alpha in SWEEP_GRID],
                     ignore_index=True)


def test_the_sweep_finds_the_first_order_regime_and_recommends_each_familys_largest_first_order_step():
    linear = _sweep_rows("maml", lambda alpha, s: alpha * s)
    curved = _sweep_rows("protonet", lambda alpha, s: alpha * s + (alpha * s) ** 2)
    sweep = summarize_sweep(pd.concat([linear, curved], ignore_index=True)).set_index(["method", "step_size"])
    # Below float32 rounding at 1e-7 (|LR − 1| <= 1e-6): no slope to measure there, so the reference is 1e-4.
    assert sweep.loc[("maml", 1e-7), "rounding_pct"] == 100 and (sweep["reference_step_size"] == 1e-4).all()
    np.testing.assert_allclose(sweep.loc["maml", "slope_ratio"].iloc[1:], 1.0, rtol=1e-6)
    assert sweep.loc["maml", "first_order"].tolist() == [False, True, True, True, True, True]
    # The curved one: slope ratio (1 + α·s) / (1 + 1e-4·s), within 10 % of 1 up to α = 1e-2.
    slopes = np.linspace(1, 10, 10)
    expected = [np.median((1 + alpha * slopes) / (1 + 1e-4 * slopes)) for alpha in SWEEP_GRID[1:]]
    np.testing.assert_allclose(sweep.loc["protonet", "slope_ratio"].iloc[1:], expected, rtol=1e-5)
    assert sweep.loc["protonet", "first_order"].tolist() == [False, True, True, True, False, False]
    recommended = sweep[sweep["recommended"]].reset_index()
    assert set(zip(recommended["family"], recommended["step_size"])) == {("maml", 1.0), ("protonet", 1e-2)}
    # α = 1e-4: LR − 1 from 1e-4 to 1e-3, all within the neutral band; α = 1e-2: 0.01 to 0.1, all negative.
    assert (sweep.loc[("maml", 1e-4), "neutral_pct"] == 100
            and sweep.loc[("maml", 1e-2), "negative_pct"] == 100)


def test_a_curvature_that_changes_outcomes_ends_the_first_order_regime():
    # LR − 1 = α·s + 5·(α·s)² for slopes ±1.5 ... ±40: the curvature pulls the large negative slopes back
    # across the neutral band, while the median slope ratio stays at 1 (the slopes are symmetric).
    magnitudes = np.array([1.5, 2, 3, 4, 5, 20, 25, 30, 35, 40])
    slopes = np.concatenate([-magnitudes, magnitudes])
    sweep = summarize_sweep(_sweep_rows("protonet", lambda alpha, s: alpha * s + 5 * (alpha * s) ** 2,
                                        slopes))
    at = sweep.set_index("step_size")
    assert (at["slope_ratio"] - 1).abs().max() < 0.01
    # α = 1e-2: s = −20 lands on LR = 1 (neutral), s = −25 ... −40 above it (negative): 5 of 20 changed.
    assert at.loc[1e-3, "first_order_outcome_pct"] == 100 and at.loc[1e-3, "first_order"]
    assert at.loc[1e-2, "first_order_outcome_pct"] == 75 and not at.loc[1e-2, "first_order"]
    assert at["recommended"].tolist() == [alpha == 1e-3 for alpha in SWEEP_GRID]


def test_without_a_common_first_order_step_the_smallest_measurable_one_is_recommended():
    # MAML: its slope jumps elevenfold from α = 1e-2 on (as where an activation changes sign inside its inner
    # loop); MMAML: 200 times flatter, so lost in rounding below α = 1e-2. No α is first order for both.
    jumping = _sweep_rows("maml", lambda alpha, s: alpha * s * (1 + 10 * (alpha >= 1e-2)))
    flat = _sweep_rows("mmaml", lambda alpha, s: 0.005 * alpha * s)
    sweep = summarize_sweep(pd.concat([jumping, flat], ignore_index=True)).set_index(["method", "step_size"])
    assert sweep.loc["maml", "first_order"].tolist() == [False, True, True, False, False, False]
    assert sweep.loc["mmaml", "first_order"].tolist() == [False, False, False, True, True, True]
    assert sweep.loc["mmaml", "rounding_pct"].tolist()[:3] == [100, 100, 10]
    assert sweep.loc[sweep["recommended"]].index.get_level_values("step_size").unique().tolist() == [1e-2]


def test_the_step_size_report_writes_its_csv_and_figure_and_checks_its_options(tmp_path, capsys):
    csv = tmp_path / "iter300.csv"
    _sweep_rows("mprotonet_kml", lambda alpha, s: alpha * s).to_csv(csv, index=False)
    assert main(["report", "step-size", str(csv), "--out-dir", str(tmp_path / "results"),
                 "--step-size", "protonet=0.01"]) == 0
    assert (tmp_path / "results" / "figures" / "transference_step_size.png").stat().st_size > 10_000
    assert len(pd.read_csv(tmp_path / "results" / "transference" / "step_size_sweep.csv")) == len(SWEEP_GRID)
    with pytest.raises(SystemExit):
        main(["report", "step-size", str(csv), "--out-dir", str(tmp_path), "--step-size", "protonet:0.01"])
    assert "give FAMILY=ALPHA" in capsys.readouterr().err
    # The analysis's report refuses a sweep's CSV, which holds several step sizes.
    assert main(["report", "transference", str(csv), "--out-dir", str(tmp_path)]) == 2
    assert "holds several step sizes" in capsys.readouterr().err


# ---- several training seeds --------------------------------------------------------------------------------

def test_the_seeds_of_a_snapshot_are_one_row_with_the_seed_inclusive_interval():
    first = {0: [0.90, 0.995, 1.00, 1.20], 1: [0.50, 0.80, 0.98, 1.02], 2: [0.9, 0.9, 1.1, 1.1]}
    second = {0: [0.90, 0.90, 1.00, 1.20], 1: [0.50, 1.20, 1.30, 1.02], 2: [0.9, 0.9, 0.9, 1.1]}
    rows = pd.concat([snapshot_rows(first), snapshot_rows(second, seed=3)], ignore_index=True)
    [row] = summarize_transference(rows).to_dict("records")
    # positive per target: seed 0 (25, 75, 50), seed 3 (50, 25, 75)
    positive = np.array([[25.0, 75.0, 50.0], [50.0, 25.0, 75.0]])
    assert row["n_seeds"] == 2 and row["n_targets"] == 3
    assert row["positive_ci95_pct"] == round(stats_module.seeds_by_tasks(positive).ci95, 1)
    assert row["single_target_positive_pct"] == round(positive[:, 0].mean())
    shares = [row[f"{o}_pct"] for o in ("positive", "neutral", "negative")]
    assert shares[0] == 50 and sum(shares) == 100  # mean over seeds and targets: 300/6


def test_claims_of_several_seeds_compare_seed_by_seed():
    rows = pd.concat([_claim_rows(MORE_POSITIVE, LESS_POSITIVE),
                      _claim_rows(LESS_POSITIVE, LESS_POSITIVE).assign(seed=1)], ignore_index=True)
    positive = transference_claims(rows).set_index("outcome").loc["positive"]
    differences = np.array([[50.0, 50.0, 50.0, 25.0], [0.0, 0.0, 0.0, 0.0]])
    expected = stats_module.seeds_by_tasks(differences)
    assert positive["n_seeds"] == 2 and positive["n_targets"] == 4
    assert positive["delta_pct"] == round(expected.mean, 2)
    assert positive["ci95_pct"] == pytest.approx(expected.ci95, abs=0.01)


def test_histograms_count_sources_per_target_and_seed():
    from matplotlib.figure import Figure

    from kml.report.transference_figures import _histogram

    first = {0: [0.90, 0.995, 1.00, 1.20], 1: [0.50, 0.80, 0.98, 1.02]}
    rows = pd.concat([snapshot_rows(first), snapshot_rows(first, seed=3)], ignore_index=True)
    ax = Figure().subplots()
    _histogram(ax, rows[~rows["self"]], (0.4, 1.3), "C0", "", filled=True)
    assert sum(patch.get_height() for patch in ax.patches) == pytest.approx(4)  # 4 sources per target
