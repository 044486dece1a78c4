"""The ablations: each released-code switch flipped alone, paired with the default cells task by task
(results/ablations/summary.csv, tables/ablations.tex, figures/ablations.{pdf,png}).

An ablation (config.yaml `ablations`, kml/plan.py) is a one-switch variant: its cells are evaluated on the
same fixed test tasks as the default ones, so each is compared with its default cell as a variant's are
(kml.report.variant.paired_cells: per task, ablated − default; mean, paired 95 % interval and p-value). A
cell the switch does not change is the default cell itself (`same_configuration`): its difference is exactly
0 by construction. Torch-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from kml import KmlError
from kml.layout import report_path
from kml.method_table import METHOD_LABELS
from kml.report.figures import OURS_COLOR, title_with_note, write_figure
from kml.report.paper import KEYS, SETTING_LABELS, sort_like_paper
from kml.report.summary import read_cells
from kml.report.tables import caption_with_note, escape_latex, mean_ci, seeds_words, table_float
from kml.report.variant import paired_cells
from kml.variants import SWITCHES

ABLATION_COLUMNS = [
    "switch", "value", *KEYS, "default_accuracy_pct", "default_ci95_pct", "accuracy_pct", "accuracy_ci95_pct",
    "delta_pct", "ci95_pct", "p_value", "n_tasks", "n_seeds", "same_configuration",
]
# paired_cells' names (variant = the ablated cell) as the summary's
RENAMED = {"accuracy": "default_accuracy_pct", "ci95": "default_ci95_pct", "variant_accuracy": "accuracy_pct",
           "variant_ci95": "accuracy_ci95_pct", "delta_ci95_pct": "ci95_pct"}
SHARED_COLOR = "0.55"


def summarize_ablations(ablations: Sequence[tuple[str, Path]], default: Sequence[Path]) -> pd.DataFrame:
    """`ablations`: (switch, cell CSV) pairs, the cell the default's own where the switch changes nothing;
    `default`: the default cell of every one. Rows by switch (kml/variants.py's order), then the paper's."""
    by_switch: dict[str, list[Path]] = {}
    for switch, cell in ablations:
        if switch not in SWITCHES:
            raise KmlError(f"{cell}: unknown switch {switch!r}; choose from {', '.join(SWITCHES)}")
        by_switch.setdefault(switch, []).append(Path(cell))
    defaults = read_cells(list(default))
    frames = [sort_like_paper(paired_cells(defaults, read_cells(cells)))
              .assign(switch=switch, value=str(SWITCHES[switch].released))
              for switch, cells in sorted(by_switch.items(), key=lambda item: list(SWITCHES).index(item[0]))]
    if not frames:
        raise KmlError("no ablation cells given (--ablation SWITCH CELL.csv)")
    return pd.concat(frames, ignore_index=True).rename(columns=RENAMED)[ABLATION_COLUMNS]


def _cell_label(row) -> str:
    seeds = f" ({row.n_seeds} seeds)" if row.n_seeds > 1 else ""
    return f"{SETTING_LABELS[row.setting]} {row.shots}-shot {METHOD_LABELS[row.method]}{seeds}"


def ablations_table(summary: pd.DataFrame, note: str | None = None) -> str:
    body, previous = [], None
    for row in summary.itertuples(index=False):
        if previous not in (None, row.switch):
            body.append(r"\midrule")
        switch = rf"\texttt{{{escape_latex(row.switch)}}} = {escape_latex(row.value)}"
        shared = r"$^\ast$" if row.same_configuration else ""
        body.append(" & ".join([
            switch if row.switch != previous else "", SETTING_LABELS[row.setting], f"{row.shots}-shot",
            METHOD_LABELS[row.method],
            mean_ci(row.default_accuracy_pct, row.default_ci95_pct, n_seeds=row.n_seeds),
            mean_ci(row.accuracy_pct, row.accuracy_ci95_pct, n_seeds=row.n_seeds),
            mean_ci(row.delta_pct, row.ci95_pct, signed=True, n_seeds=row.n_seeds) + shared,
        ]) + r" \\")
        previous = row.switch
    caption = caption_with_note(
        r"Ablations: each released-code switch flipped alone to its released value, every other setting as "
        r"the paper describes the methods (default). Accuracy (\%) on meta-test tasks, mean $\pm$ 95\% "
        r"interval over batch means. $\Delta$ = ablated $-$ default, the mean over the test tasks both "
        r"share $\pm$ its 95\% paired $t$ interval. $^\ast$: the switch does not change this cell, which is "
        r"the default cell itself ($\Delta$ = 0 by construction)." + seeds_words(summary),
        note,
    )
    header = ["Switch", "Setting", "Shots", "Method", "Default", "Ablated", r"$\Delta$"]
    return table_float("ablations", caption, "llllccc", header, body)


def ablations_figure(summary: pd.DataFrame, note: str | None = None) -> Figure:
    """A forest plot, one panel per switch: each cell's paired difference ± 95% CI, zero marked; a cell the
    switch does not change is a hollow grey marker at 0. The panels share the cells (rows) and the axis."""
    switches = list(dict.fromkeys(summary["switch"]))
    cells = sort_like_paper(summary.drop_duplicates(KEYS)[[*KEYS, "n_seeds"]])
    labels = [_cell_label(row) for row in cells.itertuples(index=False)]
    rows = {tuple(key): i for i, key in enumerate(cells[KEYS].itertuples(index=False, name=None))}
    figure = Figure(figsize=(3.4 * len(switches) + 2.4, 0.32 * len(labels) + 2.0), layout="constrained")
    axes = figure.subplots(1, len(switches), sharex=True, sharey=True, squeeze=False)[0]
    for ax, switch in zip(axes, switches):
        panel = summary[summary["switch"] == switch]
        position = np.array([rows[key] for key in panel[KEYS].itertuples(index=False, name=None)])
        same = panel["same_configuration"].to_numpy(dtype=bool)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.errorbar(panel["delta_pct"][~same], position[~same], xerr=panel["ci95_pct"][~same], fmt="o",
                    color=OURS_COLOR, capsize=2)
        ax.plot(panel["delta_pct"][same], position[same], "o", color=SHARED_COLOR, markerfacecolor="white")
        groups = [(setting, shots) for setting, _, shots in rows]
        for i in range(1, len(groups)):
            if groups[i] != groups[i - 1]:
                ax.axhline(i - 0.5, color="0.85", linewidth=0.8)  # between (setting, shots) groups
        value = panel["value"].iloc[0]
        ax.set_title(f"{switch} = {value}", fontsize="medium")
        ax.grid(axis="x", alpha=0.3)
        ax.set_xlabel("ablated − default (points)")
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].set_ylim(len(labels) - 0.5, -0.5)  # the paper's order, top to bottom
    legend = [
        Line2D([], [], marker="o", color=OURS_COLOR,
               label="mean paired difference over the shared test tasks ± 95% CI (over seeds × tasks for a "
                     "cell of several seeds)"),
        Line2D([], [], marker="o", linestyle="", color=SHARED_COLOR, markerfacecolor="white",
               label="switch does not change the cell: the default cell itself (0 by construction)"),
    ]
    figure.legend(handles=legend, loc="outside lower center", ncols=1, frameon=False)
    title_with_note(
        figure, "Ablations: each released-code switch flipped alone, paired with the default cells", note)
    return figure


def report_ablations(ablations: Sequence[tuple[str, Path]], default: Sequence[Path], out_dir: Path,
                     note: str | None = None) -> list[Path]:
    """`kml report ablations`: ablations/summary.csv, tables/ablations.tex, figures/ablations.{pdf,png}."""
    summary = summarize_ablations(ablations, default)
    csv, table = (report_path(out_dir, "ablations", name) for name in ("summary", "table"))
    summary.to_csv(csv, index=False)
    table.write_text(ablations_table(summary, note))
    return [csv, table, *write_figure(ablations_figure(summary, note), out_dir, "ablations")]
