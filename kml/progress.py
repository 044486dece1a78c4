"""Progress bars of long work, readable on a terminal and in a Snakemake log file alike."""

from __future__ import annotations

import sys

from tqdm import tqdm

# Refresh when stderr is a file (a Snakemake log) rather than a terminal: a line every 30 s instead of ten a
# second keeps a 60k-iteration run's log small.
LOG_FILE_REFRESH_SECONDS = 30.0


def progress_bar(iterable=None, **options) -> tqdm:
    """A tqdm bar on stderr: live on a terminal, every LOG_FILE_REFRESH_SECONDS in a log file."""
    refresh = {} if sys.stderr.isatty() else {"mininterval": LOG_FILE_REFRESH_SECONDS}
    return tqdm(iterable, file=sys.stderr, dynamic_ncols=True, **refresh, **options)
