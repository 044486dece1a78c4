"""`kml synth`: small synthetic archives in each dataset's official distribution format.

They let the whole pipeline run offline: `kml synth D --out M`, then `kml download D --mirror file://M
--checksums M/SHA256SUMS`, then `kml prepare D`. The archives carry the official file names and internal
layout (the dataset's preparer reads them exactly like the real ones) but few classes and images; each
dataset's stand-in (kml/data/datasets/) says which, and kml/data/standins.py how they are drawn. Output is a
pure function of `seed` (fixed archive timestamps), byte for byte.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from kml import MODES, KmlError
from kml.data.datasets import dataset_module
from kml.data.datasets.omniglot import OMNIGLOT_CHARACTERS
from kml.data.download import update_sha256sums
from kml.data.raw import file_sha256
from kml.data.standins import Members, StandInOptions

CHECKSUMS_FILE = "SHA256SUMS"
# Fixed archive timestamps make the bytes a function of the seed alone (zip's epoch starts in 1980).
ZIP_TIME = (1980, 1, 1, 0, 0, 0)
TAR_TIME = 0
FILE_MODE = 0o644


def make_synthetic(name: str, out: str | Path, seed: int = 0, *,
                   omniglot_characters: int = OMNIGLOT_CHARACTERS) -> list[Path]:
    """Write the synthetic raw files of dataset `name` into `out/` and merge their sums into out/SHA256SUMS.

    Returns the raw files written (what `kml download` fetches from the folder used as a mirror).
    omniglot_characters: Omniglot characters in all; two thirds (rounded up) are background characters.
    """
    dataset = dataset_module(name)
    if omniglot_characters < 3:
        raise KmlError(f"omniglot_characters={omniglot_characters}: both Omniglot zips need characters; "
                       f"give at least 3")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, MODES.index(name)])
    contents = dataset.synthesize(rng, StandInOptions(omniglot_characters=omniglot_characters))
    paths = []
    for file_name, content in contents.items():
        path = out / file_name
        _write_raw_file(path, content)
        paths.append(path)
    update_sha256sums(out / CHECKSUMS_FILE, {path.name: file_sha256(path) for path in paths})
    return paths


def write_zip(path: Path, members: Iterable[tuple[str, bytes]]) -> None:
    """A deflated zip of `members`, in the given order, with fixed timestamps."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = FILE_MODE << 16
            archive.writestr(info, data)


def write_tar_gz(path: Path, members: Iterable[tuple[str, bytes]]) -> None:
    """A gzip tar of `members`, in the given order, with fixed timestamps (also in the gzip header)."""
    with (open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=TAR_TIME) as gz,
          tarfile.open(fileobj=gz, mode="w") as archive):
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), TAR_TIME, FILE_MODE
            archive.addfile(info, io.BytesIO(data))


def _write_raw_file(path: Path, content: bytes | Members) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif path.name.endswith(".zip"):
        write_zip(path, content)
    else:
        write_tar_gz(path, content)
