"""A variant's cells beside the default ones and the paper's (results/variants/{variant}/summary.csv).

A variant (kml/variants.py) evaluates each of its cells on the same fixed test tasks as the default cell, so
the two are compared task by task: per task, variant − default accuracy, its mean and paired 95 % interval
(kml.stats.paired_difference). A cell the variant's switches leave unchanged is the default cell itself
(`same_configuration`): its difference is exactly 0 by construction, not by measurement.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kml import KmlError, stats
from kml.cell_csv import DECIMALS, headline_rows
from kml.layout import report_path
from kml.method_table import METHOD_LABELS
from kml.report.claims import paired_accuracies
from kml.report.paper import KEYS, SETTING_LABELS, paper_results, sort_like_paper
from kml.report.summary import COMPARED_INTERVAL, read_cells
from kml.report.tables import caption_with_note, escape_latex, mean_ci, seeds_words, table_float

INTERVAL = f"{COMPARED_INTERVAL}_pct"  # the interval comparable with the paper's, as summary.csv's ci95
VARIANT_COLUMNS = [
    "variant", *KEYS, "paper_accuracy", "paper_ci95", "accuracy", "ci95", "variant_accuracy", "variant_ci95",
    "delta_pct", "delta_ci95_pct", "p_value", "n_tasks", "n_seeds", "same_configuration",
]


def paired_cells(default: pd.DataFrame, other: pd.DataFrame) -> pd.DataFrame:
    """For every cell of `other` (rows of `read_cells`): both cells' overall accuracy and comparable interval,
    and other − default task by task. Every cell of `other` needs its default cell."""
    rows = []
    defaults = {key: frame for key, frame in default.groupby(KEYS)}
    for key, cell in other.groupby(KEYS):
        base = defaults.get(key)
        if base is None:
            raise KmlError(f"{cell['file'].iloc[0]}: no default cell for ({', '.join(map(str, key))}) "
                           "was given to compare it with")
        tasks = [frame[frame["kind"] == "task"] for frame in (cell, base)]
        result = stats.paired_difference(*paired_accuracies(*tasks))
        overall = [headline_rows(frame, "overall").iloc[0] for frame in (cell, base)]
        rows.append({
            **dict(zip(KEYS, key)),
            "accuracy": overall[1]["accuracy_pct"], "ci95": overall[1][INTERVAL],
            "variant_accuracy": overall[0]["accuracy_pct"], "variant_ci95": overall[0][INTERVAL],
            "delta_pct": round(result.mean, DECIMALS), "delta_ci95_pct": round(result.ci95, DECIMALS),
            "p_value": result.p_value, "n_tasks": result.n, "n_seeds": result.n_seeds,
            "same_configuration": cell["file"].iloc[0] == base["file"].iloc[0],
        })
    return pd.DataFrame(rows)


def summarize_variant(default: list[Path], cells: list[Path], variant: str) -> pd.DataFrame:
    """The variant's cells (`cells`) beside the default ones (`default`) and the paper's numbers."""
    compared = paired_cells(read_cells(default), read_cells(cells))
    paper = paper_results().rename(columns={"accuracy": "paper_accuracy", "ci95": "paper_ci95"})
    summary = compared.merge(paper[[*KEYS, "paper_accuracy", "paper_ci95"]], on=KEYS, how="left")
    return sort_like_paper(summary.assign(variant=variant))[VARIANT_COLUMNS]


def variant_table(summary: pd.DataFrame, variant: str, note: str | None = None) -> str:
    body, previous = [], None
    for row in summary.itertuples(index=False):
        if previous not in (None, row.setting):
            body.append(r"\midrule")
        delta = mean_ci(row.delta_pct, row.delta_ci95_pct, signed=True, n_seeds=row.n_seeds)
        body.append(" & ".join([
            SETTING_LABELS[row.setting] if row.setting != previous else "", f"{row.shots}-shot",
            METHOD_LABELS[row.method], mean_ci(row.paper_accuracy, row.paper_ci95),
            mean_ci(row.accuracy, row.ci95, n_seeds=row.n_seeds),
            mean_ci(row.variant_accuracy, row.variant_ci95, n_seeds=row.n_seeds),
            delta + (r"$^\ast$" if row.same_configuration else ""),
        ]) + r" \\")
        previous = row.setting
    caption = caption_with_note(
        f"The paper, this reproduction as the paper describes the methods (default) and as the released "
        f"code's configuration gives them (variant {escape_latex(variant)}): accuracy (\\%) on meta-test "
        r"tasks, mean $\pm$ 95\% interval over batch means. $\Delta$ = variant $-$ default, the mean "
        r"over the test tasks both share $\pm$ its 95\% paired $t$ interval. $^\ast$: the variant's "
        r"switches do not change this cell, which is the default cell itself ($\Delta$ = 0 by construction)."
        + seeds_words(summary),
        note,
    )
    header = ["Setting", "Shots", "Method", "Paper", "Default", "Variant", r"$\Delta$"]
    return table_float(f"variant_{variant}", caption, "lllcccc", header, body)


def report_variant(default: list[Path], cells: list[Path], variant: str, out_dir: Path,
                   note: str | None = None) -> list[Path]:
    """`kml report variant`: summary.csv and tables/variant.tex in out_dir (the variant's folder)."""
    summary = summarize_variant(default, cells, variant)
    csv, table = (report_path(out_dir, "variant", name) for name in ("summary", "table"))
    summary.to_csv(csv, index=False)
    table.write_text(variant_table(summary, variant, note))
    return [csv, table]
