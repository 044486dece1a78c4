"""mini-ImageNet (docs/specification.md §2.4): Ravi & Larochelle's 64/16/20 classes of 600 images.

It has no official archive, so two source sets: `pickles` (the default), learn2learn's copy of Ren et al.'s
84×84 pickles, or `images`, the released code's image zip with the Ravi split CSVs. Classes are ordered by
WordNet id.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from kml.data.hdf5 import Split
from kml.data.images import resize_rgb_arrays
from kml.data.raw import (
    Prepared,
    PrepareOptions,
    RawDataError,
    build_split,
    class_counts,
    decoded_splits,
    no_images,
    raw_sources,
    read_raw,
    refetch_hint,
    unpickle,
    unreadable_as_error,
)
from kml.data.sources import Dataset, Source
from kml.data.splits import reference_splits
from kml.data.standins import IMAGES_PER_CLASS, Members, RawFiles, StandInOptions, class_style, jpeg, picture

NAME = "miniimagenet"

# ---- Sources and raw layout ------------------------------------------------------------------------------

MINIIMAGENET_PICKLES = {
    "train": "mini-imagenet-cache-train.pkl",
    "val": "mini-imagenet-cache-validation.pkl",
    "test": "mini-imagenet-cache-test.pkl",
}
MINIIMAGENET_CSVS = {"train": "train.csv", "val": "val.csv", "test": "test.csv"}
MINIIMAGENET_IMAGES_ZIP = "mini-imagenet.zip"
# The zip's members are images/<file>.jpg; instead of the zip, that folder may be placed by hand.
MINIIMAGENET_IMAGES_DIR = "images"

_LEARN2LEARN_ZENODO = "https://zenodo.org/record/7978538/files/"
_RAVI_SPLITS = "https://raw.githubusercontent.com/twitter/meta-learning-lstm/master/data/miniImagenet/"
# Google Drive's direct-download endpoint; confirm=t skips the virus-scan page it shows for large files.
_DRIVE_DOWNLOAD = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="
_MMAML_DRIVE_ID = "1HkgrkAwukzEZA0TpO7010PkAOREb2Nuk"


def _pickle_source(file_name: str) -> Source:
    return Source(
        file_name=file_name,
        urls=(_LEARN2LEARN_ZENODO + file_name,),
        note="learn2learn's copy of the Ren et al. pickles; no checksum is published, so the sha256 seen on "
             "first download is recorded in checksums.lock",
    )


def _ravi_source(file_name: str, size: int, md5: str) -> Source:
    return Source(file_name=file_name, urls=(_RAVI_SPLITS + file_name,), size=size, md5=md5,
                  note="Ravi & Larochelle split file (twitter/meta-learning-lstm), identical to MMAML's copy")


SOURCES = Dataset(NAME, {
    "pickles": tuple(_pickle_source(file_name) for file_name in MINIIMAGENET_PICKLES.values()),
    "images": (
        _ravi_source(MINIIMAGENET_CSVS["train"], 1_228_815, "9525e1538f67719f18f1936bf8d0782d"),
        _ravi_source(MINIIMAGENET_CSVS["val"], 307_215, "ce315ce99b41fbf84fa6acd69315d918"),
        _ravi_source(MINIIMAGENET_CSVS["test"], 384_015, "5b89df877c6cbe5d291e43118a2a9591"),
        Source(MINIIMAGENET_IMAGES_ZIP, (_DRIVE_DOWNLOAD + _MMAML_DRIVE_ID,),
               stand_in_folder=MINIIMAGENET_IMAGES_DIR,
               note=f"MMAML's image archive exists only on Google Drive (file id {_MMAML_DRIVE_ID}, "
                    f"https://drive.google.com/file/d/{_MMAML_DRIVE_ID}/view) and has no published "
                    f"checksum; instead of the zip, its {MINIIMAGENET_IMAGES_DIR}/ folder (flat *.jpg "
                    "named as in the CSVs) may be placed in the raw folder"),
    ),
})

# ---- Preparer (the split is the Ravi files') -------------------------------------------------------------

def prepare(folder: Path, options: PrepareOptions) -> Prepared:
    """Ravi & Larochelle's 64/16/20 split: from Ren et al.'s pickles if present, else the CSVs + images."""
    if all((folder / name).is_file() for name in MINIIMAGENET_PICKLES.values()):
        return _from_pickles(folder, options)
    if all((folder / name).is_file() for name in MINIIMAGENET_CSVS.values()):
        return _from_images(folder, options)
    raise RawDataError(
        f"{folder}: found neither the mini-ImageNet pickles ({', '.join(MINIIMAGENET_PICKLES.values())}) "
        f"nor the Ravi CSVs ({', '.join(MINIIMAGENET_CSVS.values())}); run `kml download miniimagenet` "
        f"(or `kml download miniimagenet --variant images`)")


def _ravi_rule(files: Mapping[str, str], splits: Mapping[str, Split], image_order: str, size: int) -> str:
    return (f"mini-ImageNet: Ravi & Larochelle split by {', '.join(files.values())} "
            f"({class_counts({s: split.class_names for s, split in splits.items()})} classes); classes "
            f"sorted by wnid, images in {image_order} order; PIL Lanczos resize to {size}.")


def _read_ravi_csv(path: Path) -> dict[str, list[str]]:
    """{wnid: image file names in CSV order} of one `filename,label` CSV."""
    with unreadable_as_error(path, NAME):
        rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    if not rows or rows[0] != ["filename", "label"] or any(len(row) != 2 for row in rows[1:]):
        raise RawDataError(f"{path}: not a Ravi split CSV (header 'filename,label', two columns); "
                           f"{refetch_hint(NAME)}")
    classes: dict[str, list[str]] = {}
    for filename, wnid in rows[1:]:
        classes.setdefault(wnid, []).append(filename)
    return classes


def _from_images(folder: Path, options: PrepareOptions) -> Prepared:
    """CSV variant: images from mini-imagenet.zip (members images/<file>.jpg), else an images/ folder."""
    csvs = {split: _read_ravi_csv(folder / name) for split, name in MINIIMAGENET_CSVS.items()}
    zip_path, image_dir = folder / MINIIMAGENET_IMAGES_ZIP, folder / MINIIMAGENET_IMAGES_DIR
    source = zip_path if zip_path.exists() or not image_dir.is_dir() else image_dir
    members = {wnid: [f"{MINIIMAGENET_IMAGES_DIR}/{file}" for file in files]
               for classes in csvs.values() for wnid, files in classes.items()}
    wanted = {member for class_members in members.values() for member in class_members}
    contents = read_raw(source, NAME, options, decode=wanted.__contains__)
    splits = decoded_splits({split: sorted(classes) for split, classes in csvs.items()}, members, contents,
                            options.image_size)
    rule = _ravi_rule(MINIIMAGENET_CSVS, splits, "CSV", options.image_size)
    return Prepared(splits, rule, raw_sources([*(folder / n for n in MINIIMAGENET_CSVS.values()), source]))


def _from_pickles(folder: Path, options: PrepareOptions) -> Prepared:
    """Ren et al.'s pickles: {'image_data': uint8 N×84×84×3, 'class_dict': {wnid: [indices]}} per split."""
    splits = {}
    for split, name in MINIIMAGENET_PICKLES.items():
        path = folder / name
        with unreadable_as_error(path, NAME):
            data = path.read_bytes()
        cache = unpickle(data, path, NAME)
        if not isinstance(cache, dict) or not {"image_data", "class_dict"} <= cache.keys():
            raise RawDataError(f"{path}: not a mini-ImageNet cache pickle (keys image_data, class_dict); "
                               f"{refetch_hint(NAME)}")
        images = np.asarray(cache["image_data"])
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise RawDataError(f"{path}: image_data is {images.dtype} {images.shape}, expected uint8 "
                               f"N×H×W×3; {refetch_hint(NAME)}")
        classes = []
        for wnid in sorted(cache["class_dict"]):
            indices = list(cache["class_dict"][wnid])
            if not indices:
                raise no_images(path, NAME, f"class {wnid}")
            resized = resize_rgb_arrays(images[indices], options.image_size, f"miniimagenet {wnid}")
            classes.append((wnid, resized))
        splits[split] = build_split(classes, options.image_size)
    rule = _ravi_rule(MINIIMAGENET_PICKLES, splits, "class_dict", options.image_size)
    return Prepared(splits, rule, raw_sources([folder / n for n in MINIIMAGENET_PICKLES.values()]))


# ---- Synthetic stand-in ----------------------------------------------------------------------------------

# The first classes of each Ravi split, with their real wnids.
MINIIMAGENET_CLASSES = {"train": 10, "val": 5, "test": 5}


def synthesize(rng: np.random.Generator, options: StandInOptions) -> RawFiles:
    """The `images` variant: the Ravi CSVs and mini-imagenet.zip with images/*.jpg."""
    ravi = reference_splits()["miniimagenet_ravi"]
    files: RawFiles = {}
    images: Members = []
    class_index = 0
    for split, csv_name in MINIIMAGENET_CSVS.items():
        rows = [("filename", "label")]
        for wnid in ravi[split][:MINIIMAGENET_CLASSES[split]]:
            style = class_style(class_index)
            class_index += 1
            for k in range(1, IMAGES_PER_CLASS + 1):
                file_name = f"{wnid}{k:08d}.jpg"  # official names: wnid + 8-digit index
                rows.append((file_name, wnid))
                images.append((f"{MINIIMAGENET_IMAGES_DIR}/{file_name}", jpeg(picture(style, 84, 84, rng))))
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        files[csv_name] = text.getvalue().encode()
    files[MINIIMAGENET_IMAGES_ZIP] = images
    return files
