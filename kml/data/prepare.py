"""`kml prepare`: a dataset's official raw files -> one HDF5 file per dataset and size (schema: hdf5.py).

Raw files are read from `{raw}/{dataset}/` under their official names (as `kml download` and `kml synth`
write them). The splits are MMAML's (REFERENCE §1.2, DATASETS.md), made deterministic on every machine:
where the released code used file-system order (glob, os.listdir) the listing is sorted first
(REFERENCE §7.9), and nothing depends on the order of the members inside an archive.

Images are processed as the released loaders do (kml/data/images.py): PIL Lanczos resize to S×S, RGB
uint8; Omniglot inverted (strokes bright) and tiled to three channels; grayscale CUB images tiled.
"""

from __future__ import annotations

import csv
import hashlib
import os
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

from kml import MODES, KmlError
from kml.data.hdf5 import SPLITS, Split, write_dataset
from kml.data.images import DecodePool, ImageDecodeError, ImageDecoder, resize_rgb_arrays

# ---- Official raw file names, per dataset folder ---------------------------------------------------------
# Background first: the Omniglot split takes the first characters of the sorted background+evaluation list.
OMNIGLOT_ARCHIVES = ("images_background.zip", "images_evaluation.zip")
MINIIMAGENET_CSVS = {"train": "train.csv", "val": "val.csv", "test": "test.csv"}
MINIIMAGENET_IMAGES_ZIP = "mini-imagenet.zip"
MINIIMAGENET_IMAGES_DIR = "images"
MINIIMAGENET_PICKLES = {
    "train": "mini-imagenet-cache-train.pkl",
    "val": "mini-imagenet-cache-validation.pkl",
    "test": "mini-imagenet-cache-test.pkl",
}
FC100_ARCHIVE = "cifar-100-python.tar.gz"
FC100_ROOT = "cifar-100-python"
CUB_ARCHIVE = "CUB_200_2011.tgz"
CUB_ROOT = "CUB_200_2011"
AIRCRAFT_ARCHIVE = "fgvc-aircraft-2013b.tar.gz"
AIRCRAFT_ROOT = "fgvc-aircraft-2013b/data"
# Image lists MMAML pools, in its order (proc_aircraft.py).
AIRCRAFT_IMAGE_LISTS = ("images_variant_trainval.txt", "images_variant_test.txt")

# ---- Split rules (dataset facts, as in the released MMAML/KML code) --------------------------------------
OMNIGLOT_TRAIN_CLASSES = 1100  # main.py --num-train-classes default; the rest is meta-test, no val
# proc_cifar.py: CIFAR-100 coarse (superclass) ids per split, the FC100 split of Oreshkin et al. 2018.
FC100_SUPERCLASSES = {
    "train": (1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19),
    "val": (8, 11, 13, 16),
    "test": (0, 7, 12, 14),
}
FC100_SIDE = 32
# proc_bird.py and proc_aircraft.py: shuffle the class list with this seed, then cut 70/15/15 percent.
MMAML_SPLIT_SEED = 123
MMAML_SPLIT_PERCENTAGES = (70, 15, 15)


class RawDataError(KmlError, ValueError):
    """A raw file is missing, unreadable, or not in its dataset's official format; the message names it."""


@dataclass(frozen=True)
class _Options:
    image_size: int
    workers: int
    fc100_negative: bool
    omniglot_train_classes: int


@dataclass(frozen=True)
class _Prepared:
    splits: dict[str, Split]
    split_rule: str
    sources: dict[str, str]  # raw file name -> sha256


def prepare_dataset(name: str, raw: str | Path, out: str | Path, image_size: int = 84,
                    fc100_negative: bool = False, workers: int | None = None,
                    omniglot_train_classes: int = OMNIGLOT_TRAIN_CLASSES) -> Path:
    """Read `{raw}/{name}/`, write the prepared HDF5 file `out` (renamed into place only on success; refused
    up front if it cannot fit on the disk).

    fc100_negative: store FC100 as the photographic negatives the released code trained on
        (REFERENCE §7.1); off by default, i.e. the true images.
    workers: image-decoding processes (default: all cores).
    omniglot_train_classes: Omniglot characters in meta-train (MMAML: 1100); the rest are meta-test.
    """
    if name not in _PREPARERS:
        raise KmlError(f"unknown dataset {name!r}; choose one of {', '.join(MODES)}")
    if image_size < 1:
        raise KmlError(f"image size must be positive, got {image_size}")
    if fc100_negative and name != "fc100":
        raise KmlError(f"the colour-negative option applies to fc100 only, not {name}")
    options = _Options(image_size=image_size, workers=max(1, workers or os.cpu_count() or 1),
                       fc100_negative=fc100_negative, omniglot_train_classes=omniglot_train_classes)
    prepared = _PREPARERS[name](Path(raw) / name, options)
    return write_dataset(out, prepared.splits, dataset=name, image_size=image_size,
                         split_rule=prepared.split_rule, sources=prepared.sources)


# ---- Pure split rules ------------------------------------------------------------------------------------

def omniglot_split(characters: Sequence[str], train_classes: int) -> dict[str, list[str]]:
    """MMAML's Omniglot rule on sorted character paths: the first `train_classes` train, the rest test."""
    ordered = sorted(characters)
    if not 0 < train_classes < len(ordered):
        raise KmlError(f"omniglot: {train_classes} train classes requested but the archives hold "
                       f"{len(ordered)} characters; choose 1..{len(ordered) - 1} with "
                       f"--omniglot-train-classes")
    return {"train": ordered[:train_classes], "val": [], "test": ordered[train_classes:]}


def mmaml_class_split(classes: Sequence[str]) -> dict[str, list[str]]:
    """proc_bird.py / proc_aircraft.py: RandomState(123).shuffle, then int(70%), int(15%), the rest."""
    shuffled = list(classes)
    np.random.RandomState(MMAML_SPLIT_SEED).shuffle(shuffled)
    total = sum(MMAML_SPLIT_PERCENTAGES)
    # float(ratio) / total * count, truncated, exactly as the released scripts compute it.
    num_train, num_val = (int(float(p) / total * len(shuffled)) for p in MMAML_SPLIT_PERCENTAGES[:2])
    return {"train": shuffled[:num_train], "val": shuffled[num_train:num_train + num_val],
            "test": shuffled[num_train + num_val:]}


def cub_class_split(class_folders: Sequence[str]) -> dict[str, list[str]]:
    """MMAML's CUB rule with the folders sorted first (it shuffled the file-system order of os.listdir)."""
    return mmaml_class_split(sorted(class_folders))


def aircraft_class_split(variants: Sequence[str]) -> dict[str, list[str]]:
    """MMAML's Aircraft rule on variants.txt order (no sort: that order is the archive's own, fixed)."""
    return mmaml_class_split(variants)


def fc100_class_split(superclass_of: Sequence[int]) -> dict[str, list[int]]:
    """Fine-class ids per split (ascending), given the superclass id of every fine class."""
    return {split: [c for c, coarse in enumerate(superclass_of) if coarse in FC100_SUPERCLASSES[split]]
            for split in SPLITS}


# ---- Reading raw files -----------------------------------------------------------------------------------

def file_sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _folder_sha256(folder: Path) -> str:
    """One digest for a folder of files: the sha256 of its sha256sum listing, sorted by file name."""
    listing = "".join(f"{file_sha256(p)}  {p.name}\n" for p in sorted(folder.iterdir()) if p.is_file())
    return hashlib.sha256(listing.encode()).hexdigest()


def _raw_sources(paths: Sequence[Path]) -> dict[str, str]:
    """{file name: sha256}; a hand-placed folder is recorded as `{name}/` with the digest of its listing."""
    return {f"{p.name}/" if p.is_dir() else p.name: _folder_sha256(p) if p.is_dir() else file_sha256(p)
            for p in paths}


def _fix(dataset: str) -> str:
    return f"delete it and re-run `kml download {dataset}` (or `kml synth {dataset}` for synthetic data)"


def _require(path: Path, dataset: str) -> None:
    if not path.exists():
        raise RawDataError(f"{path}: missing; run `kml download {dataset}` (or `kml synth {dataset}` for "
                           f"synthetic data) into the same raw folder")


@contextmanager
def _unreadable_as_error(path: Path, dataset: str) -> Iterator[None]:
    """Turn the many ways a truncated or wrong file fails to parse into one RawDataError naming it."""
    try:
        yield
    except ImageDecodeError as error:
        raise RawDataError(f"{path}: member {error}; the file is corrupt: {_fix(dataset)}") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError, pickle.UnpicklingError,
            UnicodeDecodeError) as error:
        raise RawDataError(f"{path}: unreadable ({type(error).__name__}: {error}); it is truncated, corrupt "
                           f"or not the official file (e.g. an HTML page saved under its name): "
                           f"{_fix(dataset)}") from None


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
class _RawContents:
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
            raise RawDataError(f"{self.path}: member {member} is not text; {_fix(self.dataset)}") from None
        return [line.strip() for line in text.splitlines() if line.strip()]

    def pairs(self, member: str) -> list[tuple[str, str]]:
        """`<id> <value>` lines split on the first space (values may contain spaces and '/')."""
        pairs = []
        for line in self.lines(member):
            key, space, value = line.partition(" ")
            if not space:
                raise RawDataError(f"{self.path}: {member}: line {line!r} is not '<id> <value>'; "
                                   f"{_fix(self.dataset)}")
            pairs.append((key, value.strip()))
        return pairs

    def stack(self, members: Sequence[str]) -> np.ndarray:
        """uint8 [n, S, S, 3]: the decoded images of `members`, in that order."""
        return np.stack([self._get(self.images, member) for member in members])

    def _get(self, table: Mapping[str, bytes | np.ndarray], member: str):
        if member not in table:
            raise RawDataError(f"{self.path}: has no member {member}; the file is incomplete or not the "
                               f"official one: {_fix(self.dataset)}")
        return table[member]


def _read_raw(source: Path, dataset: str, options: _Options, *, keep: Callable[[str], bool] | None = None,
              decode: Callable[[str], bool] | None = None, inverted_grayscale: bool = False) -> _RawContents:
    """Read an archive (or folder) in one pass: members `keep` accepts as bytes, `decode` accepts decoded."""
    _require(source, dataset)
    members = _folder_members(source) if source.is_dir() else _archive_members(source)
    decoder = ImageDecoder(options.image_size, inverted_grayscale=inverted_grayscale)
    workers = options.workers if decode is not None else 1
    files = {}
    with (_unreadable_as_error(source, dataset),
          tqdm(desc=f"{dataset}: {source.name}", unit="img", disable=decode is None) as progress,
          DecodePool(decoder, workers, progress) as pool):
        for name, read in members:
            if decode is not None and decode(name):
                pool.add(name, read())
            elif keep is not None and keep(name):
                files[name] = read()
        images = pool.finish()
    return _RawContents(source, dataset, files, images)


def _unpickle(data: bytes, path: Path, dataset: str) -> object:
    """Python-2 pickles (CIFAR, Ren et al.'s mini-ImageNet) need latin1 for their numpy buffers.

    Unpickling runs code the file names, so only files fetched from the documented sources belong here.
    """
    with _unreadable_as_error(path, dataset):
        return pickle.loads(data, encoding="latin1")


def _build_split(classes: Sequence[tuple[str, np.ndarray]], image_size: int) -> Split:
    """A split from (class name, uint8 [n, S, S, 3]) pairs in label order."""
    if not classes:
        return Split(np.empty((0, image_size, image_size, 3), np.uint8), np.empty(0, np.int64), ())
    counts = [len(images) for _, images in classes]
    return Split(images=np.concatenate([images for _, images in classes]),
                 labels=np.repeat(np.arange(len(classes), dtype=np.int64), counts),
                 class_names=tuple(name for name, _ in classes))


def _decoded_splits(split: Mapping[str, Sequence[str]], members: Mapping[str, Sequence[str]],
                    contents: _RawContents, image_size: int) -> dict[str, Split]:
    """Each split's classes in the given order, each with the decoded images of its archive members."""
    return {name: _build_split([(c, contents.stack(members[c])) for c in classes], image_size)
            for name, classes in split.items()}


def _no_images(path: Path, dataset: str, what: str) -> RawDataError:
    return RawDataError(f"{path}: {what} has no images; the file is incomplete or not the official one: "
                        f"{_fix(dataset)}")


def _class_counts(split: Mapping[str, Sequence]) -> str:
    return "/".join(str(len(split[name])) for name in SPLITS)


# ---- Omniglot --------------------------------------------------------------------------------------------

def _prepare_omniglot(folder: Path, options: _Options) -> _Prepared:
    """Characters of both zips, sorted by relative path, the first N train, the rest test (MMAML).

    Each zip must hold a single top folder, read under the zip's own name (images_background/,
    images_evaluation/) whatever it is called inside, so the official subsets
    (images_background_small1.zip, top folder images_background_small1/) can stand in for the full zips.
    Classes are named `images_background/<Alphabet>/<characterNN>`; drawings are ordered by file name.
    """
    drawings: dict[str, list[tuple[str, np.ndarray]]] = {}
    paths = [folder / name for name in OMNIGLOT_ARCHIVES]
    layout = "<top>/<Alphabet>/<characterNN>/<drawing>.png"
    for path in paths:
        contents = _read_raw(path, "omniglot", options, decode=lambda name: name.endswith(".png"),
                             inverted_grayscale=True)
        tops = {name.split("/", 1)[0] for name in contents.images}
        if len(tops) != 1:
            raise RawDataError(f"{path}: expected PNG drawings under one top folder ({layout}), found top "
                               f"folders {sorted(tops)}; {_fix('omniglot')}")
        for name, image in contents.images.items():
            parts = name.split("/")
            if len(parts) != 4:
                raise RawDataError(f"{path}: member {name} is not {layout}; {_fix('omniglot')}")
            character = "/".join([path.name.removesuffix(".zip"), parts[1], parts[2]])
            drawings.setdefault(character, []).append((parts[3], image))

    split = omniglot_split(list(drawings), options.omniglot_train_classes)
    splits = {
        name: _build_split([(c, np.stack([image for _, image in sorted(drawings[c], key=lambda d: d[0])]))
                            for c in characters], options.image_size)
        for name, characters in split.items()
    }
    rule = (f"Omniglot (MMAML): the {len(drawings)} characters of {' + '.join(OMNIGLOT_ARCHIVES)} sorted "
            f"by relative path (background first); the first {len(split['train'])} are train, the remaining "
            f"{len(split['test'])} test; no validation split. Sorting replaces MMAML's file-system glob "
            f"order. Drawings: grayscale, Lanczos resize, inverted (strokes bright), tiled to 3 channels.")
    return _Prepared(splits, rule, _raw_sources(paths))


# ---- mini-ImageNet ---------------------------------------------------------------------------------------

def _prepare_miniimagenet(folder: Path, options: _Options) -> _Prepared:
    """Ravi & Larochelle's 64/16/20 split: from Ren et al.'s pickles if present, else the CSVs + images."""
    if all((folder / name).is_file() for name in MINIIMAGENET_PICKLES.values()):
        return _miniimagenet_from_pickles(folder, options)
    if all((folder / name).is_file() for name in MINIIMAGENET_CSVS.values()):
        return _miniimagenet_from_images(folder, options)
    raise RawDataError(
        f"{folder}: found neither the mini-ImageNet pickles ({', '.join(MINIIMAGENET_PICKLES.values())}) "
        f"nor the Ravi CSVs ({', '.join(MINIIMAGENET_CSVS.values())}); run `kml download miniimagenet` "
        f"(or `kml download miniimagenet --variant images`)")


def _ravi_rule(files: Mapping[str, str], splits: Mapping[str, Split], image_order: str, size: int) -> str:
    return (f"mini-ImageNet: Ravi & Larochelle split by {', '.join(files.values())} "
            f"({_class_counts({s: split.class_names for s, split in splits.items()})} classes); classes "
            f"sorted by wnid, images in {image_order} order; PIL Lanczos resize to {size}.")


def _read_ravi_csv(path: Path) -> dict[str, list[str]]:
    """{wnid: image file names in CSV order} of one `filename,label` CSV."""
    with _unreadable_as_error(path, "miniimagenet"):
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    if not rows or rows[0] != ["filename", "label"] or any(len(row) != 2 for row in rows[1:]):
        raise RawDataError(f"{path}: not a Ravi split CSV (header 'filename,label', two columns); "
                           f"{_fix('miniimagenet')}")
    classes: dict[str, list[str]] = {}
    for filename, wnid in rows[1:]:
        classes.setdefault(wnid, []).append(filename)
    return classes


def _miniimagenet_from_images(folder: Path, options: _Options) -> _Prepared:
    """CSV variant: images from mini-imagenet.zip (members images/<file>.jpg), else an images/ folder."""
    csvs = {split: _read_ravi_csv(folder / name) for split, name in MINIIMAGENET_CSVS.items()}
    zip_path, image_dir = folder / MINIIMAGENET_IMAGES_ZIP, folder / MINIIMAGENET_IMAGES_DIR
    source = zip_path if zip_path.exists() or not image_dir.is_dir() else image_dir
    members = {wnid: [f"{MINIIMAGENET_IMAGES_DIR}/{file}" for file in files]
               for classes in csvs.values() for wnid, files in classes.items()}
    wanted = {member for class_members in members.values() for member in class_members}
    contents = _read_raw(source, "miniimagenet", options, decode=wanted.__contains__)
    splits = _decoded_splits({split: sorted(classes) for split, classes in csvs.items()}, members, contents,
                             options.image_size)
    rule = _ravi_rule(MINIIMAGENET_CSVS, splits, "CSV", options.image_size)
    return _Prepared(splits, rule, _raw_sources([*(folder / n for n in MINIIMAGENET_CSVS.values()), source]))


def _miniimagenet_from_pickles(folder: Path, options: _Options) -> _Prepared:
    """Ren et al.'s pickles: {'image_data': uint8 N×84×84×3, 'class_dict': {wnid: [indices]}} per split."""
    splits = {}
    for split, name in MINIIMAGENET_PICKLES.items():
        path = folder / name
        with _unreadable_as_error(path, "miniimagenet"):
            data = path.read_bytes()
        cache = _unpickle(data, path, "miniimagenet")
        if not isinstance(cache, dict) or not {"image_data", "class_dict"} <= cache.keys():
            raise RawDataError(f"{path}: not a mini-ImageNet cache pickle (keys image_data, class_dict); "
                               f"{_fix('miniimagenet')}")
        images = np.asarray(cache["image_data"])
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise RawDataError(f"{path}: image_data is {images.dtype} {images.shape}, expected uint8 "
                               f"N×H×W×3; {_fix('miniimagenet')}")
        classes = []
        for wnid in sorted(cache["class_dict"]):
            indices = list(cache["class_dict"][wnid])
            if not indices:
                raise _no_images(path, "miniimagenet", f"class {wnid}")
            resized = resize_rgb_arrays(images[indices], options.image_size, f"miniimagenet {wnid}")
            classes.append((wnid, resized))
        splits[split] = _build_split(classes, options.image_size)
    rule = _ravi_rule(MINIIMAGENET_PICKLES, splits, "class_dict", options.image_size)
    return _Prepared(splits, rule, _raw_sources([folder / n for n in MINIIMAGENET_PICKLES.values()]))


# ---- FC100 -----------------------------------------------------------------------------------------------

def colour_negative(images: np.ndarray) -> np.ndarray:
    """(256 - v) mod 256: what ToPILImage's `mul(255).byte()` makes of 0..255 floats (REFERENCE §7.1)."""
    return ((256 - images.astype(np.uint16)) % 256).astype(np.uint8)


def _cifar_pickle(contents: _RawContents, member: str, keys: Sequence[str]) -> dict:
    batch = _unpickle(contents.file(member), contents.path, "fc100")
    if not isinstance(batch, dict) or not set(keys) <= batch.keys():
        raise RawDataError(f"{contents.path}: member {member} is not a CIFAR-100 pickle with keys "
                           f"{list(keys)}; {_fix('fc100')}")
    return batch


def _superclass_of_each_class(fine: np.ndarray, coarse: np.ndarray, num_classes: int,
                              path: Path) -> list[int]:
    """The coarse label of every fine class, checked to be unique per class (the archive's own hierarchy)."""
    superclass_of = []
    for c in range(num_classes):
        labels = np.unique(coarse[fine == c])
        if len(labels) == 0:
            raise _no_images(path, "fc100", f"fine class {c}")
        if len(labels) > 1:
            raise RawDataError(f"{path}: fine class {c} has several coarse labels {labels.tolist()}; "
                               f"{_fix('fc100')}")
        superclass_of.append(int(labels[0]))
    unknown = set(superclass_of) - {c for ids in FC100_SUPERCLASSES.values() for c in ids}
    if unknown:
        raise RawDataError(f"{path}: coarse labels {sorted(unknown)} are not CIFAR-100's; {_fix('fc100')}")
    return superclass_of


def _prepare_fc100(folder: Path, options: _Options) -> _Prepared:
    """CIFAR-100 train + test merged (600 images per class), split by superclass as proc_cifar.py."""
    path = folder / FC100_ARCHIVE
    members = {name: f"{FC100_ROOT}/{name}" for name in ("train", "test", "meta")}
    contents = _read_raw(path, "fc100", options, keep=set(members.values()).__contains__)
    class_names = list(_cifar_pickle(contents, members["meta"], ["fine_label_names"])["fine_label_names"])
    batches = [_cifar_pickle(contents, members[part], ["data", "fine_labels", "coarse_labels"])
               for part in ("train", "test")]
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    if data.ndim != 2 or data.shape[1] != 3 * FC100_SIDE * FC100_SIDE:
        raise RawDataError(f"{path}: CIFAR data is {data.shape}, expected N×3072; {_fix('fc100')}")
    fine = np.concatenate([np.asarray(b["fine_labels"], dtype=np.int64) for b in batches])
    coarse = np.concatenate([np.asarray(b["coarse_labels"], dtype=np.int64) for b in batches])

    # Stored channel-major (R, G, B planes of 32×32, row-major): to [N, 32, 32, 3].
    images = data.reshape(-1, 3, FC100_SIDE, FC100_SIDE).transpose(0, 2, 3, 1)
    if options.fc100_negative:
        images = colour_negative(images)
    images = resize_rgb_arrays(np.ascontiguousarray(images), options.image_size, "fc100")

    split = fc100_class_split(_superclass_of_each_class(fine, coarse, len(class_names), path))
    splits = {name: _build_split([(class_names[c], images[fine == c]) for c in ids], options.image_size)
              for name, ids in split.items()}
    colours = ("colour-negative as the released code ((256 - v) mod 256 before the resize, REFERENCE 7.1)"
               if options.fc100_negative else "true colours (the released code's negative is not reproduced)")
    rule = ("FC100 (Oreshkin et al. 2018, MMAML proc_cifar.py): CIFAR-100 train+test merged, fine classes "
            "split by coarse superclass id, "
            + "; ".join(f"{s} {list(ids)}" for s, ids in FC100_SUPERCLASSES.items())
            + f" -> {_class_counts(split)} classes in fine-label order; 32 px -> PIL Lanczos "
            f"{options.image_size} px; {colours}.")
    return _Prepared(splits, rule, _raw_sources([path]))


# ---- CUB and Aircraft ------------------------------------------------------------------------------------

def _images_by_class(pairs: Sequence[tuple[str, str]], locate: Callable[[str, str], tuple[str, str]],
                     classes: Sequence[str], path: Path, dataset: str) -> dict[str, list[str]]:
    """{class: [image members in list order]} from `<id> <value>` pairs; every class must have images.

    locate(id, value) -> (class, archive member of the image).
    """
    grouped: dict[str, list[str]] = {c: [] for c in classes}
    for key, value in pairs:
        owner, member = locate(key, value)
        if owner not in grouped:
            raise RawDataError(f"{path}: image {key} {value} belongs to the unlisted class {owner!r}; "
                               f"{_fix(dataset)}")
        grouped[owner].append(member)
    for c, members in grouped.items():
        if not members:
            raise _no_images(path, dataset, f"class {c!r}")
    return grouped


def _mmaml_rule(split: Mapping[str, Sequence[str]]) -> str:
    return (f"np.random.RandomState({MMAML_SPLIT_SEED}).shuffle, then "
            f"{'/'.join(map(str, MMAML_SPLIT_PERCENTAGES))} percent -> {_class_counts(split)} classes")


def _prepare_cub(folder: Path, options: _Options) -> _Prepared:
    """MMAML proc_bird.py with the class folders sorted before its RandomState(123) shuffle, 70/15/15 %.

    Classes from classes.txt (the image folder names), images per class in images.txt order; grayscale
    images tiled to RGB; no bounding-box crop.
    """
    path = folder / CUB_ARCHIVE
    classes_txt, images_txt, image_root = (f"{CUB_ROOT}/classes.txt", f"{CUB_ROOT}/images.txt",
                                           f"{CUB_ROOT}/images/")
    contents = _read_raw(path, "cub", options, keep={classes_txt, images_txt}.__contains__,
                         decode=lambda name: name.startswith(image_root))
    class_folders = [folder_name for _, folder_name in contents.pairs(classes_txt)]
    images = _images_by_class(contents.pairs(images_txt),
                              lambda _, relative: (relative.split("/", 1)[0], image_root + relative),
                              class_folders, path, "cub")
    split = cub_class_split(class_folders)
    splits = _decoded_splits(split, images, contents, options.image_size)
    rule = (f"CUB-200-2011 (MMAML proc_bird.py): the {len(class_folders)} class folders of classes.txt "
            f"sorted (replacing MMAML's os.listdir order), {_mmaml_rule(split)}; images in images.txt order, "
            f"grayscale tiled to RGB, PIL Lanczos {options.image_size} px, no crop.")
    return _Prepared(splits, rule, _raw_sources([path]))


def _prepare_aircraft(folder: Path, options: _Options) -> _Prepared:
    """MMAML proc_aircraft.py, with its F/A-18 bug fixed.

    Variants in variants.txt order, RandomState(123) shuffle, 70/15/15 percent; images of
    images_variant_trainval.txt then images_variant_test.txt, lines split on the first space. The released
    script matched labels with '/' replaced by '-' against the unreplaced names, which sent every F/A-18
    image (a test class) to a non-existent train folder: its meta-test had 14 classes. Here every test
    class, F/A-18 included, keeps its images. The bottom copyright banner is kept, as in the reference.
    """
    path = folder / AIRCRAFT_ARCHIVE
    variants_txt, image_root = f"{AIRCRAFT_ROOT}/variants.txt", f"{AIRCRAFT_ROOT}/images/"
    image_lists = [f"{AIRCRAFT_ROOT}/{name}" for name in AIRCRAFT_IMAGE_LISTS]
    contents = _read_raw(path, "aircraft", options, keep={variants_txt, *image_lists}.__contains__,
                         decode=lambda name: name.startswith(image_root))
    variants = contents.lines(variants_txt)
    images = _images_by_class([pair for image_list in image_lists for pair in contents.pairs(image_list)],
                              lambda image_id, variant: (variant, f"{image_root}{image_id}.jpg"),
                              variants, path, "aircraft")
    split = aircraft_class_split(variants)
    splits = _decoded_splits(split, images, contents, options.image_size)
    rule = (f"FGVC-Aircraft 2013b (MMAML proc_aircraft.py): the {len(variants)} variants in variants.txt "
            f"order, {_mmaml_rule(split)}; images of {' + '.join(AIRCRAFT_IMAGE_LISTS)}. Fixed: the "
            f"released script lost every F/A-18 image (its '/' was replaced before matching), leaving 14 "
            f"test classes; here all test classes keep their images. Bottom banner kept; PIL Lanczos "
            f"{options.image_size} px.")
    return _Prepared(splits, rule, _raw_sources([path]))


_PREPARERS: dict[str, Callable[[Path, _Options], _Prepared]] = {
    "omniglot": _prepare_omniglot,
    "miniimagenet": _prepare_miniimagenet,
    "fc100": _prepare_fc100,
    "cub": _prepare_cub,
    "aircraft": _prepare_aircraft,
}
