"""The prepared-dataset HDF5 schema: one file per dataset and image size.

Layout (other code and tests rely on it):
    /train, /val, /test            groups, each with
        images       uint8  [N, S, S, 3]   RGB, images of one class contiguous
        labels       int64  [N]            0..C-1 within the split, non-decreasing
        class_names  UTF-8 strings [C]
    root attributes: dataset, image_size, split_rule (text), sources (JSON: raw file name -> sha256),
                     kml_version

`write_dataset` writes the file atomically (kml/files.py) after checking that it fits on the disk; a disk that
fills up anyway ends in one NoSpaceError and no temporary file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

import kml
from kml import KmlError
from kml.files import atomic_file, require_free_space

SPLITS = ("train", "val", "test")
_STRING = h5py.string_dtype(encoding="utf-8")
# What a file takes beyond its image chunks and labels: HDF5's metadata, chunk indexes, class names.
FILE_OVERHEAD_BYTES = 1 << 20


class DatasetFileError(KmlError, ValueError):
    """A prepared HDF5 file is missing, unreadable or does not follow the schema."""


@dataclass(frozen=True)
class Split:
    """One split of a prepared dataset, held in memory."""

    images: np.ndarray  # uint8 [N, S, S, 3]
    labels: np.ndarray  # int64 [N], class images contiguous
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        problem = split_problem(self.images.dtype, self.images.shape, self.labels, self.num_classes)
        if problem:
            raise DatasetFileError(problem)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_offsets(self) -> np.ndarray:
        """int64 [C+1]: images of class c are images[offsets[c]:offsets[c+1]]."""
        return np.searchsorted(self.labels, np.arange(self.num_classes + 1)).astype(np.int64)


def split_problem(images_dtype: np.dtype, images_shape: tuple[int, ...], labels: np.ndarray, num_classes: int,
                  image_size: int | None = None) -> str | None:
    """What makes a split's arrays break the schema (None if nothing): images uint8 [N, S, S, 3] (S the file's
    image_size if given), labels 0..C-1 for C class names, non-decreasing and each class with images."""
    if images_dtype != np.uint8 or len(images_shape) != 4 or images_shape[-1] != 3:
        return f"images must be uint8 [N, S, S, 3], got {images_dtype} {list(images_shape)}"
    if image_size is not None and images_shape[0] and images_shape[1:3] != (image_size, image_size):
        return f"images are {images_shape[1]}×{images_shape[2]} px, but the file's image_size is {image_size}"
    if labels.shape != images_shape[:1]:
        return f"{len(labels)} labels for {images_shape[0]} images"
    if not len(labels):
        return f"no images but {num_classes} class names" if num_classes else None
    steps = np.diff(labels)
    irregular = bool(np.any((steps != 0) & (steps != 1)))  # a step back, or a class skipped
    if labels[0] != 0 or labels[-1] != num_classes - 1 or irregular:
        return (f"labels must run from 0 to {num_classes - 1} ({num_classes} class names), non-decreasing, "
                f"with images for every class; they run from {labels[0]} to {labels[-1]}"
                + (" with steps back or classes skipped" if irregular else ""))
    return None


def stored_size(splits: Iterable[Split]) -> int:
    """Bytes a file of these splits takes, at most: images in whole chunks, labels, and the overhead."""
    total = FILE_OVERHEAD_BYTES
    for split in splits:
        chunks = _image_chunks(split.images.shape)
        stored = -(-len(split.images) // chunks[0]) * chunks[0] if chunks else 0
        total += stored * split.images[:1].nbytes + split.labels.nbytes
    return total


def write_dataset(path: str | Path, splits: Mapping[str, Split], *, dataset: str, image_size: int,
                  split_rule: str, sources: dict[str, str]) -> Path:
    """Write a prepared dataset file; a split not given is written empty (Omniglot's val)."""
    path = Path(path)
    unknown = set(splits) - set(SPLITS)
    if unknown:
        raise ValueError(f"splits must be among {SPLITS}, got {sorted(unknown)}")
    for name, split in splits.items():
        if len(split.images) and split.images.shape[1:] != (image_size, image_size, 3):
            raise DatasetFileError(f"{name}: images are {split.images.shape[1:]}, expected "
                                   f"{(image_size, image_size, 3)}")
    attrs = {"dataset": dataset, "image_size": int(image_size), "split_rule": split_rule,
             "sources": json.dumps(sources, sort_keys=True), "kml_version": kml.__version__}
    needed = stored_size(splits.values())
    require_free_space(path, needed)
    with atomic_file(path, needed) as target, h5py.File(target, "w") as f:
        f.attrs.update(attrs)
        for name in SPLITS:
            _write_split(f, name, splits.get(name), image_size)
    return path


def _image_chunks(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    # Chunks of up to 64 whole images: contiguous class reads stay cheap, and compression stays possible.
    if shape[0] == 0:
        return None
    return (min(64, shape[0]),) + tuple(shape[1:])


def _write_split(f: h5py.File, name: str, split: Split | None, size: int) -> None:
    group = f.create_group(name)
    if split is None:  # still a group, so that readers need no special case
        group.create_dataset("images", shape=(0, size, size, 3), dtype=np.uint8)
        group.create_dataset("labels", shape=(0,), dtype=np.int64)
        group.create_dataset("class_names", shape=(0,), dtype=_STRING)
        return
    group.create_dataset("images", data=split.images, chunks=_image_chunks(split.images.shape))
    group.create_dataset("labels", data=split.labels.astype(np.int64))
    group.create_dataset("class_names", data=np.array(split.class_names, dtype=object), dtype=_STRING)


def _open(path: str | Path) -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise DatasetFileError(f"{path}: no such prepared dataset; create it with `kml prepare`")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise DatasetFileError(f"{path}: not a readable HDF5 file ({error}); "
                               "delete it and run `kml prepare` again") from None


def read_attrs(path: str | Path) -> dict[str, Any]:
    with _open(path) as f:
        attrs = {key: (value.decode() if isinstance(value, bytes) else value)
                 for key, value in f.attrs.items()}
    missing = {"dataset", "image_size", "split_rule", "sources", "kml_version"} - attrs.keys()
    if missing:
        raise DatasetFileError(f"{path}: missing root attributes {sorted(missing)}; re-run `kml prepare`")
    attrs["sources"] = json.loads(attrs["sources"])
    attrs["image_size"] = int(attrs["image_size"])
    return attrs


def read_split(path: str | Path, split: str, dataset: str | None = None) -> Split:
    """Load one split fully into memory; with `dataset`, the file must hold that dataset."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    attrs = read_attrs(path)
    if dataset is not None and attrs["dataset"] != dataset:
        raise DatasetFileError(f"{path}: holds {attrs['dataset']} (its `dataset` attribute), not {dataset}; "
                               f"give the file prepared from {dataset} (`kml prepare {dataset}`)")
    with _open(path) as f:
        images, labels, class_names = _split_arrays(f, path, split)
        _check_split(path, split, images, labels, class_names, attrs["image_size"])
        return Split(images=images[()], labels=labels, class_names=class_names)


def _split_arrays(f: h5py.File, path: str | Path,
                  split: str) -> tuple[h5py.Dataset, np.ndarray, tuple[str, ...]]:
    """A split's images (still on disk), labels and class names."""
    if split not in f:
        raise DatasetFileError(f"{path}: has no '{split}' group; re-run `kml prepare`")
    group = f[split]
    try:
        return (group["images"], group["labels"][()].astype(np.int64),
                tuple(name.decode() if isinstance(name, bytes) else str(name)
                      for name in group["class_names"][()]))
    except KeyError as error:
        raise DatasetFileError(f"{path} [{split}]: lacks {error}; re-run `kml prepare`") from None


def _check_split(path: str | Path, split: str, images: h5py.Dataset, labels: np.ndarray,
                 class_names: tuple[str, ...], image_size: int) -> None:
    problem = split_problem(images.dtype, images.shape, labels, len(class_names), image_size)
    if problem:
        raise DatasetFileError(f"{path} [{split}]: {problem}; the file is damaged or not made by "
                               "`kml prepare`: delete it and run `kml prepare` again")


def describe(path: str | Path) -> str:
    """A human-readable summary for `kml inspect`: per split classes, images and image shape; provenance.
    Every split is checked against the schema (labels against images and class names) on the way."""
    attrs = read_attrs(path)
    lines = [f"{path}",
             f"dataset: {attrs['dataset']}   image size: {attrs['image_size']}   kml {attrs['kml_version']}",
             f"split rule: {attrs['split_rule']}",
             f"{'split':<6} {'classes':>8} {'images':>8}  image shape"]
    with _open(path) as f:
        for split in SPLITS:
            images, labels, class_names = _split_arrays(f, path, split)
            _check_split(path, split, images, labels, class_names, attrs["image_size"])
            shape = "×".join(str(n) for n in images.shape[1:])
            lines.append(f"{split:<6} {len(class_names):>8} {images.shape[0]:>8}  {shape}")
    lines.append("sources (sha256):")
    lines += [f"  {digest}  {name}" for name, digest in sorted(attrs["sources"].items())]
    return "\n".join(lines)
