"""What a dataset's raw files are and where they come from: official file names, URLs, sizes and checksums.

Each dataset module (kml/data/datasets/) declares its own; `kml download` fetches them, and `kml prepare`
reads the files under exactly these names in `{raw}/{dataset}/`. The values and their provenance are in
docs/specification.md §2.1.
"""

from __future__ import annotations

from dataclasses import dataclass

from kml import KmlError


class UnknownSourceError(KmlError, ValueError):
    """A dataset or source variant that kml does not list."""


@dataclass(frozen=True)
class Source:
    """One file of a dataset's raw folder and where it can be fetched."""

    file_name: str
    # Tried in order; the first is the canonical origin, the others are mirrors of the same bytes.
    urls: tuple[str, ...]
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    # A folder that a user may place in the raw folder by hand instead of this file.
    stand_in_folder: str | None = None
    # Provenance and how to obtain the file by hand; shown when a download fails.
    note: str = ""


@dataclass(frozen=True)
class Dataset:
    """A dataset's raw files, as alternative source sets by name; the first one is the default."""

    name: str
    variants: dict[str, tuple[Source, ...]]
