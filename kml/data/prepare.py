"""`kml prepare`: a dataset's official raw files -> one HDF5 file per dataset and size (schema: hdf5.py).

Raw files are read from `{raw}/{dataset}/` under their official names (as `kml download` and `kml synth`
write them) by the dataset's own preparer (kml/data/datasets/). The splits are MMAML's
(docs/specification.md §2.3–§2.7), made deterministic on every machine: where the released code used
file-system order (glob, os.listdir) the listing is sorted first (§2.3, §2.6), and nothing depends on the
order of the members inside an archive.

Every image gets the released loaders' load-time transform, once (kml/data/images.py, which also says where
the pixels still differ from the released code's): PIL Lanczos resize to S×S, RGB uint8; Omniglot inverted
(strokes bright) and tiled to three channels; grayscale CUB images tiled.
"""

from __future__ import annotations

import os
from pathlib import Path

from kml import KmlError
from kml.data.datasets import dataset_module
from kml.data.datasets.omniglot import OMNIGLOT_TRAIN_CLASSES
from kml.data.hdf5 import write_dataset
from kml.data.raw import PrepareOptions


def prepare_dataset(name: str, raw: str | Path, out: str | Path, image_size: int = 84,
                    fc100_negative: bool = False, workers: int | None = None,
                    omniglot_train_classes: int = OMNIGLOT_TRAIN_CLASSES) -> Path:
    """Read `{raw}/{name}/`, write the prepared HDF5 file `out` (renamed into place only on success; refused
    up front if it cannot fit on the disk).

    fc100_negative: store FC100 as the photographic negatives the released code trained on
        (docs/specification.md §2.5); off by default, i.e. the true images.
    workers: image-decoding processes (default: all cores).
    omniglot_train_classes: Omniglot characters in meta-train (MMAML: 1100); the rest are meta-test.
    """
    dataset = dataset_module(name)
    if image_size < 1:
        raise KmlError(f"image size must be positive, got {image_size}")
    if fc100_negative and name != "fc100":
        raise KmlError(f"the colour-negative option applies to fc100 only, not {name}")
    options = PrepareOptions(image_size=image_size, workers=max(1, workers or os.cpu_count() or 1),
                             fc100_negative=fc100_negative, omniglot_train_classes=omniglot_train_classes)
    prepared = dataset.prepare(Path(raw) / name, options)
    return write_dataset(out, prepared.splits, dataset=name, image_size=image_size,
                         split_rule=prepared.split_rule, sources=prepared.sources)
