"""Reports: the paper's tables and figures from evaluated cells, beside the paper's own numbers."""

from __future__ import annotations

from pathlib import Path

from kml.layout import report_path
from kml.report.claims import compare
from kml.report.figures import claims_figure, reproduction_figure, write_figure
from kml.report.summary import read_cells, summarize, write_summaries
from kml.report.tables import claims_table, write_tables
from kml.report.transference import read_transference, summarize_transference, write_transference_summary
from kml.report.transference_claims import write_transference_claims
from kml.report.transference_figures import write_transference_figures


def report_accuracy(cells: list[Path], out_dir: Path, note: str | None = None) -> list[Path]:
    """`kml report accuracy`: summary.csv, per_mode.csv, tables/*.tex, figures/reproduction.* in out_dir.

    Cells may be any subset of the paper's 64 (a partial run); the tables show the missing ones as not run.
    """
    rows = read_cells(cells)
    summary = summarize(rows)
    return [
        *write_summaries(rows, out_dir),
        *write_tables(summary, out_dir, note),
        *write_figure(reproduction_figure(summary, note), out_dir, "accuracy"),
    ]


def report_claims(cells: list[Path], out_dir: Path, note: str | None = None) -> list[Path]:
    """`kml report claims`: claims.csv, tables/claims.tex and figures/claims.{pdf,png} in out_dir.

    Comparisons need both of their cells; those of cells not given are left out of the CSV and shown as not
    run in the table and figure.
    """
    claims = compare(read_cells(cells))
    csv, table = report_path(out_dir, "claims", "claims"), report_path(out_dir, "claims", "table")
    claims.to_csv(csv, index=False)
    table.write_text(claims_table(claims, note))
    return [csv, table, *write_figure(claims_figure(claims, note), out_dir, "claims")]


def report_transference(csvs: list[Path], out_dir: Path, note: str | None = None) -> list[Path]:
    """`kml report transference`: transference/summary.csv and claims.csv, tables/transference*.tex and the
    figures/transference_*.{pdf,png} in out_dir, from the CSVs of `kml transference`."""
    out_dir = Path(out_dir)
    rows = read_transference(csvs)
    summary = summarize_transference(rows)
    return [
        *write_transference_summary(summary, out_dir, note),
        *write_transference_claims(rows, summary, out_dir, note),
        *write_transference_figures(rows, summary, out_dir, note),
    ]
