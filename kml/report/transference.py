"""The transference report (`kml report transference CSV... --out-dir DIR`): summary, table and figures.

Reads the per-snapshot CSVs of `kml transference` (kml/transference.py, CSV_COLUMNS) and writes

    DIR/transference/summary.csv            per method, shots and snapshot: positive / neutral / negative
                                            fractions (mean and 95% CI over targets), median LR, self LR,
                                            and the paper's fractions beside them where it reports them
    DIR/tables/transference.tex             the fractions as a booktabs table
    DIR/figures/transference_histograms.{pdf,png}   LR histogram per method and shots at the last snapshot,
                                            self-transference marked, positive / neutral / negative bars
                                            (ours and the paper's)
    DIR/figures/transference_checkpoints.{pdf,png}  the histograms across training snapshots (rows: methods,
                                            columns: snapshots; 1-shot and 5-shot overlaid)
    DIR/figures/transference_kml.{pdf,png}  MMAML vs MMAML+KML and MProtoNet vs MProtoNet+KML: histograms
                                            overlaid, and the positive fraction across snapshots

Outcome of a (source, target) pair: neutral when |LR − 1| < neutral_band (read from the CSVs, i.e.
transference.neutral_band), else positive (LR < 1) or negative (LR > 1). Fractions are taken per target
over its sources, then averaged over targets; the 95% CI is 1.96 · std / √n_targets (population std, as
the accuracy CIs), undefined (empty) with a single target. Self rows (a lookahead on the target itself) are
reported apart and never counted among the sources.

The paper reports one set of fractions (project page teaser: ProtoNet, MProtoNet, MProtoNet+KML, 300
mini-ImageNet sources, one FC100 target) without saying the shots or the training stage, so its numbers
stand beside every row of those methods and `paper_note` says so.
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

from kml import KmlError
from kml.methods.table import METHOD_LABELS, METHOD_NAMES
from kml.report.csvfiles import read_checked_csv
from kml.report.paper import transference_reference
from kml.report.tables import caption_with_note, escape_latex, table_float
from kml.transference import CSV_COLUMNS

SNAPSHOT = ["method", "shots", "iteration"]  # one CSV per snapshot: its identity
# Per-file constants carried into the summary.
DESCRIPTION = ["setting", "lookahead", "lookahead_params", "sgd_lr", "neutral_band", "source_mode", "target_mode"]
OUTCOMES = ("positive", "neutral", "negative")
SUMMARY_COLUMNS = [
    "setting", *SNAPSHOT, *DESCRIPTION[1:], "n_sources", "n_targets",
    *(f"{o}{suffix}" for o in OUTCOMES for suffix in ("_pct", "_ci95_pct")),
    "median_ratio", "self_ratio", "self_ratio_ci95",
    *(f"paper_{o}_pct" for o in OUTCOMES), "paper_note",
]
Z95 = 1.96
FIGURES = ("histograms", "checkpoints", "kml")
# The modulated methods and their KML counterparts, as the paper compares them.
KML_PAIRS = (("mmaml", "mmaml_kml"), ("mprotonet", "mprotonet_kml"))
MODE_LABELS = {"omniglot": "Omniglot", "miniimagenet": "mini-ImageNet", "fc100": "FC100", "cub": "CUB",
               "aircraft": "Aircraft"}
LOOKAHEAD_LABELS = {"adam": "one step of the training's Adam (state from the snapshot)",
                    "sgd": "one plain SGD step"}
PARAMS_LABELS = {"all": "base and modulation networks", "base": "base network only"}

# Figure styling.
HISTOGRAM_BINS = 50  # about the paper's bar width over its LR range
AXIS_QUANTILES = (0.005, 0.995)  # the x range; ratios beyond it are counted in the outermost bars
OUTCOME_COLORS = {"positive": "#2ca02c", "neutral": "#b0b0b0", "negative": "#d62728"}
HISTOGRAM_COLOR = "#4c72b0"
SHOT_PALETTE = "tab10"  # one colour per shot count, in increasing order
SHOT_LINESTYLES = ("-", "--", ":", "-.")  # one line style per shot count, in increasing order
PAIR_COLORS = ("#7f7f7f", "#9467bd")  # the modulated method, its KML version
SELF_COLOR = "black"
MIN_LABELLED_PCT = 8  # bar segments narrower than this carry no percentage label
MIN_FIGURE_WIDTH = 9.0  # inches: room for the title and the legend
TITLE_CHARS_PER_INCH = 11  # how many title characters fit an inch at the title's font size


# ---- reading and summarising ----------------------------------------------------------------------------------

def read_transference(paths: list[Path]) -> pd.DataFrame:
    """All rows of the given CSVs, each checked against the contract; a KmlError names the bad file."""
    frames = []
    for path in map(Path, paths):
        frame = read_checked_csv(path, CSV_COLUMNS, "transference CSV (`kml transference`)")
        if frame.empty or frame[SNAPSHOT].drop_duplicates().shape[0] != 1:
            raise KmlError(f"{path}: a transference CSV holds the rows of exactly one (method, shots, iteration)")
        if not frame["ratio"].gt(0).all():
            raise KmlError(f"{path}: every loss ratio must be a positive number")
        frames.append(frame.assign(file=str(path)))
    rows = pd.concat(frames, ignore_index=True)
    files = rows.drop_duplicates("file")
    repeated = files[files.duplicated(SNAPSHOT, keep=False)]
    if not repeated.empty:
        raise KmlError(f"{' and '.join(repeated['file'])}: the same (method, shots, iteration) is given twice")
    # One report describes one analysis: its figures and caption state these once.
    for column in DESCRIPTION[1:]:
        values = files[column].astype(str).unique()  # as text, so that two empty sgd_lr (NaN) compare equal
        if len(values) > 1:
            raise KmlError(f"{column}: the CSVs differ ({', '.join(map(str, values))}); report each analysis apart")
    return rows.drop(columns="file").astype({"self": bool, "shots": int, "iteration": int})


def outcomes(ratios: pd.Series, band: float) -> pd.Series:
    """positive / neutral / negative of each ratio."""
    return pd.Series(np.where((ratios - 1).abs() < band, "neutral", np.where(ratios < 1, "positive", "negative")),
                     index=ratios.index)


def ci95(values: pd.Series) -> float:
    """1.96 · population std / √n; NaN for fewer than two values (no spread to estimate)."""
    return Z95 * values.std(ddof=0) / np.sqrt(len(values)) if len(values) > 1 else float("nan")


def _paper_numbers() -> pd.DataFrame:
    paper = transference_reference().rename(columns={"model": "method"})
    paper = paper.rename(columns={f"{o}_pct": f"paper_{o}_pct" for o in OUTCOMES})
    paper["paper_note"] = paper["source"].str.cat(
        ["; shots and training stage not stated, so repeated on every row of the method"] * len(paper))
    return paper.drop(columns="source")


def summarize_transference(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per snapshot (method, shots, iteration); columns SUMMARY_COLUMNS, in the paper's method order."""
    records = []
    for snapshot, group in rows.groupby(SNAPSHOT, sort=False):
        cross, own = group[~group["self"]], group[group["self"]]
        record = {**dict(zip(SNAPSHOT, snapshot)), **group.iloc[0][DESCRIPTION].to_dict()}
        kinds = outcomes(cross["ratio"], record["neutral_band"])
        per_target = 100 * pd.crosstab(cross["target_task"], kinds, normalize="index").reindex(
            columns=list(OUTCOMES), fill_value=0.0)
        for outcome in OUTCOMES:
            record[f"{outcome}_pct"] = per_target[outcome].mean()
            record[f"{outcome}_ci95_pct"] = ci95(per_target[outcome])
        record.update(n_sources=cross["source_task"].nunique(), n_targets=len(per_target),
                      median_ratio=cross["ratio"].median(), self_ratio=own["ratio"].mean(),
                      self_ratio_ci95=ci95(own["ratio"]))
        records.append(record)
    summary = pd.DataFrame(records).merge(_paper_numbers(), on="method", how="left")
    summary["paper_note"] = summary["paper_note"].fillna("the paper reports no transference numbers for this method")
    order = {method: i for i, method in enumerate(METHOD_NAMES)}
    summary = summary.sort_values(SNAPSHOT, key=lambda c: c.map(order) if c.name == "method" else c)
    return summary[SUMMARY_COLUMNS].reset_index(drop=True)


# ---- table --------------------------------------------------------------------------------------------------

def _pct(mean: float, ci: float) -> str:
    if pd.isna(ci):
        return f"{mean:.0f}"
    return rf"{mean:.0f} {{\scriptsize $\pm$ {ci:.0f}}}"


def _paper_cell(row: pd.Series) -> str:
    if pd.isna(row["paper_positive_pct"]):
        return "--"
    return "/".join(f"{row[f'paper_{o}_pct']:.0f}" for o in OUTCOMES)


def _what(summary: pd.DataFrame) -> str:
    """What was measured, in words, from the summary's descriptive columns (plain text)."""
    first = summary.iloc[0]
    lookahead = LOOKAHEAD_LABELS[first["lookahead"]]
    if first["lookahead"] == "sgd":
        lookahead += f" of size {first['sgd_lr']:g}"
    return (f"{summary['n_sources'].max()} {MODE_LABELS[first['source_mode']]} meta-train source tasks, "
            f"{summary['n_targets'].max()} {MODE_LABELS[first['target_mode']]} meta-test target tasks; "
            f"lookahead: {lookahead} on the {PARAMS_LABELS[first['lookahead_params']]}")


def transference_table(summary: pd.DataFrame, note: str | None = None) -> str:
    """The fractions per method, shots and snapshot, with the paper's beside them (booktabs)."""
    body, previous = [], None
    for _, row in summary.iterrows():
        if previous not in (None, row["method"]):
            body.append(r"\midrule")
        label = METHOD_LABELS[row["method"]] if row["method"] != previous else ""
        cells = [_pct(row[f"{o}_pct"], row[f"{o}_ci95_pct"]) for o in OUTCOMES]
        body.append(" & ".join([label, f"{row['shots']}", f"{row['iteration']}", *cells, f"{row['self_ratio']:.3f}",
                                _paper_cell(row)]) + r" \\")
        previous = row["method"]
    band = summary["neutral_band"].iloc[0]
    caption = caption_with_note(
        r"Transference: share of source tasks (\%) whose one-task lookahead update lowers (positive), leaves "
        rf"within $\pm${band:g} (neutral) or raises (negative) a target task's query loss, i.e. loss ratio "
        r"LR $<$ 1, $|$LR$-$1$|<$" + f"{band:g}" + r", LR $>$ 1; mean $\pm$ 95\% CI over target tasks. "
        + escape_latex(_what(summary)) + r". Iter.: training iterations of the snapshot. "
        r"Self LR: LR of a lookahead on the target task itself (mean over targets). "
        r"Paper: positive / neutral / negative from the project page figure (one target, shots and training "
        r"stage not stated, so repeated on every row).",
        note,
    )
    header = ["Method", "Shots", "Iter.", "Positive", "Neutral", "Negative", "Self LR", "Paper"]
    return table_float("transference", caption, "lrrccccc", header, body)


# ---- figures ------------------------------------------------------------------------------------------------

X_LABEL = "loss ratio LR (target loss after / before)"
Y_LABEL = "source tasks per target"


def _edges(ratios: pd.Series, band: float) -> tuple[float, float]:
    """The common histogram range: the central AXIS_QUANTILES of the ratios, always showing the neutral band."""
    low, high = ratios.quantile(list(AXIS_QUANTILES))
    return min(low, 1 - 2 * band), max(high, 1 + 2 * band)


def _histogram(ax: Axes, cross: pd.DataFrame, edges: tuple[float, float], color: str, label: str,
               filled: bool) -> None:
    """Sources per target (weights 1/n_targets), ratios beyond the axis clipped into the outermost bars."""
    data = pd.DataFrame({"ratio": cross["ratio"].clip(*edges), "weight": 1 / cross["target_task"].nunique()})
    style = {"element": "bars", "alpha": 0.7, "linewidth": 0.3} if filled else {"element": "step", "fill": False,
                                                                              "linewidth": 1.4}
    sns.histplot(data=data, x="ratio", weights="weight", bins=HISTOGRAM_BINS, binrange=edges, ax=ax, color=color,
                 label=label, **style)
    ax.set_xlim(*edges)


def _panel(ax: Axes, band: float, title: str, x_label: bool) -> None:
    """The neutral band and LR = 1 behind the histograms, a title and the axis labels (after seaborn's)."""
    ax.axvspan(1 - band, 1 + band, color=OUTCOME_COLORS["neutral"], alpha=0.35, linewidth=0, zorder=0)
    ax.axvline(1, color="0.3", linewidth=0.8, linestyle=":", zorder=0)
    ax.set_title(title, fontsize="small")
    ax.set_xlabel(X_LABEL if x_label else "", fontsize="small")
    ax.set_ylabel(Y_LABEL, fontsize="small")


def _mark_self(ax: Axes, own: pd.DataFrame, edges: tuple[float, float], color: str) -> None:
    """The mean self-transference as a dashed line, each target's as a tick on the x axis (clipped as the bars)."""
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


def _paper_bar(summary_row: pd.Series) -> dict[str, pd.Series]:
    if pd.isna(summary_row["paper_positive_pct"]):
        return {}
    return {"paper": summary_row[[f"paper_{o}_pct" for o in OUTCOMES]].rename(lambda c: c.removeprefix("paper_"))}


def _new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(max(width, MIN_FIGURE_WIDTH), height), layout="constrained")


def _title(figure: Figure, what: str, summary: pd.DataFrame, note: str | None) -> None:
    # The note goes under the title, where it is read first (the smoke preset's says its numbers show nothing).
    width = int(figure.get_figwidth() * TITLE_CHARS_PER_INCH)
    described = f"{_what(summary)}. Ratios beyond the x axis are counted in its outermost bars."
    lines = [what, *textwrap.wrap(described, width), *textwrap.wrap(note or "", width)]
    figure.suptitle("\n".join(lines), fontsize="medium")


def _band_handle(band: float) -> Patch:
    return Patch(color=OUTCOME_COLORS["neutral"], alpha=0.6, label=f"neutral: |LR − 1| < {band:g} (shaded band)")


def _self_handle(color: str, whose: str) -> Line2D:
    return Line2D([], [], color=color, linestyle="--", marker="|", markersize=9,
                  label=f"self-transference LR(j→j){whose}: dashed, mean over targets; ticks, each target")


def _legend(figure: Figure, handles: list) -> None:
    figure.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False, fontsize="small")


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
                _panel(ax, band, f"{METHOD_LABELS[method]}, {k}-shot\nafter {row['iteration']} training iterations",
                       x_label=True)
                _outcome_bars(bar_ax, {"ours": row, **_paper_bar(row)})
    _title(figure, "Transference: how one meta-update on a source task changes a target task's loss", summary, note)
    outcome_handles = [Patch(color=OUTCOME_COLORS["positive"], label="positive transfer: LR < 1 (share of sources)"),
                       _band_handle(band),
                       Patch(color=OUTCOME_COLORS["negative"], label="negative transfer: LR > 1")]
    _legend(figure, [*outcome_handles, _self_handle(SELF_COLOR, "")])
    return figure


def checkpoint_figure(rows: pd.DataFrame, summary: pd.DataFrame, note: str | None = None) -> Figure:
    """Rows: methods; columns: training snapshots; in each panel the shots' LR histograms overlaid."""
    methods = list(dict.fromkeys(summary["method"]))
    iterations, shots = sorted(summary["iteration"].unique()), sorted(summary["shots"].unique())
    colors = dict(zip(shots, sns.color_palette(SHOT_PALETTE, len(shots))))
    band = summary["neutral_band"].iloc[0]
    edges = _edges(rows["ratio"], band)
    figure = _new_figure(2.9 * len(iterations) + 0.8, 2.3 * len(methods) + 2.0)
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
                mine = rows[(rows["method"] == method) & (rows["shots"] == k) & (rows["iteration"] == iteration)]
                _histogram(ax, mine[~mine["self"]], edges, colors[k], "", filled=False)
                _mark_self(ax, mine[mine["self"]], edges, colors[k])
            _panel(ax, band, f"{METHOD_LABELS[method]}, iteration {iteration}", x_label=i == len(methods) - 1)
            positives = ", ".join(f"{k}-shot {p:.0f}%" for k, p in zip(snapshot["shots"], snapshot["positive_pct"]))
            ax.text(0.02, 0.97, f"positive: {positives}", transform=ax.transAxes, va="top", fontsize="x-small",
                    bbox={"facecolor": "white", "alpha": 0.8, "linewidth": 0})
    _title(figure, "Transference across training: LR histograms at each training snapshot", summary, note)
    shot_handles = [Patch(facecolor="none", edgecolor=colors[k], linewidth=1.4, label=f"{k}-shot model")
                    for k in shots]
    _legend(figure, [*shot_handles, _band_handle(band), _self_handle("0.4", " in its model's colour")])
    return figure


def kml_figure(rows: pd.DataFrame, summary: pd.DataFrame, note: str | None = None) -> Figure:
    """Each modulated method against its KML version: histograms at the last snapshot per shots, and the
    positive fraction (± 95% CI over targets) across training."""
    pairs = [pair for pair in KML_PAIRS if summary["method"].isin(pair).any()]
    shots = sorted(summary["shots"].unique())
    band = summary["neutral_band"].iloc[0]
    figure = _new_figure(5.0 * len(pairs) + 0.6, 2.7 * (len(shots) + 1) + 2.0)
    title = "Transference: modulated methods with and without kernel modulation (KML)"
    if not pairs:
        figure.text(0.5, 0.5, "Neither a modulated method (MMAML, MProtoNet) nor its KML version was analysed.",
                    ha="center", va="center")
        _title(figure, title, summary, note)
        return figure
    edges = _edges(rows[rows["method"].isin([m for pair in pairs for m in pair])]["ratio"], band)
    axes = figure.subplots(len(shots) + 1, len(pairs), squeeze=False)
    for j, pair in enumerate(pairs):
        for i, k in enumerate(shots):
            ax = axes[i, j]
            ax.grid(alpha=0.3)
            for method, color in zip(pair, PAIR_COLORS):
                at = summary[(summary["method"] == method) & (summary["shots"] == k)]
                if at.empty:
                    continue
                row = at.loc[at["iteration"].idxmax()]
                mine = rows[(rows["method"] == method) & (rows["shots"] == k) & (rows["iteration"] == row["iteration"])]
                _histogram(ax, mine[~mine["self"]], edges, color,
                           f"{METHOD_LABELS[method]} (iteration {row['iteration']}): {row['positive_pct']:.0f}% "
                           "positive", filled=False)
                _mark_self(ax, mine[mine["self"]], edges, color)
            _panel(ax, band, f"{' vs '.join(METHOD_LABELS[m] for m in pair)}, {k}-shot, last snapshot", x_label=True)
            ax.legend(fontsize="x-small", loc="upper left")
        ax = axes[-1, j]
        ax.grid(alpha=0.3)
        for method, color in zip(pair, PAIR_COLORS):
            for k, linestyle in zip(shots, itertools.cycle(SHOT_LINESTYLES)):
                line = summary[(summary["method"] == method) & (summary["shots"] == k)]
                if not line.empty:
                    ax.errorbar(line["iteration"], line["positive_pct"], yerr=line["positive_ci95_pct"], color=color,
                                marker="o", capsize=2, linestyle=linestyle, label=f"{METHOD_LABELS[method]}, {k}-shot")
        ax.set_title("share of sources with positive transfer across training", fontsize="small")
        ax.set_xlabel("training iteration of the snapshot", fontsize="small")
        ax.set_ylabel("positive transfer (% of sources,\nmean ± 95% CI over targets)", fontsize="small")
        ax.set_ylim(0, 100)
        ax.legend(fontsize="x-small")
    _title(figure, title, summary, note)
    _legend(figure, [_band_handle(band), _self_handle("0.4", " in its model's colour")])
    return figure


# ---- writing ------------------------------------------------------------------------------------------------

def report_transference(csvs: list[Path], out_dir: Path, note: str | None = None) -> list[Path]:
    """`kml report transference`: the summary, the table and the three figures (PDF and PNG) under out_dir."""
    out_dir = Path(out_dir)
    rows = read_transference(csvs)
    summary = summarize_transference(rows)
    summary_path = out_dir / "transference" / "summary.csv"
    table_path = out_dir / "tables" / "transference.tex"
    for path in (summary_path, table_path, out_dir / "figures" / "_"):
        path.parent.mkdir(parents=True, exist_ok=True)
    summary.to_csv(summary_path, index=False)
    table_path.write_text(transference_table(summary, note))
    written = [summary_path, table_path]
    makers = {"histograms": histogram_figure, "checkpoints": checkpoint_figure, "kml": kml_figure}
    for name in FIGURES:
        figure = makers[name](rows, summary, note)
        pdf, png = (out_dir / "figures" / f"transference_{name}.{ext}" for ext in ("pdf", "png"))
        # No creation date: the same results give byte-identical files (the workflow compares runs).
        figure.savefig(pdf, metadata={"CreationDate": None})
        figure.savefig(png, dpi=150)
        written += [pdf, png]
    return written
