"""FGVC-Aircraft 2013b (docs/specification.md §2.7): 100 variants of 100 images, split as MMAML's
proc_aircraft.py, its F/A-18 bug fixed.

The variants are taken in variants.txt order (the archive's own, so no sort) into MMAML's seeded 70/15/15
percent shuffle. The bottom copyright banner of every image is kept, as in the released code.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kml.data.raw import Prepared, PrepareOptions, decoded_splits, images_by_class, raw_sources, read_raw
from kml.data.sources import Dataset, Source
from kml.data.splits import mmaml_class_split, mmaml_rule, reference_splits
from kml.data.standins import (
    IMAGES_PER_CLASS,
    Members,
    StandInOptions,
    Style,
    class_style,
    jpeg,
    picture,
    text_file,
)

NAME = "aircraft"

# ---- Sources and raw layout ------------------------------------------------------------------------------

AIRCRAFT_ARCHIVE = "fgvc-aircraft-2013b.tar.gz"
AIRCRAFT_ROOT = "fgvc-aircraft-2013b/data"
_VARIANTS_TXT = f"{AIRCRAFT_ROOT}/variants.txt"
_IMAGE_ROOT = f"{AIRCRAFT_ROOT}/images/"
# Image lists MMAML pools, in its order (proc_aircraft.py).
AIRCRAFT_IMAGE_LISTS = ("images_variant_trainval.txt", "images_variant_test.txt")
SOURCES = Dataset(NAME, {"official": (
    # The only published sha256 comes from a single unrelated script and is not trusted
    # (docs/specification.md §2.1).
    Source(AIRCRAFT_ARCHIVE,
           (f"https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/{AIRCRAFT_ARCHIVE}",),
           size=2_753_340_328, md5="d4acdd33327262359767eeaa97a4f732"),
)})

# ---- Split rule ------------------------------------------------------------------------------------------

def aircraft_class_split(variants: Sequence[str]) -> dict[str, list[str]]:
    """MMAML's Aircraft rule on variants.txt order (no sort: that order is the archive's own, fixed)."""
    return mmaml_class_split(variants)


# ---- Preparer --------------------------------------------------------------------------------------------

def prepare(folder: Path, options: PrepareOptions) -> Prepared:
    """MMAML proc_aircraft.py, with its F/A-18 bug fixed.

    Variants in variants.txt order, RandomState(123) shuffle, 70/15/15 percent; images of
    images_variant_trainval.txt then images_variant_test.txt, lines split on the first space. The released
    script matched labels with '/' replaced by '-' against the unreplaced names, which sent every F/A-18
    image (a test class) to a non-existent train folder: its meta-test had 14 classes. Here every test
    class, F/A-18 included, keeps its images. The bottom copyright banner is kept, as in the reference.
    """
    path = folder / AIRCRAFT_ARCHIVE
    image_lists = [f"{AIRCRAFT_ROOT}/{name}" for name in AIRCRAFT_IMAGE_LISTS]
    contents = read_raw(path, NAME, options, keep={_VARIANTS_TXT, *image_lists}.__contains__,
                        decode=lambda name: name.startswith(_IMAGE_ROOT))
    variants = contents.lines(_VARIANTS_TXT)
    images = images_by_class([pair for image_list in image_lists for pair in contents.pairs(image_list)],
                             lambda image_id, variant: (variant, f"{_IMAGE_ROOT}{image_id}.jpg"),
                             variants, path, NAME)
    split = aircraft_class_split(variants)
    splits = decoded_splits(split, images, contents, options.image_size)
    rule = (f"FGVC-Aircraft 2013b (MMAML proc_aircraft.py): the {len(variants)} variants in variants.txt "
            f"order, {mmaml_rule(split)}; images of {' + '.join(AIRCRAFT_IMAGE_LISTS)}. Fixed: the "
            f"released script lost every F/A-18 image (its '/' was replaced before matching), leaving 14 "
            f"test classes; here all test classes keep their images. Bottom banner kept; PIL Lanczos "
            f"{options.image_size} px.")
    return Prepared(splits, rule, raw_sources([path]))


# ---- Synthetic stand-in ----------------------------------------------------------------------------------

# Every third real variant name: 34 names, some with spaces and '/'; 23/5/6 classes after prepare.
AIRCRAFT_VARIANT_STRIDE = 3
AIRCRAFT_BANNER_HEIGHT = 20
# Per class, image k goes to images_variant_{train,val,test}.txt by k mod 3 (the official split is ~1/3 each).
AIRCRAFT_PARTS = ("train", "val", "test")
AIRCRAFT_CONTENT_SIZE = (64, 96)  # height, width above the banner


def _photo(style: Style, rng: np.random.Generator) -> bytes:
    """A picture above a dark ~20 px banner of light, text-like marks, like the official copyright line."""
    height, width = AIRCRAFT_CONTENT_SIZE
    banner = np.full((AIRCRAFT_BANNER_HEIGHT, width, 3), 24, dtype=np.uint8)
    for start in range(4, width // 2, 6):
        top = 6 + int(rng.integers(0, 3))
        banner[top:top + 8, start:start + 4] = 220
    return jpeg(np.concatenate([picture(style, height, width, rng), banner]))


def synthesize(rng: np.random.Generator, options: StandInOptions) -> dict[str, Members]:
    """fgvc-aircraft-2013b.tar.gz: variants.txt, the images_variant_*.txt lists and images/<id>.jpg."""
    variants = reference_splits()["aircraft_mmaml"]["variants_order_assumed"][::AIRCRAFT_VARIANT_STRIDE]
    ids = iter(rng.permutation(len(variants) * IMAGES_PER_CLASS) + 1_000_000)  # official ids have 7 digits
    lists: dict[str, list[tuple[str, str]]] = {part: [] for part in AIRCRAFT_PARTS}
    images: Members = []
    for index, variant in enumerate(variants):
        style = class_style(index)
        for k in range(IMAGES_PER_CLASS):
            image_id = f"{next(ids):07d}"
            lists[AIRCRAFT_PARTS[k % len(AIRCRAFT_PARTS)]].append((image_id, variant))
            images.append((f"{_IMAGE_ROOT}{image_id}.jpg", _photo(style, rng)))
    lists["trainval"] = lists["train"] + lists["val"]
    members = [(_VARIANTS_TXT, text_file(variants))]
    members += [(f"{AIRCRAFT_ROOT}/images_variant_{part}.txt",
                 text_file([f"{i} {v}" for i, v in sorted(pairs)])) for part, pairs in lists.items()]
    return {AIRCRAFT_ARCHIVE: members + images}
