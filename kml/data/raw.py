"""What every dataset's preparer (kml/data/datasets/) reads its raw files with, and what it hands back.

A preparer gets its raw folder and the PrepareOptions of `kml prepare`, reads its archives (or a folder placed
by hand) in one pass with `read_raw`, and returns Prepared: the splits, the split rule in words and the sha256
of every raw file read. Nothing depends on the order of the members inside an archive. Every way a raw file
can be missing, truncated or not the official one ends in one RawDataError naming the file and the fix.
"""

from __future__ import annotations

import hashlib
import pickle
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kml import KmlError
from kml.data.hdf5 import SPLITS, Split
from kml.data.images import DecodePool, ImageDecodeError, ImageDecoder


class RawDataError(KmlError, ValueError):
    """A raw file is missing, unreadable, or not in its dataset's official format; the message names it."""


@dataclass(frozen=True)
class PrepareOptions:
    image_size: int
    workers: int
    fc100_negative: bool
    omniglot_train_classes: int


@dataclass(frozen=True)
class Prepared:
    splits: dict[str, Split]
    split_rule: str
    sources: dict[str, str]  # raw file name -> sha256


# ---- Provenance ------------------------------------------------------------------------------------------

def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _folder_sha256(folder: Path) -> str:
    """One digest for a folder of files: the sha256 of its sha256sum listing, sorted by file name."""
    listing = "".join(f"{file_sha256(p)}  {p.name}\n" for p in sorted(folder.iterdir()) if p.is_file())
    return hashlib.sha256(listing.encode()).hexdigest()


def raw_sources(paths: Sequence[Path]) -> dict[str, str]:
    """{file name: sha256}; a hand-placed folder is recorded as `{name}/` with the digest of its listing."""
    return {f"{p.name}/" if p.is_dir() else p.name: _folder_sha256(p) if p.is_dir() else file_sha256(p)
            for p in paths}


# ---- Errors ----------------------------------------------------------------------------------------------

def refetch_hint(dataset: str) -> str:
    return f"delete it and re-run `kml download {dataset}` (or `kml synth {dataset}` for synthetic data)"


def no_images(path: Path, dataset: str, what: str) -> RawDataError:
    return RawDataError(f"{path}: {what} has no images; the file is incomplete or not the official one: "
                        f"{refetch_hint(dataset)}")


def _require(path: Path, dataset: str) -> None:
    if not path.exists():
        raise RawDataError(f"{path}: missing; run `kml download {dataset}` (or `kml synth {dataset}` for "
                           f"synthetic data) into the same raw folder")


@contextmanager
def unreadable_as_error(path: Path, dataset: str) -> Iterator[None]:
    """Turn the many ways a truncated or wrong file fails to parse into one RawDataError naming it."""
    try:
        yield
    except ImageDecodeError as error:
        raise RawDataError(f"{path}: member {error}; the file is corrupt: {refetch_hint(dataset)}") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError, pickle.UnpicklingError,
            UnicodeDecodeError) as error:
        raise RawDataError(f"{path}: unreadable ({type(error).__name__}: {error}); it is truncated, corrupt "
                           f"or not the official file (e.g. an HTML page saved under its name): "
                           f"{refetch_hint(dataset)}") from None


# ---- Reading archives and folders ------------------------------------------------------------------------

def _archive_members(path: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(member name, reader) for every regular file, in archive order; a zip by name, else a gzip tar.

    Tar members are read while streaming: one sequential pass, even over a multi-gigabyte tarball.
    """
    if path.name.endswith(".zip"):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.is_dir():
                    yield info.filename, partial(archive.read, info)
    else:
        with tarfile.open(path, "r:gz") as archive:
            for member in archive:
                if member.isfile():
                    yield member.name.removeprefix("./"), partial(_read_tar_member, archive, member)


def _read_tar_member(archive: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    with archive.extractfile(member) as f:
        return f.read()


def _folder_members(folder: Path) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """A folder placed by hand, read like an archive whose members are `{folder name}/{file}`."""
    for path in sorted(folder.iterdir()):
        if path.is_file():
            yield f"{folder.name}/{path.name}", path.read_bytes


@dataclass(frozen=True)
class RawContents:
    """What was read from one raw archive (or folder): kept files as bytes, decoded images as arrays."""

    path: Path
    dataset: str
    files: dict[str, bytes]
    images: dict[str, np.ndarray]

    def file(self, member: str) -> bytes:
        return self._get(self.files, member)

    def lines(self, member: str) -> list[str]:
        """The non-empty lines of a text member, stripped."""
        try:
            text = self.file(member).decode("utf-8")
        except UnicodeDecodeError:
            raise RawDataError(f"{self.path}: member {member} is not text; "
                               f"{refetch_hint(self.dataset)}") from None
        return [line.strip() for line in text.splitlines() if line.strip()]

    def pairs(self, member: str) -> list[tuple[str, str]]:
        """`<id> <value>` lines split on the first space (values may contain spaces and '/')."""
        pairs = []
        for line in self.lines(member):
            key, space, value = line.partition(" ")
            if not space:
                raise RawDataError(f"{self.path}: {member}: line {line!r} is not '<id> <value>'; "
                                   f"{refetch_hint(self.dataset)}")
            pairs.append((key, value.strip()))
        return pairs

    def stack(self, members: Sequence[str]) -> np.ndarray:
        """uint8 [n, S, S, 3]: the decoded images of `members`, in that order."""
        return np.stack([self._get(self.images, member) for member in members])

    def _get(self, table: Mapping[str, bytes | np.ndarray], member: str):
        if member not in table:
            raise RawDataError(f"{self.path}: has no member {member}; the file is incomplete or not the "
                               f"official one: {refetch_hint(self.dataset)}")
        return table[member]


def read_raw(source: Path, dataset: str, options: PrepareOptions, *,
             keep: Callable[[str], bool] | None = None, decode: Callable[[str], bool] | None = None,
             inverted_grayscale: bool = False) -> RawContents:
    """Read an archive (or folder) in one pass: members `keep` accepts as bytes, `decode` accepts decoded."""
    _require(source, dataset)
    members = _folder_members(source) if source.is_dir() else _archive_members(source)
    decoder = ImageDecoder(options.image_size, inverted_grayscale=inverted_grayscale)
    workers = options.workers if decode is not None else 1
    files = {}
    with (unreadable_as_error(source, dataset),
          tqdm(desc=f"{dataset}: {source.name}", unit="img", disable=decode is None) as progress,
          DecodePool(decoder, workers, progress) as pool):
        for name, read in members:
            if decode is not None and decode(name):
                pool.add(name, read())
            elif keep is not None and keep(name):
                files[name] = read()
        images = pool.finish()
    return RawContents(source, dataset, files, images)


def unpickle(data: bytes, path: Path, dataset: str) -> object:
    """Python-2 pickles (CIFAR, Ren et al.'s mini-ImageNet) need latin1 for their numpy buffers.

    Unpickling runs code the file names, so only files fetched from the documented sources belong here.
    """
    with unreadable_as_error(path, dataset):
        return pickle.loads(data, encoding="latin1")


def images_by_class(pairs: Sequence[tuple[str, str]], locate: Callable[[str, str], tuple[str, str]],
                    classes: Sequence[str], path: Path, dataset: str) -> dict[str, list[str]]:
    """{class: [image members in list order]} from `<id> <value>` pairs; every class must have images.

    locate(id, value) -> (class, archive member of the image).
    """
    grouped: dict[str, list[str]] = {c: [] for c in classes}
    for key, value in pairs:
        owner, member = locate(key, value)
        if owner not in grouped:
            raise RawDataError(f"{path}: image {key} {value} belongs to the unlisted class {owner!r}; "
                               f"{refetch_hint(dataset)}")
        grouped[owner].append(member)
    for c, members in grouped.items():
        if not members:
            raise no_images(path, dataset, f"class {c!r}")
    return grouped


# ---- Splits ----------------------------------------------------------------------------------------------

def build_split(classes: Sequence[tuple[str, np.ndarray]], image_size: int) -> Split:
    """A split from (class name, uint8 [n, S, S, 3]) pairs in label order."""
    if not classes:
        return Split(np.empty((0, image_size, image_size, 3), np.uint8), np.empty(0, np.int64), ())
    counts = [len(images) for _, images in classes]
    return Split(images=np.concatenate([images for _, images in classes]),
                 labels=np.repeat(np.arange(len(classes), dtype=np.int64), counts),
                 class_names=tuple(name for name, _ in classes))


def decoded_splits(split: Mapping[str, Sequence[str]], members: Mapping[str, Sequence[str]],
                   contents: RawContents, image_size: int) -> dict[str, Split]:
    """Each split's classes in the given order, each with the decoded images of its archive members."""
    return {name: build_split([(c, contents.stack(members[c])) for c in classes], image_size)
            for name, classes in split.items()}


def class_counts(split: Mapping[str, Sequence]) -> str:
    """Classes per split as the split rules state them: train/val/test."""
    return "/".join(str(len(split[name])) for name in SPLITS)
