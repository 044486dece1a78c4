"""The step-size sweep's report (`kml report step-size CSV... --out-dir DIR`), from
`kml transference --sweep`:

    DIR/transference/step_size_sweep.csv          per method, shots, snapshot and step size α: the outcome
                                                  fractions, the median |LR − 1|, the share of pairs lost in
                                                  float32 rounding and the slope ratio (below)
    DIR/figures/transference_step_size.{pdf,png}  all of it against α, per method

What a good α looks like (docs/transference.md): LR − 1 far above float32 rounding for most pairs, and still
in the first-order regime, where LR − 1 = −α·∇L_i·∇L_j / L_j + O(α²) is proportional to α. Per pair,
(LR(α) − 1)/α is then a constant, its slope. The reference α is the smallest α of the grid at which fewer than
MAX_ROUNDING_PCT % of pairs are within ROUNDING_LEVEL of 1 (there the slope is measured, not rounded). Two
read-outs compare each α with it: `slope_ratio`, the median over pairs of the slope at α over the slope at the
reference (1 while the bulk of LR − 1 grows in proportion to α), and `first_order_outcome_pct`, the share of
pairs whose outcome (positive, neutral, negative) at α is the one the first-order extrapolation
1 + α·slope(reference) gives (100 while curvature changes no reading; pairs whose first-order term is small,
near the neutral band's edges, are the first to change). A row is `first_order` when rounding spoils fewer
than MAX_ROUNDING_PCT % of its pairs, its slope ratio is within LINEARITY_TOLERANCE of 1 and at least
MIN_FIRST_ORDER_OUTCOME_PCT % of its pairs keep their first-order outcome.

`recommended` marks, per family, the α the rule behind transference.step_size gives: the largest α at which
every analysed method, shot count and snapshot of the family is first order; where there is none (the
first-order regime ends before LR − 1 is measurable in float32, as for the MAML family in
docs/transference.md), the smallest α at which all of them are measurable (rounding spoils fewer than
MAX_ROUNDING_PCT % of pairs), where curvature and the loss's non-smoothness weigh least.
"""

from __future__ import annotations

import itertools
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from kml.layout import report_path
from kml.method_table import FAMILY_LABELS, METHOD_LABELS, METHOD_NAMES, method_spec
from kml.report.figures import write_figure
from kml.report.transference import (
    MODE_LABELS,
    OUTCOMES,
    SNAPSHOT,
    outcomes,
    read_ratio_csvs,
    target_fractions,
)

# |LR − 1| below this is within ~100 float32 ulps of 1: the rounding of the two losses is then more than about
# 1 % of the change they measure.
ROUNDING_LEVEL = 1e-5
MAX_ROUNDING_PCT = 5.0
LINEARITY_TOLERANCE = 0.1
MIN_FIRST_ORDER_OUTCOME_PCT = 90.0
SWEEP_COLUMNS = ["setting", *SNAPSHOT, "family", "step_size", "n_sources", "n_targets",
                 *(f"{o}_pct" for o in OUTCOMES), "median_abs_change", "rounding_pct", "reference_step_size",
                 "slope_ratio", "first_order_outcome_pct", "first_order", "recommended"]

SHOT_LINESTYLES = ("-", "--", ":", "-.")
METHOD_PALETTE = "tab10"
FIRST_ORDER_SHADE = {"color": "#b0b0b0", "alpha": 0.35, "linewidth": 0, "zorder": 0}


def _snapshot_sweep(cross: pd.DataFrame) -> pd.DataFrame:
    """One snapshot's rows per step size: fractions, median |LR − 1|, rounding share and the first-order
    read-outs (module docstring)."""
    band = cross["neutral_band"].iloc[0]
    records = []
    for alpha, at in cross.groupby("step_size", sort=True):
        change = at["ratio"] - 1
        fractions = target_fractions(at, band).mean()
        records.append({"step_size": alpha, "n_sources": at["source_task"].nunique(),
                        "n_targets": at["target_task"].nunique(),
                        **{f"{o}_pct": round(fractions[o], 1) for o in OUTCOMES},
                        "median_abs_change": change.abs().median(),
                        "rounding_pct": round(100 * (change.abs() < ROUNDING_LEVEL).mean(), 1)})
    sweep = pd.DataFrame(records)
    measured = sweep.loc[sweep["rounding_pct"] < MAX_ROUNDING_PCT, "step_size"]
    reference = measured.min() if len(measured) else np.nan
    sweep["reference_step_size"] = reference
    sweep["slope_ratio"] = sweep["first_order_outcome_pct"] = np.nan
    if not np.isnan(reference):
        changes = cross.pivot_table(index=["source_task", "target_task"], columns="step_size",
                                    values="ratio") - 1
        slopes = changes.div(changes.columns.to_numpy(), axis=1)
        extrapolated = pd.DataFrame(np.outer(slopes[reference], changes.columns), index=changes.index,
                                    columns=changes.columns)
        kept = outcomes(1 + changes.stack(), band) == outcomes(1 + extrapolated.stack(), band)
        at = sweep["step_size"]
        sweep["slope_ratio"] = slopes.div(slopes[reference], axis=0).median().reindex(at).to_numpy()
        sweep["first_order_outcome_pct"] = ((100 * kept.groupby(level="step_size").mean()).round(1)
                                            .reindex(at).to_numpy())
    sweep["first_order"] = ((sweep["rounding_pct"] < MAX_ROUNDING_PCT)
                            & ((sweep["slope_ratio"] - 1).abs() <= LINEARITY_TOLERANCE)
                            & (sweep["first_order_outcome_pct"] >= MIN_FIRST_ORDER_OUTCOME_PCT))
    return sweep


def summarize_sweep(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (method, shots, iteration, step size); columns SWEEP_COLUMNS, in the paper's method
    order."""
    cross = rows[~rows["self"]]
    parts = [_snapshot_sweep(group).assign(setting=group["setting"].iloc[0], method=method, shots=shots,
                                           iteration=iteration, family=method_spec(method).family)
             for (method, shots, iteration), group in cross.groupby(SNAPSHOT, sort=False)]
    sweep = pd.concat(parts, ignore_index=True)
    sweep["recommended"] = sweep["step_size"] == sweep["family"].map(recommended_step_sizes(sweep))
    order = {method: i for i, method in enumerate(METHOD_NAMES)}
    sweep = sweep.sort_values([*SNAPSHOT, "step_size"],
                              key=lambda c: c.map(order) if c.name == "method" else c)
    return sweep[SWEEP_COLUMNS].reset_index(drop=True)


def recommended_step_sizes(sweep: pd.DataFrame) -> pd.Series:
    """family -> the α of the rule (module docstring); a family with no measurable α has none."""
    every = sweep.assign(measurable=sweep["rounding_pct"] < MAX_ROUNDING_PCT).groupby(
        ["family", "step_size"])[["first_order", "measurable"]].all().reset_index()
    first_order = every[every["first_order"]].groupby("family")["step_size"].max()
    measurable = every[every["measurable"]].groupby("family")["step_size"].min()
    return first_order.combine_first(measurable)


# ---- figure ------------------------------------------------------------------------------------------------

def _family_lines(ax: Axes, sizes: Mapping[str, float], linestyle: str) -> None:
    for size in sizes.values():
        ax.axvline(size, color="0.2", linestyle=linestyle, linewidth=0.9, zorder=0)


def step_size_figure(sweep: pd.DataFrame, rows: pd.DataFrame, configured: Mapping[str, float],
                     note: str | None = None) -> Figure:
    """Against α (log scale), per method and shots: positive, neutral, negative fractions, median |LR − 1|,
    the slope ratio and the first-order outcomes; the configured α and the recommended α of each family."""
    curves = list(sweep[["method", "shots"]].drop_duplicates().itertuples(index=False, name=None))
    methods = list(dict.fromkeys(m for m, _ in curves))
    shots = sorted({k for _, k in curves})
    colors = dict(zip(methods, sns.color_palette(METHOD_PALETTE, len(methods))))
    styles = dict(zip(shots, itertools.cycle(SHOT_LINESTYLES)))
    last = sweep[sweep.groupby(["method", "shots"])["iteration"].transform("max") == sweep["iteration"]]
    recommended = recommended_step_sizes(sweep)
    band = rows["neutral_band"].iloc[0]
    figure = Figure(figsize=(13, 8.8), layout="constrained")
    axes = figure.subplots(2, 3)
    panels = [(axes[0, i], f"{o}_pct", f"{o} transfer (% of sources, mean over targets)") for i, o in
              enumerate(OUTCOMES)]
    panels += [(axes[1, 0], "median_abs_change", "median |LR − 1| over (source, target) pairs"),
               (axes[1, 1], "slope_ratio",
                "slope ratio: median over pairs of\n(LR − 1)/α over its reference value"),
               (axes[1, 2], "first_order_outcome_pct", "pairs with their first-order outcome (%)")]
    for ax, column, label in panels:
        for (method, k), curve in last.groupby(["method", "shots"], sort=False):
            ax.plot(curve["step_size"], curve[column], color=colors[method], linestyle=styles[k], marker="o",
                    markersize=3, linewidth=1.3)
        ax.set_xscale("log")
        ax.set_xlabel("step size α", fontsize="small")
        ax.set_ylabel(label, fontsize="small")
        ax.grid(alpha=0.3)
        _family_lines(ax, configured, "--")
        _family_lines(ax, recommended.to_dict(), ":")
    for ax, _, _ in [*panels[:3], panels[5]]:
        ax.set_ylim(-3, 103)
    change = axes[1, 0]
    change.set_yscale("log")
    for level, text in ((ROUNDING_LEVEL, "float32 rounding"), (band, f"neutral band {band:g}")):
        change.axhline(level, color="0.4", linewidth=0.9)
        change.text(sweep["step_size"].max(), level, f"{text} ", ha="right", va="bottom", fontsize="x-small")
    for family, size in {**recommended.to_dict(), **configured}.items():  # which line is whose
        axes[0, 0].text(size, 0.98, f" {FAMILY_LABELS[family]}", rotation=90, va="top", fontsize="x-small",
                        transform=axes[0, 0].get_xaxis_transform())
    axes[1, 1].axhspan(1 - LINEARITY_TOLERANCE, 1 + LINEARITY_TOLERANCE, **FIRST_ORDER_SHADE)
    axes[1, 1].set_ylim(0, 2)
    axes[1, 2].axhspan(MIN_FIRST_ORDER_OUTCOME_PCT, 103, **FIRST_ORDER_SHADE)
    figure.legend(handles=_legend_handles(methods, shots, colors, styles, configured, recommended),
                  loc="outside lower center", ncols=4, frameon=False, fontsize="small")
    first = rows.iloc[0]
    what = (f"{rows['source_task'].nunique()} {MODE_LABELS[first['source_mode']]} sources × "
            f"{rows['target_task'].nunique()} {MODE_LABELS[first['target_mode']]} targets per model, "
            f"plain gradient steps θ − α·∇L(source) at each α, on each model's last analysed snapshot. "
            f"Shaded: the first-order regime's bounds.")
    title = ["Transference lookahead step size: where LR − 1 is measurable and still first order in α",
             *textwrap.wrap(what, 150), *textwrap.wrap(note or "", 150)]
    figure.suptitle("\n".join(title), fontsize="medium")
    return figure


def _legend_handles(methods: Sequence[str], shots: Sequence[int], colors: Mapping, styles: Mapping,
                    configured: Mapping[str, float], recommended: pd.Series) -> list[Line2D]:
    handles = [Line2D([], [], color=colors[m], linewidth=2, label=METHOD_LABELS[m]) for m in methods]
    handles += [Line2D([], [], color="0.3", linestyle=styles[k], label=f"{k}-shot") for k in shots]
    if configured:
        handles.append(Line2D([], [], color="0.2", linestyle="--", label="configured α: " + ", ".join(
            f"{FAMILY_LABELS[f]} {a:g}" for f, a in configured.items())))
    handles.append(Line2D([], [], color="0.2", linestyle=":", label="recommended α: " + (", ".join(
        f"{FAMILY_LABELS[f]} {a:g}" for f, a in recommended.items())
        if len(recommended) else "none in the grid")))
    return handles


def report_step_size(csvs: Sequence[Path], out_dir: Path, configured: Mapping[str, float] | None = None,
                     note: str | None = None) -> list[Path]:
    """`kml report step-size`: the sweep's summary CSV and figure under out_dir."""
    rows = read_ratio_csvs(csvs, "step-size sweep CSV (`kml transference --sweep`)", one_step_size=False)
    sweep = summarize_sweep(rows)
    path = report_path(out_dir, "step_size", "sweep")
    sweep.to_csv(path, index=False)
    figure = step_size_figure(sweep, rows[~rows["self"]], configured or {}, note)
    return [path, *write_figure(figure, out_dir, "step_size")]
