"""Evaluated cells (cell CSVs, docs/ARCHITECTURE.md "Cell CSV") → summary.csv and per_mode.csv."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kml import MODES, KmlError
from kml.cell_csv import COLUMNS, DECIMALS, INTERVAL_COLUMNS, KINDS, OVER_SEEDS, headline_rows
from kml.layout import report_path
from kml.report.csvfiles import read_checked_csv
from kml.report.paper import KEYS, paper_results, sort_like_paper

SUMMARY_COLUMNS = [
    *KEYS,
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
# The cell CSV's interval that summary.csv compares with the paper's ± (its `ci95`), and the others it keeps.
COMPARED_INTERVAL = "ci95_batch_means"
OTHER_INTERVALS = {"ci95_stratified_pct": "ci95_stratified", "ci95_pct": "ci95_pooled"}
PER_MODE_COLUMNS = [*KEYS, "mode", "accuracy", "ci95", "n_tasks", "n_seeds", "ci95_definition", "paper_note"]
# The paper publishes overall accuracies only; per_mode.csv says so rather than leaving a blank to guess at.
PER_MODE_PAPER_NOTE = "the paper reports no per-mode accuracy"


def read_cells(paths: list[Path]) -> pd.DataFrame:
    """All rows of the given cell CSVs, each checked against the contract, with a `file` column naming each
    row's file; a KmlError names the bad file."""
    cells = [_read_cell(Path(path)).assign(file=str(path)) for path in paths]
    owners = pd.DataFrame([cell.iloc[0][[*KEYS, "file"]] for cell in cells])
    repeated = owners[owners.duplicated(KEYS, keep=False)]
    if not repeated.empty:
        raise KmlError(f"{' and '.join(repeated['file'])}: the same cell is given more than once")
    return pd.concat(cells, ignore_index=True)


def _read_cell(path: Path) -> pd.DataFrame:
    cell = read_checked_csv(path, COLUMNS, "cell CSV",
                            fix="a cell CSV of an older kml lacks columns: evaluate the cell again "
                                "(snakemake --forcerun evaluate)")
    unknown_kinds = set(cell["kind"]) - set(KINDS)
    if unknown_kinds:
        raise KmlError(
            f"{path}: unknown kind {sorted(map(str, unknown_kinds))}; expected one of {sorted(KINDS)}"
        )
    # Coerced here so that a stray text value fails the checks below instead of a later merge or cast.
    numeric = ["shots", "seed", "task_id", "n_tasks", "n_seeds", "accuracy_pct", *INTERVAL_COLUMNS]
    cell[numeric] = cell[numeric].apply(pd.to_numeric, errors="coerce")
    identities = cell[KEYS].drop_duplicates()
    if len(identities) != 1:
        raise KmlError(
            f"{path}: a cell CSV holds exactly one (setting, method, shots); found {len(identities)}"
        )
    setting, method, shots = identities.iloc[0]
    if (setting, method, shots) not in set(paper_results()[KEYS].itertuples(index=False, name=None)):
        raise KmlError(f"{path}: ({setting}, {method}, {shots} shots) is not a cell of the paper's tables")
    seeds = cell.loc[cell["kind"] == "overall", "seed"]
    if seeds.empty or seeds.isna().any() or seeds.duplicated().any():
        raise KmlError(f"{path}: needs exactly one 'overall' row per training seed, found seeds "
                       f"{seeds.tolist()}")
    over_seeds = (cell["kind"] == OVER_SEEDS["overall"]).sum()
    if over_seeds != (len(seeds) > 1):
        raise KmlError(f"{path}: {len(seeds)} seed(s) need {int(len(seeds) > 1)} "
                       f"'{OVER_SEEDS['overall']}' row, found {over_seeds}")
    # An interval is empty where it is undefined (e.g. one batch has no spread), never negative.
    summaries = cell[cell["kind"] != "task"]
    intervals = summaries[INTERVAL_COLUMNS]
    _check_rows(path, summaries, (summaries["n_tasks"] >= 1) & summaries["accuracy_pct"].between(0, 100)
                & (intervals.isna() | (intervals >= 0)).all(axis=1),
                "summary rows need n_tasks >= 1, accuracy_pct in [0, 100] and intervals >= 0 or empty")
    tasks = cell[cell["kind"] == "task"]
    ids = tasks["task_id"]
    _check_rows(path, tasks, (ids == ids.round()) & ~tasks[["seed", "task_id"]].duplicated(keep=False)
                & tasks["seed"].isin(seeds) & tasks["accuracy_pct"].between(0, 100),
                "task rows need a seed with an overall row, a whole task_id given once per seed and "
                "accuracy_pct in [0, 100]")
    whole_cell = cell["kind"].isin(["overall", OVER_SEEDS["overall"]])
    bad_modes = set(cell.loc[~whole_cell, "mode"]) - set(MODES)
    if bad_modes:
        raise KmlError(f"{path}: unknown mode(s) {sorted(map(str, bad_modes))} in 'task' or 'mode' rows")
    return cell.astype({"shots": int, "seed": "Int64", "task_id": "Int64", "n_seeds": int})


def _check_rows(path: Path, rows: pd.DataFrame, valid: pd.Series, rule: str) -> None:
    if not valid.all():
        lines = ", ".join(str(index + 2) for index in rows.index[~valid])  # +2: header, 1-based
        raise KmlError(f"{path}: {rule}; line(s) {lines} do not")


def intervals_overlap(
    mean: pd.Series, ci: pd.Series, other_mean: pd.Series, other_ci: pd.Series
) -> pd.Series:
    """Whether [mean ± ci] and [other_mean ± other_ci] share at least one point (touching counts); empty
    where either interval is."""
    overlap = (mean - ci <= other_mean + other_ci) & (other_mean - other_ci <= mean + ci)
    return overlap.astype("boolean").mask(ci.isna() | other_ci.isna())


def summarize(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per cell, from its 'overall' row (over seeds where it has several: the mean over seeds, and
    seed_sd the standard deviation of the seeds' accuracies), beside the paper's number for the same cell.

    `ci95` is the interval comparable with the paper's ± (COMPARED_INTERVAL, named in `ci95_definition`);
    `delta_ci95` is the 95 % half-width of ours − paper when both are independent estimates with those
    intervals.
    """
    spread = (cells[cells["kind"] == "overall"].groupby(KEYS)["accuracy_pct"].std(ddof=1)
              .round(DECIMALS).rename("seed_sd").reset_index())
    ours = headline_rows(cells, "overall").drop(columns="ci95_definition").rename(columns={
        "accuracy_pct": "accuracy", f"{COMPARED_INTERVAL}_pct": "ci95",
        f"{COMPARED_INTERVAL}_definition": "ci95_definition", **OTHER_INTERVALS,
    })
    paper = paper_results().rename(columns={"accuracy": "paper_accuracy", "ci95": "paper_ci95"})
    summary = ours.merge(paper, on=KEYS, how="left", validate="one_to_one").merge(spread, on=KEYS)
    summary["n_tasks"] = summary["n_tasks"].astype(int)
    summary["delta"] = (summary["accuracy"] - summary["paper_accuracy"]).round(DECIMALS)
    summary["delta_ci95"] = np.hypot(summary["ci95"], summary["paper_ci95"]).round(DECIMALS)
    summary["intervals_overlap"] = intervals_overlap(
        summary["accuracy"], summary["ci95"], summary["paper_accuracy"], summary["paper_ci95"]
    )
    return sort_like_paper(summary[SUMMARY_COLUMNS])


def per_mode(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, mode) from the cells' 'mode' rows (their pooled interval), modes in the canonical
    order."""
    modes = headline_rows(cells, "mode").rename(columns={"accuracy_pct": "accuracy", "ci95_pct": "ci95"})
    modes = modes.assign(n_tasks=modes["n_tasks"].astype(int), paper_note=PER_MODE_PAPER_NOTE)
    return sort_like_paper(modes[PER_MODE_COLUMNS], then=["mode"])


def write_summaries(cells: pd.DataFrame, out_dir: Path) -> list[Path]:
    """DIR/summary.csv and DIR/per_mode.csv."""
    outputs = {report_path(out_dir, "accuracy", "summary"): summarize(cells),
               report_path(out_dir, "accuracy", "per_mode"): per_mode(cells)}
    for path, frame in outputs.items():
        frame.to_csv(path, index=False)
    return list(outputs)
