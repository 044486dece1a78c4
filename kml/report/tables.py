"""LaTeX tables (booktabs only): the paper's two tables filled with our numbers, and ours beside the paper's.

Every table covers the paper's full grid; a cell that was not run shows MISSING. Each table is a `table` float
whose caption says what the numbers are and carries the report's note, so it reads on its own.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kml.cell_csv import MMAML_EVAL_META_BATCH
from kml.layout import report_path
from kml.method_table import FAMILY_LABELS, METHOD_LABELS
from kml.report.claims import with_paper_grid
from kml.report.paper import KEYS, SETTING_LABELS, paper_results

MISSING = "--"  # typeset as an en dash
DECIMALS = 2  # the paper's precision

_SPECIALS = str.maketrans(
    {
        "\\": r"\textbackslash{}",
        "&": r"\&",
        "%": r"\%",
        "$": r"\$",
        "#": r"\#",
        "_": r"\_",
        "{": r"\{",
        "}": r"\}",
        "~": r"\textasciitilde{}",
        "^": r"\textasciicircum{}",
    }
)
# Our interval is the one comparable with the paper's (summary.csv's `ci95`): over the means of consecutive
# batches of the evaluation's tasks, as the released MMAML code computes it.
_ACCURACY = (
    r"accuracy (\%) on meta-test tasks, mean $\pm$ 95\% confidence interval (ours: over the means of "
    f"batches of {MMAML_EVAL_META_BATCH} tasks, the released MMAML code's interval, comparable with the "
    r"paper's $\pm$)"
)


def escape_latex(text: str) -> str:
    """Plain text as LaTeX; whitespace runs become one space (a blank line inside a caption is an error)."""
    return " ".join(text.split()).translate(_SPECIALS)


def _number(value: float) -> str:
    return f"{value:.{DECIMALS}f}"


def best_mask(means: pd.DataFrame) -> pd.DataFrame:
    """True where a mean is its row's highest as printed: every tied mean is bold, a missing one never."""
    # Compare the printed values, so two means that read the same are never split into bold and plain.
    shown = means.map(lambda value: float(_number(value)))
    return shown.eq(shown.max(axis=1), axis=0)


def _seeds_mark(n_seeds: float) -> str:
    """A cell over several training seeds is marked with their number (after its interval)."""
    return rf"\textsuperscript{{{int(n_seeds)}}}" if not pd.isna(n_seeds) and n_seeds > 1 else ""


def seeds_words(cells: pd.DataFrame) -> str:
    """The caption's sentence on the seed mark, where some cell has several seeds."""
    if not (cells["n_seeds"] > 1).any():
        return ""
    return (" A superscript $n$: the mean over $n$ training seeds, its interval seed-inclusive (training "
            "seeds and test tasks both vary); otherwise one training run, as in the paper.")


def _with_ours(summary: pd.DataFrame) -> pd.DataFrame:
    """The paper's 64 cells in its order, with our accuracy, ci95, delta and seeds where we have them."""
    ours = summary[[*KEYS, "accuracy", "ci95", "delta", "delta_ci95", "n_seeds"]]
    paper = paper_results().rename(columns={"accuracy": "paper_accuracy", "ci95": "paper_ci95"})
    return paper.merge(ours, on=KEYS, how="left")


def mean_ci(mean: float, ci: float, bold: bool = False, signed: bool = False, n_seeds: float = 1) -> str:
    if pd.isna(mean):
        return MISSING
    # The interval in smaller type, as is usual in papers; it also narrows the columns. An undefined interval
    # (too few tasks to estimate a spread) shows as MISSING.
    shown = f"${mean:+.{DECIMALS}f}$" if signed else _number(mean)
    interval = MISSING if pd.isna(ci) else _number(ci)
    text = rf"{shown} {{\scriptsize $\pm$ {interval}{_seeds_mark(n_seeds)}}}"
    return rf"\textbf{{{text}}}" if bold else text


def caption_with_note(text: str, note: str | None) -> str:
    """A table caption with the user's note (`--note`), escaped for LaTeX, appended."""
    return text + (f" {escape_latex(note)}" if note else "")


def table_float(label: str, caption: str, columns: str, header: list[str], body: list[str],
                column_gap: str = "4pt") -> str:
    """A booktabs `table` float labelled tab:{label}; the report's tables all share this layout."""
    return "\n".join(
        [
            # Footnote size and narrow column gaps: four bold "mean ± CI" columns must fit an article's width.
            r"\begin{table}[htbp]",
            r"\centering",
            r"\footnotesize",
            rf"\setlength{{\tabcolsep}}{{{column_gap}}}",
            rf"\caption{{{caption}}}",
            rf"\label{{tab:{label}}}",
            rf"\begin{{tabular}}{{{columns}}}",
            r"\toprule",
            " & ".join(header) + r" \\",
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            r"\end{table}",
            "",
        ]
    )


def family_table(summary: pd.DataFrame, family: str, note: str | None = None) -> str:
    """One of the paper's tables with our numbers: settings × shots rows, the family's methods as columns."""
    grid = _with_ours(summary)
    grid = grid[grid["family"] == family]
    methods = list(grid["method"].unique())
    rows = list(grid[["setting", "shots"]].drop_duplicates().itertuples(index=False, name=None))
    means, cis, seeds = (
        grid.pivot(index=["setting", "shots"], columns="method", values=v).reindex(rows)[methods]
        for v in ("accuracy", "ci95", "n_seeds")
    )
    best = best_mask(means)
    body, previous = [], None
    for setting, shots in rows:
        if previous not in (None, setting):
            body.append(r"\midrule")
        cells = [
            mean_ci(means.at[(setting, shots), m], cis.at[(setting, shots), m], best.at[(setting, shots), m],
                     n_seeds=seeds.at[(setting, shots), m])
            for m in methods
        ]
        label = SETTING_LABELS[setting] if setting != previous else ""
        body.append(" & ".join([label, f"{shots}-shot", *cells]) + r" \\")
        previous = setting
    caption = caption_with_note(
        f"{FAMILY_LABELS[family]}, this reproduction: {_ACCURACY}. Bold: the highest mean of the row "
        f"(every method tied at the printed precision is bold). {MISSING}: cell not run."
        + seeds_words(grid),
        note,
    )
    header = ["Setting", "Shots", *(METHOD_LABELS[m] for m in methods)]
    # Narrower gaps make room for the seed marks of four "mean ± CI" columns.
    gap = "2.5pt" if (grid["n_seeds"] > 1).any() else "4pt"
    return table_float(f"{family}_family", caption, "ll" + "c" * len(methods), header, body, column_gap=gap)


def reproduction_table(summary: pd.DataFrame, note: str | None = None) -> str:
    """Ours beside the paper's, one row per cell, with their difference; one float per family.

    One float per family keeps each within a page: a float cannot break, and all 64 rows do not fit on one.
    """
    floats = []
    for family, cells in _with_ours(summary).groupby("family", sort=False):
        body, previous = [], (None, None)
        for row in cells.itertuples(index=False):
            new_setting = row.setting != previous[0]
            new_shots = new_setting or row.shots != previous[1]
            if previous[0] is not None and new_shots:
                body.append(r"\midrule" if new_setting else r"\addlinespace")
            body.append(
                " & ".join(
                    [
                        SETTING_LABELS[row.setting] if new_setting else "",
                        f"{row.shots}-shot" if new_shots else "",
                        METHOD_LABELS[row.method],
                        mean_ci(row.accuracy, row.ci95, n_seeds=row.n_seeds),
                        mean_ci(row.paper_accuracy, row.paper_ci95),
                        mean_ci(row.delta, row.delta_ci95, signed=True),
                    ]
                )
                + r" \\"
            )
            previous = (row.setting, row.shots)
        caption = caption_with_note(
            f"{FAMILY_LABELS[family]}, this reproduction beside the paper: {_ACCURACY}. "
            r"$\Delta$ = ours $-$ paper $\pm$ its 95\% interval, taking the two estimates as independent "
            "and both intervals as of the same kind: where it excludes 0, our accuracy differs significantly "
            f"from the paper's. {MISSING}: cell not run." + seeds_words(cells),
            note,
        )
        header = ["Setting", "Shots", "Method", "Ours", "Paper", r"$\Delta$"]
        floats.append(table_float(f"reproduction_{family}", caption, "lllccc", header, body))
    return "\n".join(floats)


def write_tables(summary: pd.DataFrame, out_dir: Path, note: str | None = None) -> list[Path]:
    """DIR/tables/maml_family.tex, protonet_family.tex and reproduction.tex."""
    texts = {report_path(out_dir, "accuracy", f"{family}_table"): family_table(summary, family, note)
             for family in FAMILY_LABELS}
    texts[report_path(out_dir, "accuracy", "reproduction_table")] = reproduction_table(summary, note)
    for path, text in texts.items():
        path.write_text(text)
    return list(texts)


def _p_value(p: float) -> str:
    if pd.isna(p):
        return MISSING
    return r"$<$0.001" if p < 0.001 else f"{p:.3f}"


def claims_table(claims: pd.DataFrame, note: str | None = None) -> str:
    """The paired comparisons beside the paper's differences, one float per family (as reproduction_table).

    Each (setting, shots) is a heading row that also gives its number of tasks, which all its comparisons
    share: that keeps the table within an article's width.
    """
    floats = []
    for family, grid in with_paper_grid(claims).groupby("family", sort=False):
        body = []
        for (setting, shots), rows in grid.groupby(["setting", "shots"], sort=False):
            tasks = rows["n_tasks"].dropna().unique()
            counted = f"$n = {', '.join(f'{n:.0f}' for n in tasks)}$ tasks" if len(tasks) else "not run"
            if body:
                body.append(r"\midrule")
            body.append(rf"\multicolumn{{5}}{{l}}{{\textit{{{SETTING_LABELS[setting]}, {shots}-shot}} "
                        rf"({counted})}} \\")
            for row in rows.itertuples(index=False):
                run = not pd.isna(row.delta_pct)
                cells = [
                    rf"{METHOD_LABELS[row.method]} vs {METHOD_LABELS[row.baseline]}",
                    mean_ci(row.delta_pct, row.ci95_pct, signed=True),
                    _p_value(row.p_holm),
                    f"${row.paper_delta_pct:+.{DECIMALS}f}$",
                    row.verdict if run else MISSING,
                ]
                body.append(" & ".join(cells) + r" \\")
        caption = caption_with_note(
            f"{FAMILY_LABELS[family]}, the paper's comparisons tested task by task: $\\Delta$ = method $-$ "
            r"baseline accuracy (points), the mean over the $n$ test tasks that both methods share, "
            r"$\pm$ its 95\% paired $t$ interval; $p_\mathrm{Holm}$: paired $t$-test, Holm-adjusted over all "
            "comparisons shown; paper: the paper's $\\Delta$ from its tables; verdict: significant "
            "($p_\\mathrm{Holm} < 0.05$) in the direction of the paper's $\\Delta$ (reproduced) or against "
            f"it (contradicted), else not significant. {MISSING}: a cell not run."
            + (" Some comparisons rest on several training seeds (n\\_seeds in claims.csv): their interval "
               "and test are seed-inclusive." if (grid["n_seeds"] > 1).any() else ""),
            note,
        )
        header = ["Comparison", r"$\Delta$", r"$p_\mathrm{Holm}$", "Paper", "Verdict"]
        # Narrower gaps: the longest comparison and verdict must fit an article's width beside the numbers.
        floats.append(table_float(f"claims_{family}", caption, "lcrrl", header, body, column_gap="3pt"))
    return "\n".join(floats)
