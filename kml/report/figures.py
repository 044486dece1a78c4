"""The accuracy figure: ours beside the paper for every cell, with confidence intervals."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from kml.config import METHODS
from kml.report.paper import KEYS, METHOD_LABELS, SETTING_LABELS, SETTINGS, paper_results

OURS_COLOR = "tab:blue"
PAPER_COLOR = "black"
OFFSET = 0.17  # vertical gap between our marker and the paper's for one method


def reproduction_figure(summary: pd.DataFrame, note: str | None = None) -> Figure:
    """Panels per (shots, setting); in each, the methods as rows, ours filled and the paper's hollow, ± CI."""
    paper = paper_results()
    grid = paper.merge(summary[[*KEYS, "accuracy", "ci95"]], on=KEYS, how="left", suffixes=("_paper", ""))
    shots = sorted(paper["shots"].unique())
    figure = Figure(figsize=(3.3 * len(SETTINGS) + 1.2, 2.8 * len(shots) + 1.3), layout="constrained")
    axes = figure.subplots(len(shots), len(SETTINGS), sharey=True, squeeze=False)
    rows = np.arange(len(METHODS))
    families = paper.drop_duplicates("method").set_index("method").loc[list(METHODS), "family"].to_numpy()
    for i, k in enumerate(shots):
        for j, setting in enumerate(SETTINGS):
            ax = axes[i, j]
            cell = (
                grid[(grid["setting"] == setting) & (grid["shots"] == k)]
                .set_index("method")
                .loc[list(METHODS)]
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
            # Said in place, so that a partial run is not read as a missing marker or a plotting fault.
            for row in rows[cell["accuracy"].isna().to_numpy()]:
                ax.text(
                    0.02,
                    row - OFFSET,
                    "not run",
                    transform=ax.get_yaxis_transform(),
                    color="0.45",
                    fontsize="small",
                    style="italic",
                    va="center",
                )
            # A rule between the MAML and the ProtoNet family, which the paper reports as separate tables.
            for boundary in np.flatnonzero(families[1:] != families[:-1]):
                ax.axhline(boundary + 0.5, color="0.75", linewidth=0.8)
            ax.set_title(f"{SETTING_LABELS[setting]}, {k}-shot")
            ax.grid(axis="x", alpha=0.3)
    axes[0, 0].set_yticks(rows, [METHOD_LABELS[m] for m in METHODS])
    axes[0, 0].invert_yaxis()  # the paper's method order, top to bottom
    for ax in axes[-1]:
        ax.set_xlabel("meta-test accuracy (%)")
    legend = [
        Line2D(
            [], [], marker="o", color=OURS_COLOR, label="this reproduction (mean ± 95% CI over test tasks)"
        ),
        Line2D(
            [], [], marker="o", color=PAPER_COLOR, markerfacecolor="white", label="paper (mean ± as reported)"
        ),
    ]
    figure.legend(handles=legend, loc="outside lower center", ncols=2, frameon=False)
    # The note goes under the title, where it is read first (the smoke preset's says what its numbers show).
    title = "Multimodal few-shot classification: this reproduction vs the KML paper (NeurIPS 2021)"
    figure.suptitle("\n".join([title, *textwrap.wrap(note or "", 130)]))
    return figure


def save_figure(figure: Figure, out_dir: Path, name: str) -> list[Path]:
    """out_dir/figures/{name}.pdf and .png."""
    pdf, png = (out_dir / "figures" / f"{name}.{ext}" for ext in ("pdf", "png"))
    pdf.parent.mkdir(parents=True, exist_ok=True)
    # No creation date: the same results give byte-identical files (a rerun or a cluster run compares equal).
    figure.savefig(pdf, metadata={"CreationDate": None})
    figure.savefig(png, dpi=150)
    return [pdf, png]


def write_accuracy_figure(summary: pd.DataFrame, out_dir: Path, note: str | None = None) -> list[Path]:
    """DIR/figures/reproduction.pdf and .png."""
    return save_figure(reproduction_figure(summary, note), out_dir, "reproduction")
