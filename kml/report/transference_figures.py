"""The transference figures, from the analysis's rows and summary (kml/report/transference.py):

    DIR/figures/transference_histograms.{pdf,png}     LR histogram per method and shots at the last snapshot,
                                                      pooled over the targets, self-transference marked,
                                                      positive / neutral / negative bars (ours and the
                                                      paper's)
    DIR/figures/transference_checkpoints.{pdf,png}    the pooled histograms across training snapshots (rows:
                                                      methods, columns: snapshots; 1-shot and 5-shot overlaid)
    DIR/figures/transference_single_target.{pdf,png}  the paper's view: the same grid on the single target
                                                      task (SINGLE_TARGET) alone, sources counted
    DIR/figures/transference_per_target.{pdf,png}     each target's positive and negative fraction per method
                                                      and snapshot, the single target highlighted: whether the
                                                      single-target picture is typical
    DIR/figures/transference_kml.{pdf,png}            MMAML vs MMAML+KML and MProtoNet vs MProtoNet+KML:
                                                      histograms overlaid, and the positive fraction across
                                                      snapshots
"""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from kml.layout import TRANSFERENCE_FIGURES
from kml.method_table import METHOD_LABELS
from kml.report.figures import write_figure
from kml.report.transference import (
    OUTCOMES,
    SINGLE_TARGET,
    SNAPSHOT,
    analysis_in_words,
    target_fractions,
)

# The modulated methods and their KML counterparts, as the paper compares them.
KML_PAIRS = (("mmaml", "mmaml_kml"), ("mprotonet", "mprotonet_kml"))

# Figure styling.
HISTOGRAM_BINS = 50  # about the paper's bar width over its LR range
# The x range: a few extreme ratios (a large step on a sharply curved loss) would squeeze the rest into a bar
# or two; beyond it they are counted in the outermost bars, as the figures' titles say.
AXIS_QUANTILES = (0.02, 0.98)
OUTCOME_COLORS = {"positive": "#2ca02c", "neutral": "#b0b0b0", "negative": "#d62728"}
HISTOGRAM_COLOR = "#4c72b0"
SHOT_PALETTE = "tab10"  # one colour per shot count, in increasing order
SHOT_LINESTYLES = ("-", "--", ":", "-.")  # one line style per shot count, in increasing order
SHOT_MARKERS = ("o", "s", "^", "D")  # one marker per shot count, in increasing order
PAIR_COLORS = ("#7f7f7f", "#9467bd")  # the modulated method, its KML version
SELF_COLOR = "black"
MIN_LABELLED_PCT = 8  # bar segments narrower than this carry no percentage label
MIN_FIGURE_WIDTH = 9.0  # inches: room for the title and the legend
TITLE_CHARS_PER_INCH = 11  # how many title characters fit an inch at the title's font size
PCT_LIMITS = (-3, 103)  # a percentage axis, with room for markers and lines at 0 and 100 inside the frame
DODGE = 0.012  # horizontal offset between shot counts on an iteration axis, as a fraction of its range
STRIP_WIDTH = 0.16  # per-target figure: the half-width of one outcome's strip of target dots
SINGLE_TARGET_COLOR = "black"

X_LABEL = "loss ratio LR (target loss after / before)"


def _edges(ratios: pd.Series, band: float) -> tuple[float, float]:
    """The common histogram range: the central AXIS_QUANTILES of the ratios, always showing the neutral
    band."""
    low, high = ratios.quantile(list(AXIS_QUANTILES))
    return min(low, 1 - 2 * band), max(high, 1 + 2 * band)


def _histogram(ax: Axes, cross: pd.DataFrame, edges: tuple[float, float], color: str, label: str,
               filled: bool) -> None:
    """Sources per target (weights 1/n_targets; with several training seeds, per target and seed), ratios
    beyond the axis clipped into the outermost bars."""
    analysed = len(cross[["seed", "target_task"]].drop_duplicates())
    data = pd.DataFrame({"ratio": cross["ratio"].clip(*edges), "weight": 1 / analysed})
    style = ({"element": "bars", "alpha": 0.7, "linewidth": 0.3} if filled
             else {"element": "step", "fill": False, "linewidth": 1.4})
    sns.histplot(data=data, x="ratio", weights="weight", bins=HISTOGRAM_BINS, binrange=edges, ax=ax,
                 color=color, label=label, **style)
    ax.set_xlim(*edges)


def _panel(ax: Axes, band: float, title: str, x_label: bool,
           y_label: str = "source tasks per target") -> None:
    """The neutral band and LR = 1 behind the histograms, a title and the axis labels (after seaborn's)."""
    ax.axvspan(1 - band, 1 + band, color=OUTCOME_COLORS["neutral"], alpha=0.35, linewidth=0, zorder=0)
    ax.axvline(1, color="0.3", linewidth=0.8, linestyle=":", zorder=0)
    ax.set_title(title, fontsize="small")
    ax.set_xlabel(X_LABEL if x_label else "", fontsize="small")
    ax.set_ylabel(y_label, fontsize="small")


def _mark_self(ax: Axes, own: pd.DataFrame, edges: tuple[float, float], color: str) -> None:
    """The mean self-transference as a dashed line, each target's as a tick on the x axis (clipped as the
    bars)."""
    ax.axvline(np.clip(own["ratio"].mean(), *edges), color=color, linestyle="--", linewidth=1.2)
    ax.plot(own["ratio"].clip(*edges), np.zeros(len(own)), "|", color=color, markersize=9, clip_on=False)


def _not_run(ax: Axes) -> None:
    ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", color="0.45", style="italic")
    ax.set_axis_off()


def _outcome_bars(ax: Axes, bars: dict[str, pd.Series]) -> None:
    """Stacked horizontal 100% bars, one per label (ours, the paper's), percentages written on them."""
    labels = list(bars)
    for y, label in enumerate(labels):
        left = 0.0
        for outcome in OUTCOMES:
            width = bars[label][f"{outcome}_pct"]
            ax.barh(y, width, left=left, color=OUTCOME_COLORS[outcome], height=0.7)
            if width >= MIN_LABELLED_PCT:
                ax.text(left + width / 2, y, f"{width:.0f}%", ha="center", va="center", fontsize="x-small")
            left += width
    ax.set_yticks(range(len(labels)), labels, fontsize="small")
    ax.set_xlim(0, 100)
    ax.invert_yaxis()
    ax.set_xticks([])
    ax.spines[["top", "right", "bottom"]].set_visible(False)


def _outcome_fractions(row: pd.Series, prefix: str) -> pd.Series:
    """The positive / neutral / negative percentages of a summary row under `prefix` ("", "paper_", ...)."""
    return row[[f"{prefix}{o}_pct" for o in OUTCOMES]].rename(lambda c: c.removeprefix(prefix))


def _paper_bar(summary_row: pd.Series) -> dict[str, pd.Series]:
    if pd.isna(summary_row["paper_positive_pct"]):
        return {}
    return {"paper": _outcome_fractions(summary_row, "paper_")}


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(max(width, MIN_FIGURE_WIDTH), height), layout="constrained")


def _title(figure: Figure, what: str, summary: pd.DataFrame, note: str | None,
           histograms: bool = True) -> None:
    # The note goes under the title, where it is read first (the smoke preset's says its numbers show
    # nothing).
    width = int(figure.get_figwidth() * TITLE_CHARS_PER_INCH)
    described = analysis_in_words(summary) + "."
    if histograms:
        described += " Ratios beyond the x axis are counted in its outermost bars."
    lines = [*textwrap.wrap(what, width), *textwrap.wrap(described, width), *textwrap.wrap(note or "", width)]
    figure.suptitle("\n".join(lines), fontsize="medium")


def _band_handle(band: float) -> Patch:
    return Patch(color=OUTCOME_COLORS["neutral"], alpha=0.6,
                 label=f"neutral: |LR − 1| < {band:g} (shaded band)")


def _self_handle(color: str, whose: str, per_target: bool = True) -> Line2D:
    marks = "dashed, mean over targets; ticks, each target" if per_target else "dashed"
    return Line2D([], [], color=color, linestyle="--", marker="|" if per_target else None, markersize=9,
                  label=f"self-transference LR(j→j){whose}: {marks}")


def _legend(figure: Figure, handles: list, columns: int = 2) -> None:
    figure.legend(handles=handles, loc="outside lower center", ncols=columns, frameon=False, fontsize="small")


def _shot_colors(shots: list[int]) -> dict[int, tuple]:
    return dict(zip(shots, sns.color_palette(SHOT_PALETTE, len(shots))))


def _snapshot_rows(rows: pd.DataFrame, method: str, shots: int, iteration: int) -> pd.DataFrame:
    return rows[(rows["method"] == method) & (rows["shots"] == shots) & (rows["iteration"] == iteration)]


# ---- the figures -------------------------------------------------------------------------------------------

def histogram_figure(rows: pd.DataFrame, summary: pd.DataFrame, note: str | None = None) -> Figure:
    """Per (shots, method), at the method's last snapshot: LR histogram, self LR and the outcome bars."""
    last = summary.loc[summary.groupby(["method", "shots"], sort=False)["iteration"].idxmax()]
    methods, shots = list(dict.fromkeys(last["method"])), sorted(last["shots"].unique())
    band = summary["neutral_band"].iloc[0]
    chosen = rows.merge(last[SNAPSHOT], on=SNAPSHOT)
    edges = _edges(chosen["ratio"], band)
    figure = _new_figure(3.1 * len(methods) + 0.6, 3.6 * len(shots) + 1.8)
    grid = figure.add_gridspec(2 * len(shots), len(methods), height_ratios=[4, 1] * len(shots))
    with sns.axes_style("whitegrid"):
        for i, k in enumerate(shots):
            for j, method in enumerate(methods):
                ax, bar_ax = figure.add_subplot(grid[2 * i, j]), figure.add_subplot(grid[2 * i + 1, j])
                entry = last[(last["method"] == method) & (last["shots"] == k)]
                if entry.empty:
                    _not_run(ax)
                    bar_ax.set_axis_off()
                    continue
                row = entry.iloc[0]
                mine = chosen[(chosen["method"] == method) & (chosen["shots"] == k)]
                _histogram(ax, mine[~mine["self"]], edges, HISTOGRAM_COLOR, "", filled=True)
                _mark_self(ax, mine[mine["self"]], edges, SELF_COLOR)
                _panel(ax, band,
                       f"{METHOD_LABELS[method]}, {k}-shot\nafter {row['iteration']} training iterations",
                       x_label=True)
                _outcome_bars(bar_ax, {"ours": row, **_paper_bar(row)})
    _title(figure, "Transference: how one meta-update on a source task changes a target task's loss "
                   "(all targets pooled)", summary, note)
    outcome_handles = [Patch(color=OUTCOME_COLORS["positive"],
                             label="positive transfer: LR < 1 (share of sources)"),
                       _band_handle(band),
                       Patch(color=OUTCOME_COLORS["negative"], label="negative transfer: LR > 1")]
    _legend(figure, [*outcome_handles, _self_handle(SELF_COLOR, "")])
    return figure


def _fractions_text(snapshot: pd.DataFrame, prefix: str) -> str:
    """"1-shot 28 / 9 / 63 %" per shot count of a snapshot's summary rows, one per line."""
    return "\n".join(f"{k}-shot {' / '.join(str(int(row[f'{prefix}{o}_pct'])) for o in OUTCOMES)} %"
                     for k, (_, row) in zip(snapshot["shots"], snapshot.iterrows()))


def _snapshot_grid(rows: pd.DataFrame, summary: pd.DataFrame, target: int | None) -> Figure:
    """Rows: methods; columns: training snapshots; in each panel the shots' LR histograms overlaid, on every
    target pooled (`target` None) or on one target task alone."""
    methods = list(dict.fromkeys(summary["method"]))
    iterations, shots = sorted(summary["iteration"].unique()), sorted(summary["shots"].unique())
    colors = _shot_colors(shots)
    band = summary["neutral_band"].iloc[0]
    if target is not None:
        rows = rows[rows["target_task"] == target]
    edges = _edges(rows["ratio"], band)
    prefix = "" if target is None else "single_target_"
    figure = _new_figure(2.9 * len(iterations) + 0.8, 2.4 * len(methods) + 2.0)
    axes = figure.subplots(len(methods), len(iterations), squeeze=False)
    for i, method in enumerate(methods):
        for j, iteration in enumerate(iterations):
            ax = axes[i, j]
            snapshot = summary[(summary["method"] == method) & (summary["iteration"] == iteration)]
            if snapshot.empty:
                _not_run(ax)
                continue
            ax.grid(alpha=0.3)
            for k in snapshot["shots"]:
                mine = _snapshot_rows(rows, method, k, iteration)
                _histogram(ax, mine[~mine["self"]], edges, colors[k], "", filled=False)
                _mark_self(ax, mine[mine["self"]], edges, colors[k])
            _panel(ax, band, f"{METHOD_LABELS[method]}, iteration {iteration}", x_label=i == len(methods) - 1,
                   y_label="source tasks per target" if target is None else "source tasks")
            text = "positive / neutral / negative\n" + _fractions_text(snapshot, prefix)
            paper = snapshot.iloc[0]
            if not pd.isna(paper["paper_positive_pct"]):
                text += "\npaper " + " / ".join(f"{paper[f'paper_{o}_pct']:.0f}" for o in OUTCOMES) + " %"
            ax.text(0.02, 0.97, text, transform=ax.transAxes, va="top", fontsize="xx-small",
                    bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0})
    shot_handles = [Patch(facecolor="none", edgecolor=colors[k], linewidth=1.4, label=f"{k}-shot model")
                    for k in shots]
    _legend(figure, [*shot_handles, _band_handle(band),
                     _self_handle("0.4", " in its model's colour", per_target=target is None)])
    return figure


def checkpoint_figure(rows: pd.DataFrame, summary: pd.DataFrame, note: str | None = None) -> Figure:
    """Rows: methods; columns: training snapshots; in each panel the shots' LR histograms, targets pooled."""
    figure = _snapshot_grid(rows, summary, target=None)
    _title(figure, "Transference across training: LR histograms at each training snapshot "
                   "(all targets pooled; percentages: mean over targets)", summary, note)
    return figure


def single_target_figure(rows: pd.DataFrame, summary: pd.DataFrame, note: str | None = None) -> Figure:
    """The paper's view: every source's LR on one target task, per method and snapshot (shots overlaid)."""
    figure = _snapshot_grid(rows, summary, target=SINGLE_TARGET)
    classes = rows.loc[rows["target_task"] == SINGLE_TARGET, "target_classes"].iloc[0].replace("|", ", ")
    _title(figure, f"Transference on one target task, as in the paper: target task {SINGLE_TARGET}, "
                   f"the first of the fixed target set, chosen before any result ({classes})", summary, note)
    return figure


def per_target_figure(rows: pd.DataFrame, summary: pd.DataFrame, note: str | None = None) -> Figure:
    """Rows: shots; columns: methods; per snapshot, every target's positive and negative fraction as a dot,
    the single target highlighted and joined across snapshots, the mean over targets as a bar."""
    methods = list(dict.fromkeys(summary["method"]))
    iterations, shots = sorted(summary["iteration"].unique()), sorted(summary["shots"].unique())
    band = summary["neutral_band"].iloc[0]
    cross = rows[~rows["self"]]
    figure = _new_figure(2.6 * len(methods) + 0.8, 2.8 * len(shots) + 2.2)
    axes = figure.subplots(len(shots), len(methods), squeeze=False, sharey=True)
    offsets = {"positive": -STRIP_WIDTH - 0.05, "negative": STRIP_WIDTH + 0.05}
    for (i, k), (j, method) in itertools.product(enumerate(shots), enumerate(methods)):
        ax = axes[i, j]
        ax.grid(alpha=0.3, axis="y")
        single: dict[str, list[tuple[float, float]]] = {o: [] for o in offsets}
        for x, iteration in enumerate(iterations):
            mine = _snapshot_rows(cross, method, k, iteration)
            if mine.empty:
                continue
            fractions = target_fractions(mine, band)
            spread = (np.linspace(-STRIP_WIDTH, STRIP_WIDTH, len(fractions)) if len(fractions) > 1
                      else np.zeros(1))
            for outcome, offset in offsets.items():
                values = fractions[outcome]
                ax.scatter(x + offset + spread, values, s=9, color=OUTCOME_COLORS[outcome], alpha=0.6,
                           linewidth=0, zorder=2)
                ax.plot([x + offset - STRIP_WIDTH, x + offset + STRIP_WIDTH], [values.mean()] * 2,
                        color="black", linewidth=1.6, zorder=3)
                single[outcome].append((x + offset, values.loc[SINGLE_TARGET]))
        for outcome, points in single.items():
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, color=OUTCOME_COLORS[outcome], linestyle=":", linewidth=1, zorder=3)
                ax.scatter(xs, ys, s=42, marker="D", facecolor=OUTCOME_COLORS[outcome],
                           edgecolor=SINGLE_TARGET_COLOR, linewidth=1.2, zorder=4)
        ax.set_xticks(range(len(iterations)), [str(n) for n in iterations], fontsize="small")
        ax.set_xlim(-0.6, len(iterations) - 0.4)
        ax.set_ylim(*PCT_LIMITS)
        ax.set_title(f"{METHOD_LABELS[method]}, {k}-shot", fontsize="small")
        ax.set_xlabel("training iteration of the snapshot", fontsize="small")
        if j == 0:
            ax.set_ylabel("% of source tasks, per target", fontsize="small")
    _title(figure, "Transference per target task: is the single-target picture typical?", summary, note,
           histograms=False)
    dot = {"marker": "o", "linestyle": "none", "markersize": 4}
    _legend(figure, [
        Line2D([], [], color=OUTCOME_COLORS["positive"],
               label="positive transfer (LR < 1), one dot per target", **dot),
        Line2D([], [], color=OUTCOME_COLORS["negative"],
               label="negative transfer (LR > 1), one dot per target", **dot),
        Line2D([], [], marker="D", linestyle=":", color="0.5", markeredgecolor=SINGLE_TARGET_COLOR,
               label=f"target task {SINGLE_TARGET}: the single-target view's"),
        Line2D([], [], color="black", linewidth=1.6, label="mean over targets"),
    ])
    return figure


def _positive_across_training(ax: Axes, summary: pd.DataFrame, pair: tuple[str, str],
                              shots: list[int]) -> None:
    """The pair's positive fraction (± 95% CI over targets, or over seeds × targets for a model of several
    training seeds; clipped to [0, 100]) across snapshots."""
    iterations = sorted(summary.loc[summary["method"].isin(pair), "iteration"].unique())
    span = (max(iterations) - min(iterations)) or max(iterations)
    for (m, (method, color)), (s, (k, linestyle, marker)) in itertools.product(
            enumerate(zip(pair, PAIR_COLORS)), enumerate(zip(shots, itertools.cycle(SHOT_LINESTYLES),
                                                             itertools.cycle(SHOT_MARKERS)))):
        line = summary[(summary["method"] == method) & (summary["shots"] == k)]
        if line.empty:
            continue
        # Side by side, so that intervals at one iteration do not hide each other.
        dodge = (2 * m + s - (len(pair) * len(shots) - 1) / 2) * DODGE * span
        mean, ci = line["positive_pct"], line["positive_ci95_pct"].fillna(0)
        low, high = np.minimum(ci, mean), np.minimum(ci, 100 - mean)
        ax.errorbar(line["iteration"] + dodge, mean, yerr=[low, high], color=color, marker=marker,
                    markerfacecolor="white" if s else color, capsize=2, linestyle=linestyle, linewidth=1.4,
                    label=f"{METHOD_LABELS[method]}, {k}-shot", clip_on=False)
    ax.set_xticks(iterations, [str(n) for n in iterations])
    ax.set_title("share of sources with positive transfer across training", fontsize="small")
    ax.set_xlabel("training iteration of the snapshot", fontsize="small")
    seeded = (summary.loc[summary["method"].isin(pair), "n_seeds"] > 1).any()
    over = "seeds × targets" if seeded else "targets"
    ax.set_ylabel(f"positive transfer (% of sources,\nmean ± 95% CI over {over})", fontsize="small")
    ax.set_ylim(*PCT_LIMITS)
    ax.legend(fontsize="x-small", handlelength=3.5)


def kml_figure(rows: pd.DataFrame, summary: pd.DataFrame, note: str | None = None) -> Figure:
    """Each modulated method against its KML version: histograms at the last snapshot per shots, and the
    positive fraction (± 95% CI over targets) across training."""
    pairs = [pair for pair in KML_PAIRS if summary["method"].isin(pair).any()]
    shots = sorted(summary["shots"].unique())
    band = summary["neutral_band"].iloc[0]
    figure = _new_figure(5.0 * len(pairs) + 0.6, 2.7 * (len(shots) + 1) + 2.0)
    title = "Transference: modulated methods with and without kernel modulation (KML)"
    if not pairs:
        figure.text(0.5, 0.5,
                    "Neither a modulated method (MMAML, MProtoNet) nor its KML version was analysed.",
                    ha="center", va="center")
        _title(figure, title, summary, note)
        return figure
    last = summary.loc[summary.groupby(["method", "shots"], sort=False)["iteration"].idxmax()]
    shown = rows.merge(last.loc[last["method"].isin([m for pair in pairs for m in pair]), SNAPSHOT],
                       on=SNAPSHOT)
    edges = _edges(shown["ratio"], band)
    axes = figure.subplots(len(shots) + 1, len(pairs), squeeze=False)
    for j, pair in enumerate(pairs):
        for i, k in enumerate(shots):
            ax = axes[i, j]
            if not ((summary["method"].isin(pair)) & (summary["shots"] == k)).any():
                _not_run(ax)
                continue
            ax.grid(alpha=0.3)
            for method, color in zip(pair, PAIR_COLORS):
                at = summary[(summary["method"] == method) & (summary["shots"] == k)]
                if at.empty:
                    continue
                row = at.loc[at["iteration"].idxmax()]
                mine = _snapshot_rows(rows, method, k, row["iteration"])
                _histogram(ax, mine[~mine["self"]], edges, color,
                           f"{METHOD_LABELS[method]} (iteration {row['iteration']}): "
                           f"{row['positive_pct']:.0f}% positive", filled=False)
                _mark_self(ax, mine[mine["self"]], edges, color)
            _panel(ax, band, f"{' vs '.join(METHOD_LABELS[m] for m in pair)}, {k}-shot, last snapshot",
                   x_label=True)
            ax.legend(fontsize="x-small", loc="upper left")
        ax = axes[-1, j]
        ax.grid(alpha=0.3)
        _positive_across_training(ax, summary, pair, shots)
    _title(figure, title, summary, note)
    _legend(figure, [_band_handle(band), _self_handle("0.4", " in its model's colour")])
    return figure


MAKERS = {"histograms": histogram_figure, "checkpoints": checkpoint_figure,
          "single_target": single_target_figure, "per_target": per_target_figure, "kml": kml_figure}


def write_transference_figures(rows: pd.DataFrame, summary: pd.DataFrame, out_dir: Path,
                               note: str | None = None) -> list[Path]:
    """Every figure of layout.TRANSFERENCE_FIGURES, as out_dir/figures/transference_{name}.{pdf,png}."""
    return [path for name in TRANSFERENCE_FIGURES
            for path in write_figure(MAKERS[name](rows, summary, note), out_dir, "transference", name)]
