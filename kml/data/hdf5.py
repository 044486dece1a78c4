"""The prepared-dataset HDF5 schema: one file per dataset and image size.

Layout (other code and tests rely on it):
    /train, /val, /test            groups, each with
        images       uint8  [N, S, S, 3]   RGB, images of one class contiguous
        labels       int64  [N]            0..C-1 within the split, non-decreasing
        class_names  UTF-8 strings [C]
    root attributes: dataset, image_size, split_rule (text), sources (JSON: raw file name -> sha256),
                     kml_version
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import h5py
import numpy as np

import kml
from kml import KmlError

SPLITS = ("train", "val", "test")
_STRING = h5py.string_dtype(encoding="utf-8")


class DatasetFileError(KmlError, ValueError):
    """A prepared HDF5 file is missing, unreadable or does not follow the schema."""


@dataclass(frozen=True)
class Split:
    """One split of a prepared dataset, held in memory."""

    images: np.ndarray  # uint8 [N, S, S, 3]
    labels: np.ndarray  # int64 [N], class images contiguous
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.dtype != np.uint8 or self.images.ndim != 4 or self.images.shape[-1] != 3:
            raise DatasetFileError(f"images must be uint8 [N, S, S, 3], got {self.images.dtype} {self.images.shape}")
        if self.labels.shape != (len(self.images),):
            raise DatasetFileError(f"labels {self.labels.shape} do not match {len(self.images)} images")
        if len(self.labels) and (np.any(np.diff(self.labels) < 0) or self.labels[-1] >= len(self.class_names)):
            raise DatasetFileError("labels must be non-decreasing (classes contiguous) and below the class count")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_offsets(self) -> np.ndarray:
        """int64 [C+1]: images of class c are images[offsets[c]:offsets[c+1]]."""
        return np.searchsorted(self.labels, np.arange(self.num_classes + 1)).astype(np.int64)


class HDF5Writer:
    """Writes a prepared dataset to a temporary file and renames it into place only on success.

    with HDF5Writer(path, dataset="fc100", image_size=84, split_rule="...", sources={...}) as writer:
        writer.write_split("train", split)
    """

    def __init__(self, path: str | Path, *, dataset: str, image_size: int, split_rule: str,
                 sources: dict[str, str]) -> None:
        self.path = Path(path)
        self.tmp_path = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self.attrs = {
            "dataset": dataset,
            "image_size": int(image_size),
            "split_rule": split_rule,
            "sources": json.dumps(sources, sort_keys=True),
            "kml_version": kml.__version__,
        }
        self._file: h5py.File | None = None
        self._written: set[str] = set()

    def __enter__(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.tmp_path, "w")
        self._file.attrs.update(self.attrs)
        return self

    def write_split(self, name: str, split: Split) -> None:
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        size = self.attrs["image_size"]
        if len(split.images) and split.images.shape[1:] != (size, size, 3):
            raise DatasetFileError(f"{name}: images are {split.images.shape[1:]}, expected {(size, size, 3)}")
        group = self._file.create_group(name)
        group.create_dataset("images", data=split.images, chunks=_image_chunks(split.images.shape))
        group.create_dataset("labels", data=split.labels.astype(np.int64))
        group.create_dataset("class_names", data=np.array(split.class_names, dtype=object), dtype=_STRING)
        self._written.add(name)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            for name in SPLITS:  # an empty split (Omniglot's val) is still a group, so readers need no special case
                if name not in self._written:
                    _write_empty_split(self._file, name, self.attrs["image_size"])
        self._file.close()
        if exc_type is None:
            os.replace(self.tmp_path, self.path)
        else:
            self.tmp_path.unlink(missing_ok=True)


def _image_chunks(shape: tuple[int, ...]) -> tuple[int, ...] | None:
    # Chunks of up to 64 whole images: contiguous class reads stay cheap, and compression stays possible.
    if shape[0] == 0:
        return None
    return (min(64, shape[0]),) + tuple(shape[1:])


def _write_empty_split(f: h5py.File, name: str, size: int) -> None:
    group = f.create_group(name)
    group.create_dataset("images", shape=(0, size, size, 3), dtype=np.uint8)
    group.create_dataset("labels", shape=(0,), dtype=np.int64)
    group.create_dataset("class_names", shape=(0,), dtype=_STRING)


def _open(path: str | Path) -> h5py.File:
    path = Path(path)
    if not path.exists():
        raise DatasetFileError(f"{path}: no such prepared dataset; create it with `kml prepare`")
    try:
        return h5py.File(path, "r")
    except OSError as error:
        raise DatasetFileError(f"{path}: not a readable HDF5 file ({error}); delete it and run `kml prepare` again") from None


def read_attrs(path: str | Path) -> dict[str, Any]:
    with _open(path) as f:
        attrs = {key: (value.decode() if isinstance(value, bytes) else value) for key, value in f.attrs.items()}
    missing = {"dataset", "image_size", "split_rule", "sources", "kml_version"} - attrs.keys()
    if missing:
        raise DatasetFileError(f"{path}: missing root attributes {sorted(missing)}; re-run `kml prepare`")
    attrs["sources"] = json.loads(attrs["sources"])
    attrs["image_size"] = int(attrs["image_size"])
    return attrs


def read_split(path: str | Path, split: str) -> Split:
    """Load one split fully into memory."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    with _open(path) as f:
        if split not in f:
            raise DatasetFileError(f"{path}: has no '{split}' group; re-run `kml prepare`")
        group = f[split]
        try:
            return Split(
                images=group["images"][()],
                labels=group["labels"][()].astype(np.int64),
                class_names=tuple(name.decode() if isinstance(name, bytes) else str(name)
                                  for name in group["class_names"][()]),
            )
        except KeyError as error:
            raise DatasetFileError(f"{path}: group '{split}' lacks {error}; re-run `kml prepare`") from None


def describe(path: str | Path) -> str:
    """A human-readable summary for `kml inspect`: per split classes, images and image shape; provenance."""
    attrs = read_attrs(path)
    lines = [f"{path}",
             f"dataset: {attrs['dataset']}   image size: {attrs['image_size']}   kml {attrs['kml_version']}",
             f"split rule: {attrs['split_rule']}",
             f"{'split':<6} {'classes':>8} {'images':>8}  image shape"]
    with _open(path) as f:
        for split in SPLITS:
            if split not in f:
                raise DatasetFileError(f"{path}: has no '{split}' group; re-run `kml prepare`")
            images = f[split]["images"]
            shape = "×".join(str(n) for n in images.shape[1:])
            lines.append(f"{split:<6} {len(f[split]['class_names']):>8} {images.shape[0]:>8}  {shape}")
    lines.append("sources (sha256):")
    lines += [f"  {digest}  {name}" for name, digest in sorted(attrs["sources"].items())]
    return "\n".join(lines)
