"""Evaluated cells (cell CSVs, docs/ARCHITECTURE.md "Cell CSV") → summary.csv and per_mode.csv."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kml import MODES, KmlError
from kml.report.csvfiles import read_checked_csv
from kml.report.paper import KEYS, paper_results, sort_like_paper

CELL_COLUMNS = [
    "setting",
    "method",
    "shots",
    "kind",
    "task_id",
    "mode",
    "n_tasks",
    "accuracy_pct",
    "ci95_pct",
    "ci95_definition",
]
KINDS = {"task", "mode", "overall"}
SUMMARY_COLUMNS = [
    *KEYS,
    "accuracy",
    "ci95",
    "n_tasks",
    "paper_accuracy",
    "paper_ci95",
    "delta",
    "intervals_overlap",
]
PER_MODE_COLUMNS = [*KEYS, "mode", "accuracy", "ci95", "n_tasks", "paper_note"]
# The paper publishes overall accuracies only; per_mode.csv says so rather than leaving a blank to guess at.
PER_MODE_PAPER_NOTE = "the paper reports no per-mode accuracy"


def read_cells(paths: list[Path]) -> pd.DataFrame:
    """All rows of the given cell CSVs, each checked against the contract; a KmlError names the bad file."""
    cells = [_read_cell(Path(path)) for path in paths]
    owners = pd.DataFrame(
        [{**cell.iloc[0][KEYS].to_dict(), "file": str(path)} for cell, path in zip(cells, paths)]
    )
    repeated = owners[owners.duplicated(KEYS, keep=False)]
    if not repeated.empty:
        raise KmlError(f"{' and '.join(repeated['file'])}: the same cell is given more than once")
    return pd.concat(cells, ignore_index=True)


def _read_cell(path: Path) -> pd.DataFrame:
    cell = read_checked_csv(path, CELL_COLUMNS, "cell CSV")
    unknown_kinds = set(cell["kind"]) - KINDS
    if unknown_kinds:
        raise KmlError(
            f"{path}: unknown kind {sorted(map(str, unknown_kinds))}; expected one of {sorted(KINDS)}"
        )
    # Coerced here so that a stray text value fails the checks below instead of a later merge or cast.
    numeric = ["shots", "n_tasks", "accuracy_pct", "ci95_pct"]
    cell[numeric] = cell[numeric].apply(pd.to_numeric, errors="coerce")
    identities = cell[KEYS].drop_duplicates()
    if len(identities) != 1:
        raise KmlError(
            f"{path}: a cell CSV holds exactly one (setting, method, shots); found {len(identities)}"
        )
    setting, method, shots = identities.iloc[0]
    if (setting, method, shots) not in set(paper_results()[KEYS].itertuples(index=False, name=None)):
        raise KmlError(f"{path}: ({setting}, {method}, {shots} shots) is not a cell of the paper's tables")
    overall_rows = (cell["kind"] == "overall").sum()
    if overall_rows != 1:
        raise KmlError(f"{path}: needs exactly one 'overall' row, found {overall_rows}")
    summaries = cell[cell["kind"] != "task"]
    valid = (
        (summaries["n_tasks"] >= 1) & summaries["accuracy_pct"].between(0, 100) & (summaries["ci95_pct"] >= 0)
    )
    if not valid.all():
        lines = ", ".join(str(index + 2) for index in summaries.index[~valid])  # +2: header, 1-based
        raise KmlError(
            f"{path}: summary rows need n_tasks >= 1, accuracy_pct in [0, 100] and ci95_pct >= 0; "
            f"line(s) {lines} do not"
        )
    bad_modes = set(cell.loc[cell["kind"] == "mode", "mode"]) - set(MODES)
    if bad_modes:
        raise KmlError(f"{path}: unknown mode(s) {sorted(map(str, bad_modes))} in 'mode' rows")
    return cell.astype({"shots": int})


def intervals_overlap(
    mean: pd.Series, ci: pd.Series, other_mean: pd.Series, other_ci: pd.Series
) -> pd.Series:
    """Whether [mean ± ci] and [other_mean ± other_ci] share at least one point (touching counts)."""
    return (mean - ci <= other_mean + other_ci) & (other_mean - other_ci <= mean + ci)


def summarize(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per cell, from its 'overall' row, beside the paper's number for the same cell."""
    ours = cells[cells["kind"] == "overall"].rename(columns={"accuracy_pct": "accuracy", "ci95_pct": "ci95"})
    paper = paper_results().rename(columns={"accuracy": "paper_accuracy", "ci95": "paper_ci95"})
    summary = ours.merge(paper, on=KEYS, how="left", validate="one_to_one")
    summary["n_tasks"] = summary["n_tasks"].astype(int)
    summary["delta"] = summary["accuracy"] - summary["paper_accuracy"]
    summary["intervals_overlap"] = intervals_overlap(
        summary["accuracy"], summary["ci95"], summary["paper_accuracy"], summary["paper_ci95"]
    )
    return sort_like_paper(summary[SUMMARY_COLUMNS])


def per_mode(cells: pd.DataFrame) -> pd.DataFrame:
    """One row per (cell, mode) from the cells' 'mode' rows, modes in the canonical order."""
    modes = cells[cells["kind"] == "mode"].rename(columns={"accuracy_pct": "accuracy", "ci95_pct": "ci95"})
    modes = modes.assign(n_tasks=modes["n_tasks"].astype(int), paper_note=PER_MODE_PAPER_NOTE)
    return sort_like_paper(modes[PER_MODE_COLUMNS], then=["mode"])


def write_summaries(cells: pd.DataFrame, out_dir: Path) -> list[Path]:
    """DIR/summary.csv and DIR/per_mode.csv."""
    out_dir.mkdir(parents=True, exist_ok=True)
    outputs = {out_dir / "summary.csv": summarize(cells), out_dir / "per_mode.csv": per_mode(cells)}
    for path, frame in outputs.items():
        frame.to_csv(path, index=False)
    return list(outputs)
