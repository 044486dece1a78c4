"""The paper's published numbers (packaged data files, never literals in code) and its names for things."""

from __future__ import annotations

from importlib.resources import files

import pandas as pd

from kml import MODES
from kml.method_table import METHOD_NAMES

# The order of the paper's table rows; the method table (kml/method_table.py) is the order of its columns.
SETTINGS = ("2mode_dagger", "2mode", "3mode", "5mode")
KEYS = ["setting", "method", "shots"]
PAPER_WAYS = 5  # every table of the paper is 5-way
CHANCE_PCT = 100 / PAPER_WAYS

# Labels as the paper typesets them; `$^\dagger$` is read by both LaTeX and matplotlib's mathtext.
SETTING_LABELS = {"2mode_dagger": r"2Mode$^\dagger$", "2mode": "2Mode", "3mode": "3Mode", "5mode": "5Mode"}


def _packaged_csv(name: str) -> pd.DataFrame:
    with files("kml.report").joinpath(name).open() as handle:
        return pd.read_csv(handle)


def paper_results() -> pd.DataFrame:
    """The paper's two accuracy tables: family, method, setting, shots, accuracy, ci95 (%), in paper order."""
    return sort_like_paper(_packaged_csv("paper_results.csv"))


def transference_reference() -> pd.DataFrame:
    """The paper's transference read-outs: model, positive_pct, neutral_pct, negative_pct, source."""
    return _packaged_csv("transference_reference.csv")


def sort_like_paper(frame: pd.DataFrame, then: list[str] | None = None) -> pd.DataFrame:
    """Rows in the paper's order (setting, shots, method), then by the columns in `then`; a fresh index."""
    rank = {"setting": SETTINGS, "method": METHOD_NAMES, "mode": MODES}

    def key(column: pd.Series) -> pd.Series:
        order = rank.get(column.name)
        return column.map({name: i for i, name in enumerate(order)}) if order else column

    return frame.sort_values(["setting", "shots", "method", *(then or [])], key=key).reset_index(drop=True)
