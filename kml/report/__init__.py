"""Reports: the paper's tables and figures from evaluated cells, beside the paper's own numbers."""

from __future__ import annotations

from pathlib import Path

from kml.report.figures import reproduction_figure, write_figure
from kml.report.summary import read_cells, summarize, write_summaries
from kml.report.tables import write_tables


def report_accuracy(cells: list[Path], out_dir: Path, note: str | None = None) -> list[Path]:
    """`kml report accuracy`: summary.csv, per_mode.csv, tables/*.tex, figures/reproduction.* in out_dir.

    Cells may be any subset of the paper's 64 (a partial run); the tables show the missing ones as not run.
    """
    rows = read_cells(cells)
    summary = summarize(rows)
    return [
        *write_summaries(rows, out_dir),
        *write_tables(summary, out_dir, note),
        *write_figure(reproduction_figure(summary, note), out_dir, "reproduction"),
    ]

