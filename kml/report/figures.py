"""The report's figures: accuracy, ours beside the paper for every cell; the paired claims as a forest
plot."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from kml import stats
from kml.cell_csv import MMAML_EVAL_META_BATCH
from kml.layout import report_path
from kml.method_table import METHOD_LABELS, METHOD_NAMES
from kml.report.claims import COMPARISONS, with_paper_grid
from kml.report.paper import (
    CHANCE_PCT,
    KEYS,
    PAPER_WAYS,
    SETTING_LABELS,
    SETTINGS,
    paper_results,
)

OURS_COLOR = "tab:blue"
PAPER_COLOR = "black"
CHANCE_COLOR = "0.45"
OFFSET = 0.17  # vertical gap between our marker and the paper's for one method
VERDICT_COLORS = {
    stats.REPRODUCED: "tab:green",
    stats.NOT_SIGNIFICANT: "0.55",
    stats.CONTRADICTED: "tab:red",
    stats.NO_PAPER_DIRECTION: "tab:purple",
}


def reproduction_figure(summary: pd.DataFrame, note: str | None = None) -> Figure:
    """Panels per (shots, setting); in each, the methods as rows, ours filled and the paper's hollow, ± CI.

    Ours carries `summary`'s `ci95`, the interval comparable with the paper's ±. All panels share one
    accuracy axis, so that they compare at a glance; chance is marked."""
    paper = paper_results()
    grid = paper.merge(summary[[*KEYS, "accuracy", "ci95", "n_seeds"]], on=KEYS, how="left",
                       suffixes=("_paper", ""))
    shots = sorted(paper["shots"].unique())
    figure = Figure(figsize=(3.3 * len(SETTINGS) + 1.2, 2.8 * len(shots) + 1.3), layout="constrained")
    axes = figure.subplots(len(shots), len(SETTINGS), sharex=True, sharey=True, squeeze=False)
    rows = np.arange(len(METHOD_NAMES))
    families = (paper.drop_duplicates("method").set_index("method")
                .loc[list(METHOD_NAMES), "family"].to_numpy())
    for i, k in enumerate(shots):
        for j, setting in enumerate(SETTINGS):
            ax = axes[i, j]
            ax.axvline(CHANCE_PCT, color=CHANCE_COLOR, linestyle="--", linewidth=0.9)
            cell = (
                grid[(grid["setting"] == setting) & (grid["shots"] == k)]
                .set_index("method")
                .loc[list(METHOD_NAMES)]
            )
            ax.errorbar(
                cell["accuracy_paper"],
                rows + OFFSET,
                xerr=cell["ci95_paper"],
                fmt="o",
                color=PAPER_COLOR,
                markerfacecolor="white",
                capsize=2,
            )
            ax.errorbar(
                cell["accuracy"], rows - OFFSET, xerr=cell["ci95"], fmt="o", color=OURS_COLOR, capsize=2
            )
            _mark_not_run(ax, rows[cell["accuracy"].isna().to_numpy()] - OFFSET)
            for row, (_, ours) in zip(rows, cell.iterrows()):
                if ours["n_seeds"] > 1:  # a mean over seeds, its interval seed-inclusive
                    ax.annotate(f"{int(ours['n_seeds'])} seeds", (ours["accuracy"], row - OFFSET),
                                xytext=(0, -6), textcoords="offset points", ha="center", va="top",
                                fontsize="x-small", color=OURS_COLOR)
            _family_rules(ax, families)
            ax.set_title(f"{SETTING_LABELS[setting]}, {k}-shot")
            ax.grid(axis="x", alpha=0.3)
            ax.tick_params(labelbottom=True)  # every panel's scale readable in place, though shared
    axes[0, 0].set_yticks(rows, [METHOD_LABELS[m] for m in METHOD_NAMES])
    axes[0, 0].invert_yaxis()  # the paper's method order, top to bottom
    for ax in axes[-1]:
        ax.set_xlabel("meta-test accuracy (%)")
    legend = [
        Line2D(
            [], [], marker="o", color=OURS_COLOR,
            label=f"ours: mean ± 95% CI over the means of {MMAML_EVAL_META_BATCH}-task batches "
                  "(comparable with the paper's ±; 'n seeds': over seeds × batches)",
        ),
        Line2D(
            [], [], marker="o", color=PAPER_COLOR, markerfacecolor="white", label="paper: mean ± as reported"
        ),
        Line2D([], [], color=CHANCE_COLOR, linestyle="--", label=f"chance ({PAPER_WAYS}-way)"),
    ]
    figure.legend(handles=legend, loc="outside lower center", ncols=len(legend), frameon=False)
    title_with_note(
        figure, "Multimodal few-shot classification: this reproduction vs the KML paper (NeurIPS 2021)", note)
    return figure


def claims_figure(claims: pd.DataFrame, note: str | None = None) -> Figure:
    """A forest plot per (shots, setting): each comparison's paired difference ± 95% CI, coloured by its
    verdict, the paper's difference beside it, and zero marked; one difference axis shared by all panels."""
    grid = with_paper_grid(claims)
    shots = sorted(grid["shots"].unique())
    figure = Figure(figsize=(3.3 * len(SETTINGS) + 1.8, 2.8 * len(shots) + 1.4), layout="constrained")
    axes = figure.subplots(len(shots), len(SETTINGS), sharex=True, sharey=True, squeeze=False)
    rows = np.arange(len(COMPARISONS))
    for i, k in enumerate(shots):
        for j, setting in enumerate(SETTINGS):
            ax = axes[i, j]
            ax.axvline(0, color="black", linewidth=0.8)
            panel = grid[(grid["setting"] == setting) & (grid["shots"] == k)].reset_index(drop=True)
            ax.plot(panel["paper_delta_pct"], rows + OFFSET, "D", color=PAPER_COLOR, markerfacecolor="white",
                    markersize=4.5)
            for verdict, color in VERDICT_COLORS.items():
                chosen = (panel["verdict"] == verdict).to_numpy()
                ax.errorbar(panel["delta_pct"][chosen], rows[chosen] - OFFSET, xerr=panel["ci95_pct"][chosen],
                            fmt="o", color=color, capsize=2)
            _mark_not_run(ax, rows[panel["delta_pct"].isna().to_numpy()] - OFFSET)
            _family_rules(ax, panel["family"].to_numpy())
            ax.set_title(f"{SETTING_LABELS[setting]}, {k}-shot")
            ax.grid(axis="x", alpha=0.3)
            ax.tick_params(labelbottom=True)  # every panel's scale readable in place, though shared
    labels = [f"{METHOD_LABELS[method]} − {METHOD_LABELS[baseline]}" for method, baseline in COMPARISONS]
    axes[0, 0].set_yticks(rows, labels)
    axes[0, 0].invert_yaxis()  # the paper's comparison order, top to bottom
    for ax in axes[-1]:
        ax.set_xlabel("accuracy difference (points)")
    legend = [
        *(Line2D([], [], marker="o", color=color, label=f"ours: {verdict}") for verdict, color in
          VERDICT_COLORS.items()),
        Line2D([], [], marker="D", linestyle="", color=PAPER_COLOR, markerfacecolor="white",
               label="paper's difference"),
    ]
    figure.legend(handles=legend, loc="outside lower center", ncols=len(legend), frameon=False)
    title_with_note(figure, "The paper's comparisons, tested task by task: mean paired difference ± 95% CI "
                    "(verdicts at Holm-adjusted p < 0.05)", note)
    return figure


def _mark_not_run(ax: Axes, positions: np.ndarray) -> None:
    """Said in place, so that a partial run is not read as a missing marker or a plotting fault."""
    for position in positions:
        # On a white ground, so that a reference line (chance, zero) does not strike through it.
        ax.text(0.02, position, "not run", transform=ax.get_yaxis_transform(), color="0.45",
                fontsize="small", style="italic", va="center",
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5})


def _family_rules(ax: Axes, families: np.ndarray) -> None:
    """A rule between the MAML and the ProtoNet family, which the paper reports as separate tables."""
    for boundary in np.flatnonzero(families[1:] != families[:-1]):
        ax.axhline(boundary + 0.5, color="0.75", linewidth=0.8)


def title_with_note(figure: Figure, title: str, note: str | None) -> None:
    """The figure's title, and under it the note, where it is read first (the smoke preset's says what its
    numbers show), wrapped to the figure's width."""
    width = min(130, int(figure.get_figwidth() * 10))  # characters of a medium-size font per figure width
    figure.suptitle("\n".join([title, *textwrap.wrap(note or "", width)]))


def write_figure(figure: Figure, out_dir: Path, report: str, name: str = "figure") -> list[Path]:
    """The PDF and PNG of figure `name` of `kml report {report}` under out_dir (kml/layout.py, REPORTS)."""
    pdf, png = (report_path(out_dir, report, f"{name}_{ext}") for ext in ("pdf", "png"))
    # No creation date: the same results give byte-identical files (a rerun or a cluster run compares equal).
    figure.savefig(pdf, metadata={"CreationDate": None})
    figure.savefig(png, dpi=150)
    return [pdf, png]

