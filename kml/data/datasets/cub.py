"""CUB-200-2011 (docs/specification.md §2.6): 200 bird species, 11,788 photographs (some grayscale), split
as MMAML's proc_bird.py.

The class folders are sorted before MMAML's seeded 70/15/15 percent shuffle (the released code shuffled the
file-system order of os.listdir); grayscale images are tiled to RGB, with no bounding-box crop.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kml.data.raw import Prepared, PrepareOptions, decoded_splits, images_by_class, raw_sources, read_raw
from kml.data.sources import Dataset, Source
from kml.data.splits import mmaml_class_split, mmaml_rule, reference_splits
from kml.data.standins import IMAGES_PER_CLASS, Members, StandInOptions, class_style, jpeg, picture, text_file

NAME = "cub"

# ---- Sources and raw layout ------------------------------------------------------------------------------

CUB_ARCHIVE = "CUB_200_2011.tgz"
CUB_ROOT = "CUB_200_2011"
_CLASSES_TXT = f"{CUB_ROOT}/classes.txt"  # "<class id> <class folder>" lines
_IMAGES_TXT = f"{CUB_ROOT}/images.txt"  # "<image id> <class folder>/<file>" lines
_IMAGE_ROOT = f"{CUB_ROOT}/images/"
SOURCES = Dataset(NAME, {"official": (
    Source(CUB_ARCHIVE,
           (f"https://data.caltech.edu/records/65de6-vp158/files/{CUB_ARCHIVE}?download=1",
            f"https://zenodo.org/record/8000562/files/{CUB_ARCHIVE}"),
           size=1_150_585_339, md5="97eceeb196236b17998738112f37df78",
           sha256="0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081",
           note="the legacy URL used by MMAML (http://www.vision.caltech.edu/visipedia-data/CUB-200-2011/"
                f"{CUB_ARCHIVE}) is no longer served; a Google Drive copy has id "
                "1hbzc_P1FuxMkcabkgn9ZKinBwW683j45"),
)})

# ---- Split rule ------------------------------------------------------------------------------------------

def cub_class_split(class_folders: Sequence[str]) -> dict[str, list[str]]:
    """MMAML's CUB rule with the folders sorted first (it shuffled the file-system order of os.listdir)."""
    return mmaml_class_split(sorted(class_folders))


# ---- Preparer --------------------------------------------------------------------------------------------

def prepare(folder: Path, options: PrepareOptions) -> Prepared:
    """MMAML proc_bird.py with the class folders sorted before its RandomState(123) shuffle, 70/15/15 %.

    Classes from classes.txt (the image folder names), images per class in images.txt order; grayscale
    images tiled to RGB; no bounding-box crop.
    """
    path = folder / CUB_ARCHIVE
    contents = read_raw(path, NAME, options, keep={_CLASSES_TXT, _IMAGES_TXT}.__contains__,
                        decode=lambda name: name.startswith(_IMAGE_ROOT))
    class_folders = [folder_name for _, folder_name in contents.pairs(_CLASSES_TXT)]
    images = images_by_class(contents.pairs(_IMAGES_TXT),
                             lambda _, relative: (relative.split("/", 1)[0], _IMAGE_ROOT + relative),
                             class_folders, path, NAME)
    split = cub_class_split(class_folders)
    splits = decoded_splits(split, images, contents, options.image_size)
    rule = (f"CUB-200-2011 (MMAML proc_bird.py): the {len(class_folders)} class folders of classes.txt "
            f"sorted (replacing MMAML's os.listdir order), {mmaml_rule(split)}; images in images.txt order, "
            f"grayscale tiled to RGB, PIL Lanczos {options.image_size} px, no crop.")
    return Prepared(splits, rule, raw_sources([path]))


# ---- Synthetic stand-in ----------------------------------------------------------------------------------

CUB_README = b"""Synthetic stand-in for The Caltech-UCSD Birds-200-2011 Dataset, written by `kml synth cub`.
Same layout as the official archive: classes.txt, images.txt, image_class_labels.txt, train_test_split.txt,
bounding_boxes.txt and images/<class folder>/<image>.jpg; the pictures are class-coloured shapes, not birds.
"""
# The first real class folders. 34 classes cut 70/15/15 percent by MMAML's int() arithmetic give 23/5/6: at
# least 5 classes in every split.
CUB_CLASSES = 34
# One image in this many is stored as a grayscale JPEG, as some real CUB photographs are.
CUB_GRAYSCALE_EVERY = 9


def synthesize(rng: np.random.Generator, options: StandInOptions) -> dict[str, Members]:
    """CUB_200_2011.tgz: the official metadata tables and images/<class folder>/<image>.jpg."""
    cub = reference_splits()["cub_mmaml_sorted"]
    class_folders = sorted(cub["train"] + cub["val"] + cub["test"])[:CUB_CLASSES]
    tables: dict[str, list[str]] = {name: [] for name in
                                    ("images", "image_class_labels", "train_test_split", "bounding_boxes")}
    images: Members = []
    image_id = 0
    for class_id, folder in enumerate(class_folders, start=1):
        style = class_style(class_id - 1)
        species = folder.split(".", 1)[1]
        for k in range(1, IMAGES_PER_CLASS + 1):
            image_id += 1
            height, width = int(rng.integers(64, 96)), int(rng.integers(72, 112))  # varied, as photographs
            relative = f"{folder}/{species}_{k:04d}_{image_id}.jpg"
            pixels = picture(style, height, width, rng)
            grayscale = image_id % CUB_GRAYSCALE_EVERY == 0
            images.append((_IMAGE_ROOT + relative, jpeg(pixels, grayscale)))
            tables["images"].append(f"{image_id} {relative}")
            tables["image_class_labels"].append(f"{image_id} {class_id}")
            tables["train_test_split"].append(f"{image_id} {k % 2}")
            tables["bounding_boxes"].append(f"{image_id} 0.0 0.0 {float(width)} {float(height)}")
    classes = [f"{class_id} {folder}" for class_id, folder in enumerate(class_folders, start=1)]
    metadata = [(f"{CUB_ROOT}/README", CUB_README), (_CLASSES_TXT, text_file(classes))]
    metadata += [(f"{CUB_ROOT}/{name}.txt", text_file(lines)) for name, lines in tables.items()]
    return {CUB_ARCHIVE: metadata + images}
