"""Reading the CSV files the pipeline writes, with errors that name the file and what it should have been."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from kml import KmlError


def read_checked_csv(path: Path, columns: Sequence[str], kind: str, fix: str = "") -> pd.DataFrame:
    """The CSV at `path`, which must hold at least `columns`; `kind` names what it should be and `fix` how
    to mend missing columns, for the error."""
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise KmlError(f"{path}: not a readable {kind} ({error})") from None
    missing = [column for column in columns if column not in frame.columns]
    if missing:
        raise KmlError(f"{path}: not a {kind}: missing columns {', '.join(missing)} "
                       f"(expected {', '.join(columns)})"
                       + (f"; {fix}" if fix else ""))
    return frame
