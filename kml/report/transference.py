"""The transference summary and table, from the per-snapshot CSVs of `kml transference` (kml/transference.py,
CSV_COLUMNS); the figures (transference_figures.py) and the claims (transference_claims.py) build on them.
`kml report transference CSV... --out-dir DIR` (kml.report.report_transference) writes

    DIR/transference/summary.csv      per method, shots and snapshot: positive / neutral / negative fractions
                                      (mean and 95% CI over targets), the same on the single target, median
                                      LR and |LR − 1|, self LR, and the paper's fractions where it reports
                                      them
    DIR/tables/transference.tex       the fractions as a booktabs table

Outcome of a (source, target) pair: neutral when |LR − 1| < neutral_band (read from the CSVs, i.e.
transference.neutral_band), else positive (LR < 1) or negative (LR > 1). Fractions are taken per target
over its sources, then averaged over targets, with kml.stats.pooled_ci95 over targets (undefined with a
single target). Models trained with several seeds (`train.seeds`) are one row: fractions per seed and
target, averaged over both, the interval over seeds × targets (kml.stats.seeds_by_tasks). Self rows (a
lookahead on the target itself) are reported apart, never counted as sources.

The summary's percentages are whole numbers, rounded by the largest-remainder rule so that each row's
positive, neutral and negative add up to 100 exactly (as the paper's pie charts do); its intervals have one
decimal. The claims file keeps the unrounded differences.

The paper's figure shows one target task. `SINGLE_TARGET` (target task 0, the first task of the fixed
target set, which depends only on transference.seed) stands in for it, chosen before any result is seen;
the summary gives its fractions beside the mean over all targets.

The paper reports one set of fractions (project page teaser: ProtoNet, MProtoNet, MProtoNet+KML, 300
mini-ImageNet sources, one FC100 target) without saying the shots or the training stage, so its numbers
stand beside every row of those methods and `paper_note` says so.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from kml import KmlError
from kml.layout import report_path
from kml.method_table import FAMILY_LABELS, METHOD_LABELS, METHOD_NAMES, method_spec
from kml.report.csvfiles import read_checked_csv
from kml.report.paper import transference_reference
from kml.report.tables import caption_with_note, escape_latex, table_float
from kml.stats import pooled_ci95, seeds_by_tasks
from kml.transference_csv import COLUMNS as CSV_COLUMNS

SNAPSHOT = ["method", "shots", "iteration"]  # a snapshot of every training seed: one summary row
ANALYSED = [*SNAPSHOT, "seed"]  # one CSV per seed's snapshot: its identity
# Per-file constants carried into the summary; one report describes one analysis, so they agree across files
# (step_size within each family, where every method of a family takes its family's α; the Adam option's
# learning rate follows the training schedule instead).
DESCRIPTION = ["setting", "lookahead", "step_size", "lookahead_params", "neutral_band", "source_mode",
               "target_mode"]
OUTCOMES = ("positive", "neutral", "negative")
SINGLE_TARGET = 0  # the target task of the paper's single-target view: the first of the fixed target set
SUMMARY_COLUMNS = [
    "setting", *SNAPSHOT, *DESCRIPTION[1:], "n_sources", "n_targets", "n_seeds",
    *(f"{o}{suffix}" for o in OUTCOMES for suffix in ("_pct", "_ci95_pct")),
    "single_target", *(f"single_target_{o}_pct" for o in OUTCOMES),
    "median_ratio", "median_abs_change", "self_ratio", "self_ratio_ci95",
    *(f"{o}_vs_momentum_only_pct" for o in OUTCOMES),
    *(f"paper_{o}_pct" for o in OUTCOMES), "paper_note",
]
MODE_LABELS = {"omniglot": "Omniglot", "miniimagenet": "mini-ImageNet", "fc100": "FC100", "cub": "CUB",
               "aircraft": "Aircraft"}
PARAMS_LABELS = {"all": "base and modulation networks", "base": "base network only"}


# ---- reading -----------------------------------------------------------------------------------------------

def read_ratio_csvs(paths: Sequence[Path], kind: str, one_step_size: bool) -> pd.DataFrame:
    """All rows of `kml transference` CSVs (`kind` names them in errors), checked file by file.

    Each file holds one (method, shots, iteration); `one_step_size`: and one lookahead (not the sweep's grid).
    A KmlError names the bad file.
    """
    frames = []
    for path in map(Path, paths):
        frame = read_checked_csv(path, CSV_COLUMNS, kind,
                                 fix="written by an older kml: analyse again (snakemake --forcerun "
                                     "transference transference_sweep)")
        if frame.empty or frame[ANALYSED].drop_duplicates().shape[0] != 1:
            raise KmlError(f"{path}: a {kind} holds the rows of exactly one (method, shots, iteration, seed)")
        if one_step_size and frame["step_size"].nunique() != 1:
            raise KmlError(f"{path}: holds several step sizes, as the step-size sweep writes; give the "
                           "analysis's CSVs (results/transference/{method}/{shots}shot/iter{N}.csv)")
        if not frame["ratio"].gt(0).all():
            raise KmlError(f"{path}: every loss ratio must be a positive number")
        frames.append(frame.assign(file=str(path)))
    rows = pd.concat(frames, ignore_index=True)
    files = rows.drop_duplicates("file")
    repeated = files[files.duplicated(ANALYSED, keep=False)]
    if not repeated.empty:
        raise KmlError(f"{' and '.join(repeated['file'])}: "
                       "the same (method, shots, iteration, seed) is given twice")
    return rows.drop(columns="file").astype({"self": bool, "shots": int, "iteration": int, "seed": int})


def read_transference(paths: Sequence[Path]) -> pd.DataFrame:
    """The analysis's CSVs, checked against the contract and against each other (one analysis)."""
    rows = read_ratio_csvs(paths, "transference CSV (`kml transference`)", one_step_size=True)
    files = rows.drop_duplicates(SNAPSHOT)
    for column in DESCRIPTION[1:]:
        if column == "step_size" and (files["lookahead"] == "adam").all():
            continue  # the snapshot's Adam learning rate, which follows the training's schedule
        groups = (files.groupby(files["method"].map(lambda m: method_spec(m).family))
                  if column == "step_size" else [("", files)])
        for family, group in groups:
            values = group[column].astype(str).unique()
            if len(values) > 1:
                which = f" ({FAMILY_LABELS[family]})" if family else ""
                raise KmlError(f"{column}: the CSVs differ{which} ({', '.join(values)}); "
                               "report each analysis apart")
    return rows


# ---- outcomes and their fractions --------------------------------------------------------------------------

def outcomes(ratios: pd.Series, band: float) -> pd.Series:
    """positive / neutral / negative of each ratio."""
    return pd.Series(np.where((ratios - 1).abs() < band, "neutral",
                              np.where(ratios < 1, "positive", "negative")),
                     index=ratios.index)


def target_counts(cross: pd.DataFrame, band: float, ratio: str = "ratio") -> pd.DataFrame:
    """How many of each target's sources have each outcome of column `ratio`: index target_task, columns
    OUTCOMES."""
    kinds = outcomes(cross[ratio], band)
    return pd.crosstab(cross["target_task"], kinds).reindex(columns=list(OUTCOMES), fill_value=0)


def target_fractions(cross: pd.DataFrame, band: float, ratio: str = "ratio") -> pd.DataFrame:
    """% of each target's sources with each outcome of column `ratio`: index target_task, columns OUTCOMES."""
    counts = target_counts(cross, band, ratio)
    return 100 * counts.div(counts.sum(axis=1), axis=0)


def largest_remainder(values: Sequence[float], total: int = 100) -> list[int]:
    """Whole numbers that add up to `total` (which `values` add up to, up to rounding), each the floor of its
    value or one more: the ones more go to the largest remainders (the earlier one on a tie)."""
    floors = [math.floor(v) for v in values]
    missing = total - sum(floors)
    order = sorted(range(len(values)), key=lambda i: -(values[i] - floors[i]))
    for i in order[:missing]:
        floors[i] += 1
    return floors


def whole_percentages(fractions: pd.Series) -> dict[str, int]:
    """outcome -> its percentage as a whole number, the three adding up to 100 (largest remainders)."""
    return dict(zip(OUTCOMES, largest_remainder([fractions[o] for o in OUTCOMES])))


def _paper_numbers() -> pd.DataFrame:
    paper = transference_reference().rename(columns={"model": "method"})
    paper = paper.rename(columns={f"{o}_pct": f"paper_{o}_pct" for o in OUTCOMES})
    paper["paper_note"] = paper["source"].str.cat(
        ["; shots and training stage not stated, so repeated on every row of the method"] * len(paper))
    return paper.drop(columns="source")


def seed_target_fractions(cross: pd.DataFrame, band: float, what: str) -> dict[int, pd.DataFrame]:
    """Per training seed, `target_fractions` of its snapshot's cross rows; every seed on the same targets."""
    fractions = {seed: target_fractions(rows, band) for seed, rows in cross.groupby("seed", sort=True)}
    targets = [tuple(frame.index) for frame in fractions.values()]
    if len(set(targets)) != 1:
        raise KmlError(f"{what}: the training seeds were analysed on different target tasks; analyse every "
                       "seed's snapshots with the same transference section")
    return fractions


def target_interval(per_seed: Sequence[pd.Series]) -> float:
    """95 % half-width of the mean of a per-target value (one Series per training seed, indexed by target):
    over targets for one seed (pooled_ci95), over seeds × targets for several (seeds_by_tasks: the
    seed-to-seed variation included)."""
    if len(per_seed) == 1:
        return pooled_ci95(per_seed[0])
    return seeds_by_tasks(np.stack([values.to_numpy() for values in per_seed])).ci95


def summarize_transference(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per snapshot (method, shots, iteration), every training seed's together; columns
    SUMMARY_COLUMNS, in the paper's method order."""
    records = []
    for snapshot, group in rows.groupby(SNAPSHOT, sort=False):
        cross, own = group[~group["self"]], group[group["self"]]
        record = {**dict(zip(SNAPSHOT, snapshot)), **group.iloc[0][DESCRIPTION].to_dict()}
        band = record["neutral_band"]
        what = f"{METHOD_LABELS[snapshot[0]]} {snapshot[1]}-shot iteration {snapshot[2]}"
        per_seed = seed_target_fractions(cross, band, what)
        per_target = sum(per_seed.values()) / len(per_seed)  # each target's fractions, mean over seeds
        if SINGLE_TARGET not in per_target.index:
            raise KmlError(f"{what}: no target task {SINGLE_TARGET}, the single-target view's; "
                           "analyse the fixed target set from its start")
        record.update({f"{o}_pct": value for o, value in whole_percentages(per_target.mean()).items()})
        record.update({f"single_target_{o}_pct": value
                       for o, value in whole_percentages(per_target.loc[SINGLE_TARGET]).items()})
        record.update({f"{o}_ci95_pct": round(target_interval([frame[o] for frame in per_seed.values()]), 1)
                       for o in OUTCOMES})
        if record["lookahead"] == "adam":
            momentum = target_fractions(cross, band, "ratio_to_momentum_only").mean()
            record.update({f"{o}_vs_momentum_only_pct": value
                           for o, value in whole_percentages(momentum).items()})
        record.update(n_sources=cross["source_task"].nunique(), n_targets=len(per_target),
                      n_seeds=len(per_seed),
                      single_target=SINGLE_TARGET, median_ratio=cross["ratio"].median(),
                      median_abs_change=(cross["ratio"] - 1).abs().median(), self_ratio=own["ratio"].mean(),
                      self_ratio_ci95=target_interval([seed["ratio"].set_axis(seed["target_task"])
                                                       for _, seed in own.groupby("seed", sort=True)]))
        records.append(record)
    summary = pd.DataFrame(records).reindex(
        columns=[c for c in SUMMARY_COLUMNS if not c.startswith("paper_")])
    summary = summary.merge(_paper_numbers(), on="method", how="left")
    summary["paper_note"] = summary["paper_note"].fillna(
        "the paper reports no transference numbers for this method")
    order = {method: i for i, method in enumerate(METHOD_NAMES)}
    summary = summary.sort_values(SNAPSHOT, key=lambda c: c.map(order) if c.name == "method" else c)
    return summary[SUMMARY_COLUMNS].reset_index(drop=True)


# ---- words -------------------------------------------------------------------------------------------------

def step_sizes_in_words(summary: pd.DataFrame) -> str:
    """"α = 0.01 (ProtoNet family), 0.003 (MAML family)": each analysed family's step size."""
    sizes = summary.drop_duplicates("method").assign(
        family=lambda f: f["method"].map(lambda m: method_spec(m).family))
    sizes = sizes.drop_duplicates("family")
    return "α = " + ", ".join(f"{row.step_size:g} ({FAMILY_LABELS[row.family]})"
                              for row in sizes.itertuples())


def lookahead_in_words(summary: pd.DataFrame) -> str:
    """The lookahead rule of the analysis, in words (plain text)."""
    first = summary.iloc[0]
    if first["lookahead"] == "sgd":
        rule = f"one gradient step θ − α·∇L(source), {step_sizes_in_words(summary)}"
    else:
        rule = (f"one step of the training's Adam from the snapshot's state (lr {first['step_size']:g}), "
                "whose saved momentum is the same for every source")
    return f"{rule}, on the {PARAMS_LABELS[first['lookahead_params']]}"


# The symbols of the words above, as LaTeX math (pdflatex's default input encoding has none of them).
_LATEX_SYMBOLS = str.maketrans({"θ": r"$\theta$", "α": r"$\alpha$", "∇": r"$\nabla$", "·": r"$\cdot$",
                                "−": r"$-$", "→": r"$\to$", "×": r"$\times$"})


def latex_words(text: str) -> str:
    """Plain text with the symbols of these words, as LaTeX."""
    return escape_latex(text).translate(_LATEX_SYMBOLS)


def analysis_in_words(summary: pd.DataFrame) -> str:
    """What was measured, in words, from the summary's descriptive columns (plain text)."""
    first = summary.iloc[0]
    return (f"{summary['n_sources'].max()} {MODE_LABELS[first['source_mode']]} meta-train source tasks, "
            f"{summary['n_targets'].max()} {MODE_LABELS[first['target_mode']]} meta-test target tasks; "
            f"lookahead: {lookahead_in_words(summary)}")


# ---- table -------------------------------------------------------------------------------------------------

def _pct(mean: float, ci: float) -> str:
    if pd.isna(ci):
        return f"{mean:.0f}"
    return rf"{mean:.0f} {{\scriptsize $\pm$ {ci:.0f}}}"


def _fractions_cell(row: pd.Series, prefix: str) -> str:
    if pd.isna(row[f"{prefix}positive_pct"]):
        return "--"
    return "/".join(f"{row[f'{prefix}{o}_pct']:.0f}" for o in OUTCOMES)


def _seeds_clause(summary: pd.DataFrame) -> str:
    """The captions' sentence on models trained with several seeds, where some are."""
    if not (summary["n_seeds"] > 1).any():
        return ""
    return (r"Models trained with several seeds (n\_seeds in summary.csv): means over seeds and targets, "
            r"the CI over seeds $\times$ targets (seed-inclusive). ")


def transference_table(summary: pd.DataFrame, note: str | None = None) -> str:
    """The fractions per method, shots and snapshot, with the paper's beside them (booktabs)."""
    body, previous = [], None
    for _, row in summary.iterrows():
        if previous not in (None, row["method"]):
            body.append(r"\midrule")
        label = METHOD_LABELS[row["method"]] if row["method"] != previous else ""
        cells = [_pct(row[f"{o}_pct"], row[f"{o}_ci95_pct"]) for o in OUTCOMES]
        body.append(" & ".join([label, f"{row['shots']}", f"{row['iteration']}", *cells,
                                _fractions_cell(row, "single_target_"), f"{row['self_ratio']:.3f}",
                                _fractions_cell(row, "paper_")]) + r" \\")
        previous = row["method"]
    band = summary["neutral_band"].iloc[0]
    caption = caption_with_note(
        r"Transference: share of source tasks (\%) whose one-task lookahead update lowers (Pos., positive), "
        rf"leaves within $\pm${band:g} (Neu., neutral) or raises (Neg., negative) a target task's query "
        r"loss, i.e. loss ratio LR $<$ 1, $|$LR$-$1$|<$" + f"{band:g}" + r", LR $>$ 1; mean $\pm$ 95\% CI "
        r"over target tasks, whole numbers adding up to 100 (largest remainders). " + _seeds_clause(summary)
        + latex_words(analysis_in_words(summary))
        + r". $K$: shots. Iter.: training iterations of the snapshot. "
        rf"Target {SINGLE_TARGET}: positive / neutral / negative on target task {SINGLE_TARGET} alone, "
        r"the paper's single-target view. Self: LR of a lookahead on the target task itself (mean over "
        r"targets). Paper: positive / neutral / negative from the project page figure (one target, shots and "
        r"training stage not stated, so repeated on every row).",
        note,
    )
    header = ["Method", "$K$", "Iter.", "Pos.", "Neu.", "Neg.", f"Target {SINGLE_TARGET}", "Self", "Paper"]
    return table_float("transference", caption, "lrrcccccc", header, body)


def write_transference_summary(summary: pd.DataFrame, out_dir: Path, note: str | None = None) -> list[Path]:
    """out_dir/transference/summary.csv and out_dir/tables/transference.tex."""
    summary_path = report_path(out_dir, "transference", "summary")
    table_path = report_path(out_dir, "transference", "table")
    summary.to_csv(summary_path, index=False)
    table_path.write_text(transference_table(summary, note))
    return [summary_path, table_path]
