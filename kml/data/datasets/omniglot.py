"""Omniglot (docs/specification.md §2.3): two zips of 105×105 drawings, 20 per character.

Split (MMAML): the characters of both zips sorted by relative path, the first N meta-train and the rest
meta-test, no validation; sorting replaces the released code's file-system glob order. Drawings are resized in
grayscale, inverted so that strokes are bright and tiled to three channels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from kml import KmlError
from kml.data.images import encode_image
from kml.data.raw import (
    Prepared,
    PrepareOptions,
    RawDataError,
    build_split,
    raw_sources,
    read_raw,
    refetch_hint,
)
from kml.data.sources import Dataset, Source
from kml.data.standins import IMAGES_PER_CLASS, Members, StandInOptions

NAME = "omniglot"

# ---- Sources and raw layout ------------------------------------------------------------------------------

# Background first: the split takes the first characters of the sorted background+evaluation list.
OMNIGLOT_ARCHIVES = ("images_background.zip", "images_evaluation.zip")
_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
SOURCES = Dataset(NAME, {"official": (
    Source(OMNIGLOT_ARCHIVES[0], (_URL + OMNIGLOT_ARCHIVES[0],), size=9_464_212,
           md5="68d2efa1b9178cc56df9314c21c6e718",
           sha256="ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640"),
    Source(OMNIGLOT_ARCHIVES[1], (_URL + OMNIGLOT_ARCHIVES[1],), size=6_462_886,
           md5="6b91aef0f799c5bb55b94e3f2daec811",
           sha256="1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee"),
)})
_LAYOUT = "<top>/<Alphabet>/<characterNN>/<drawing>.png"

# ---- Split rule ------------------------------------------------------------------------------------------

OMNIGLOT_TRAIN_CLASSES = 1100  # main.py --num-train-classes default; the rest is meta-test, no val


def omniglot_split(characters: Sequence[str], train_classes: int) -> dict[str, list[str]]:
    """MMAML's Omniglot rule on sorted character paths: the first `train_classes` train, the rest test."""
    ordered = sorted(characters)
    if not 0 < train_classes < len(ordered):
        raise KmlError(f"omniglot: {train_classes} train classes requested but the archives hold "
                       f"{len(ordered)} characters; choose 1..{len(ordered) - 1} with "
                       f"--omniglot-train-classes")
    return {"train": ordered[:train_classes], "val": [], "test": ordered[train_classes:]}


# ---- Preparer --------------------------------------------------------------------------------------------

def prepare(folder: Path, options: PrepareOptions) -> Prepared:
    """Characters of both zips, sorted by relative path, the first N train, the rest test (MMAML).

    Each zip must hold a single top folder, read under the zip's own name (images_background/,
    images_evaluation/) whatever it is called inside, so the official subsets
    (images_background_small1.zip, top folder images_background_small1/) can stand in for the full zips.
    Classes are named `images_background/<Alphabet>/<characterNN>`; drawings are ordered by file name.
    """
    drawings: dict[str, list[tuple[str, np.ndarray]]] = {}
    paths = [folder / name for name in OMNIGLOT_ARCHIVES]
    for path in paths:
        contents = read_raw(path, NAME, options, decode=lambda name: name.endswith(".png"),
                            inverted_grayscale=True)
        tops = {name.split("/", 1)[0] for name in contents.images}
        if len(tops) != 1:
            raise RawDataError(f"{path}: expected PNG drawings under one top folder ({_LAYOUT}), found top "
                               f"folders {sorted(tops)}; {refetch_hint(NAME)}")
        for name, image in contents.images.items():
            parts = name.split("/")
            if len(parts) != 4:
                raise RawDataError(f"{path}: member {name} is not {_LAYOUT}; {refetch_hint(NAME)}")
            character = "/".join([path.name.removesuffix(".zip"), parts[1], parts[2]])
            drawings.setdefault(character, []).append((parts[3], image))

    split = omniglot_split(list(drawings), options.omniglot_train_classes)
    splits = {
        name: build_split([(c, np.stack([image for _, image in sorted(drawings[c], key=lambda d: d[0])]))
                           for c in characters], options.image_size)
        for name, characters in split.items()
    }
    rule = (f"Omniglot (MMAML): the {len(drawings)} characters of {' + '.join(OMNIGLOT_ARCHIVES)} sorted "
            f"by relative path (background first); the first {len(split['train'])} are train, the remaining "
            f"{len(split['test'])} test; no validation split. Sorting replaces MMAML's file-system glob "
            f"order. Drawings: grayscale, Lanczos resize, inverted (strokes bright), tiled to 3 channels.")
    return Prepared(splits, rule, raw_sources(paths))


# ---- Synthetic stand-in ----------------------------------------------------------------------------------

# Characters of the stand-in, two thirds (rounded up) background: prepare it with --omniglot-train-classes 20
# for a 20/0/10 split.
OMNIGLOT_CHARACTERS = 30
OMNIGLOT_CHARACTERS_PER_ALPHABET = 10
OMNIGLOT_SIDE = 105


def _drawing(strokes: list[np.ndarray], rng: np.random.Generator) -> bytes:
    """A 105×105 1-bit PNG: the character's strokes, jittered and shifted, dark on white as the originals."""
    image = Image.new("L", (OMNIGLOT_SIDE, OMNIGLOT_SIDE), 255)
    draw = ImageDraw.Draw(image)
    shift = rng.uniform(-5, 5, size=2)
    width = int(rng.integers(3, 6))
    for stroke in strokes:
        points = stroke + shift + rng.uniform(-3, 3, size=stroke.shape)
        draw.line([tuple(p) for p in points], fill=0, width=width, joint="curve")
    return encode_image(image.convert("1", dither=Image.Dither.NONE), "PNG")


def synthesize(rng: np.random.Generator, options: StandInOptions) -> dict[str, Members]:
    """Both zips in the official layout; each character its own random strokes, jittered per drawing."""
    characters = options.omniglot_characters
    background = characters - characters // 3
    counts = {OMNIGLOT_ARCHIVES[0]: background, OMNIGLOT_ARCHIVES[1]: characters - background}
    margin = OMNIGLOT_SIDE // 5  # keeps the strokes inside the frame after jitter
    files, character_number, alphabet_number = {}, 0, 0
    for archive, count in counts.items():
        members = []
        for i in range(count):
            character_number += 1
            alphabet_number += i % OMNIGLOT_CHARACTERS_PER_ALPHABET == 0
            folder = (f"{archive.removesuffix('.zip')}/Synthetic_{alphabet_number:02d}/"
                      f"character{i % OMNIGLOT_CHARACTERS_PER_ALPHABET + 1:02d}")
            strokes = [rng.uniform(margin, OMNIGLOT_SIDE - margin, size=(3, 2))
                       for _ in range(int(rng.integers(2, 5)))]
            # Official drawing names: <character number>_<drawer>.png
            members += [(f"{folder}/{character_number:04d}_{drawer:02d}.png", _drawing(strokes, rng))
                        for drawer in range(1, IMAGES_PER_CLASS + 1)]
        files[archive] = members
    return files
