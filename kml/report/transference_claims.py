"""The paper's transference claim, tested: does kernel modulation give more positive and less negative
transfer than its baselines? From the analysis's rows (kml/report/transference.py):

    DIR/transference/claims.csv      per (shots, snapshot), KML method and baseline, and outcome (positive,
                                     negative): the difference in the share of sources, KML − baseline, paired
                                     over the shared target tasks, with its 95% interval, p-values and verdict
    DIR/tables/transference_claims.tex   the same as a booktabs table

Each target task gives one paired difference (its fraction of sources with the outcome under the KML method
minus under the baseline, counted in whole sources; both see the same sources and targets, which is checked);
kml.stats.paired_difference gives the mean, its t interval and the paired t-test's p-value; with several
training seeds, one difference per seed both methods have and target, and the seed-inclusive test. The
p-values are Holm-adjusted over every row of the file (kml.stats.holm), since the same claim is tested at
every snapshot, shot count and baseline, and kml.stats.verdict reads the adjusted one against the paper's
difference: the paper's teaser gives MProtoNet+KML 13 points more positive transfer than ProtoNet and 15
more than MProtoNet (8 and 9 fewer negative); it gives no MMAML-family numbers, so those rows have no paper
direction.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kml import KmlError
from kml.layout import report_path
from kml.method_table import METHOD_LABELS
from kml.report.claims import shared_seeds
from kml.report.paper import transference_reference
from kml.report.tables import caption_with_note, table_float
from kml.report.transference import analysis_in_words, latex_words, target_counts
from kml.stats import NO_PAPER_DIRECTION, NOT_SIGNIFICANT, holm, paired_difference, verdict

# Each KML method against its baselines, as the paper compares them.
CLAIM_PAIRS = (("mprotonet_kml", "protonet"), ("mprotonet_kml", "mprotonet"), ("mmaml_kml", "maml"),
               ("mmaml_kml", "mmaml"))
CLAIM_OUTCOMES = ("positive", "negative")
CLAIMS_COLUMNS = ["setting", "shots", "iteration", "method", "baseline", "outcome", "delta_pct", "ci95_pct",
                  "p_value", "p_holm", "n_targets", "n_seeds", "paper_delta_pct", "verdict"]
VERDICT_SHORT = {"reproduced": "repr.", "contradicted": "contra.", NOT_SIGNIFICANT: "n.s.",
                 NO_PAPER_DIRECTION: "--"}
DECIMALS = 2  # of the differences and intervals in claims.csv (percentage points)
SET_KEYS = {"target": ["target_task", "target_classes"], "source": ["source_task", "source_classes"]}


def _paper_delta(method: str, baseline: str, outcome: str) -> float:
    paper = transference_reference().set_index("model")[f"{outcome}_pct"]
    return float(paper[method] - paper[baseline]) if {method, baseline} <= set(paper.index) else float("nan")


def _same_tasks(mine: pd.DataFrame, theirs: pd.DataFrame, what: str) -> None:
    """The two snapshots' cross rows must hold the same source and target tasks, or a pairing means
    nothing."""
    for kind, keys in SET_KEYS.items():
        if not mine[keys].drop_duplicates().reset_index(drop=True).equals(
                theirs[keys].drop_duplicates().reset_index(drop=True)):
            raise KmlError(f"{what}: the two methods' {kind} tasks differ; analyse every method with the "
                           "same transference section (seed, modes, sources, targets)")


def transference_claims(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (shots, iteration, KML method, baseline, outcome) analysed for both; columns
    CLAIMS_COLUMNS."""
    cross = rows[~rows["self"]]
    records = []
    for method, baseline in CLAIM_PAIRS:
        for (shots, iteration), snapshot in cross.groupby(["shots", "iteration"], sort=True):
            mine, theirs = (snapshot[snapshot["method"] == m].sort_values(["target_task", "source_task"])
                            for m in (method, baseline))
            if mine.empty or theirs.empty:
                continue
            what = f"{METHOD_LABELS[method]} vs {METHOD_LABELS[baseline]}, {shots}-shot iteration {iteration}"
            _same_tasks(mine, theirs, what)
            band = mine["neutral_band"].iloc[0]
            # Per training seed both have: each target's outcome counts.
            counts = [(target_counts(mine[mine["seed"] == seed], band),
                       target_counts(theirs[theirs["seed"] == seed], band))
                      for seed in shared_seeds(mine, theirs, what)]
            for outcome in CLAIM_OUTCOMES:
                # Each target's difference in whole sources, then in %: equal differences are equal numbers
                # (as differences of two percentages, rounding would make them differ in the last bit).
                # Several seeds: seeds × targets, compared with the seed-inclusive test.
                per_target = np.stack([100 * (ours[outcome] - base[outcome]) / ours.sum(axis=1)
                                       for ours, base in counts])
                difference = paired_difference(per_target, np.zeros_like(per_target))
                records.append({"setting": mine["setting"].iloc[0], "shots": shots, "iteration": iteration,
                                "method": method, "baseline": baseline, "outcome": outcome,
                                "delta_pct": round(difference.mean, DECIMALS),
                                "ci95_pct": round(difference.ci95, DECIMALS), "p_value": difference.p_value,
                                "n_targets": difference.n, "n_seeds": difference.n_seeds,
                                "paper_delta_pct": _paper_delta(method, baseline, outcome)})
    claims = pd.DataFrame(records, columns=[c for c in CLAIMS_COLUMNS if c not in ("p_holm", "verdict")])
    claims["p_holm"] = holm(claims["p_value"]) if len(claims) else []
    claims["verdict"] = [verdict(d, p, paper) for d, p, paper in
                         zip(claims["delta_pct"], claims["p_holm"], claims["paper_delta_pct"])]
    return claims[CLAIMS_COLUMNS]


# ---- table -------------------------------------------------------------------------------------------------

def _delta(value: float, ci: float) -> str:
    if np.isnan(ci):
        return f"{value:+.1f}"
    return rf"{value:+.1f} {{\scriptsize $\pm$ {ci:.1f}}}"


def _p(value: float) -> str:
    return "--" if np.isnan(value) else ("$<$0.001" if value < 0.001 else f"{value:.3f}")


def _paper_words(method: str, baseline: str) -> str:
    deltas = [_paper_delta(method, baseline, outcome) for outcome in CLAIM_OUTCOMES]
    if any(np.isnan(deltas)):
        return "no paper numbers"
    return "paper " + ", ".join(f"{d:+.0f} {outcome}" for d, outcome in zip(deltas, CLAIM_OUTCOMES))


def _table_rows(claims: pd.DataFrame, columns: int) -> list[str]:
    """Per (KML method, baseline) a heading row, then one row per (shots, snapshot) with both outcomes."""
    index = ["method", "baseline", "shots", "iteration"]
    wide = claims.set_index([*index, "outcome"]).unstack("outcome")
    body, previous = [], None
    for key in claims[index].drop_duplicates().itertuples(index=False, name=None):
        row = wide.loc[key]
        pair = key[:2]
        if pair != previous:
            if previous is not None:
                body.append(r"\midrule")
            heading = f"{METHOD_LABELS[pair[0]]} vs {METHOD_LABELS[pair[1]]} ({_paper_words(*pair)})"
            body.append(rf"\multicolumn{{{columns}}}{{l}}{{\textit{{{latex_words(heading)}}}}} \\")
        cells = [str(key[2]), str(key[3])]
        for outcome in CLAIM_OUTCOMES:
            cells += [_delta(row[("delta_pct", outcome)], row[("ci95_pct", outcome)]),
                      _p(row[("p_holm", outcome)]), VERDICT_SHORT[row[("verdict", outcome)]]]
        body.append(" & ".join(cells) + r" \\")
        previous = pair
    return body


def _seeds_words(claims: pd.DataFrame) -> str:
    """The caption's sentence on models trained with several seeds, where some were compared."""
    if not len(claims) or not (claims["n_seeds"] > 1).any():
        return ""
    return (r"Where both models were trained with several seeds (n\_seeds in claims.csv), one difference per "
            r"seed and target, with the seed-inclusive interval and test. ")


def claims_table(claims: pd.DataFrame, summary: pd.DataFrame, note: str | None = None) -> str:
    """The claims as a booktabs table; see _table_rows."""
    columns = "rrrrlrrl"
    body = _table_rows(claims, len(columns)) if len(claims) else [
        rf"\multicolumn{{{len(columns)}}}{{c}}{{no KML method was analysed beside one of its baselines}} \\"]
    n_targets = int(claims["n_targets"].max()) if len(claims) else 0
    caption = caption_with_note(
        r"Transference claims: KML method minus baseline in the share of source tasks (percentage points) "
        rf"with positive and with negative transfer, paired over the {n_targets} shared target tasks (mean "
        r"$\pm$ 95\% t interval); p: paired t-test, Holm-adjusted over every row. Headings: the difference "
        r"in the paper's teaser figure (one target, shots and training stage not stated). Verdict: repr.\ "
        r"(significant, the paper's direction), contra.\ (significant, the opposite direction), n.s.\ (not "
        r"significant), -- (no paper number). " + _seeds_words(claims)
        + latex_words(analysis_in_words(summary)) + ".",
        note,
    )
    header = ["$K$", "Iter.", r"$\Delta$ positive", "p", "Verdict", r"$\Delta$ negative", "p", "Verdict"]
    return table_float("transference_claims", caption, columns, header, body)


def write_transference_claims(rows: pd.DataFrame, summary: pd.DataFrame, out_dir: Path,
                              note: str | None = None) -> list[Path]:
    """out_dir/transference/claims.csv and out_dir/tables/transference_claims.tex."""
    claims = transference_claims(rows)
    csv_path = report_path(out_dir, "transference", "claims")
    table_path = report_path(out_dir, "transference", "claims_table")
    claims.to_csv(csv_path, index=False)
    table_path.write_text(claims_table(claims, summary, note))
    return [csv_path, table_path]
