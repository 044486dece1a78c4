"""`kml synth`: small synthetic archives in each dataset's official distribution format.

They let the whole pipeline run offline: `kml synth D --out M`, then `kml download D --mirror file://M
--checksums M/SHA256SUMS`, then `kml prepare D`. The archives carry the official file names and internal
layout (kml/data/prepare.py reads them exactly like the real ones) but few classes and images:

    dataset       files                                        classes (train/val/test after prepare)
    omniglot      images_background.zip, images_evaluation.zip  30 characters: prepare with
                                                                 --omniglot-train-classes 20 -> 20/0/10
    miniimagenet  train.csv, val.csv, test.csv, mini-imagenet.zip  10/5/5 (real wnids)
    fc100         cifar-100-python.tar.gz                        all 100 CIFAR-100 classes -> 60/20/20
    cub           CUB_200_2011.tgz                               34 real class folders -> 23/5/6
    aircraft      fgvc-aircraft-2013b.tar.gz                     34 real variant names -> 23/5/6

Every class has IMAGES_PER_CLASS images, so 5-shot 15-query tasks are drawn without replacement. A class
looks like a striped coloured shape on a random dim background: hue, shape, stripe frequency and angle
follow from the class index, so classes are distinct enough for a small conv net, while every image gets
its own position, size, stripe phase, colour jitter, background and noise so that tasks are not memorised
(Omniglot: each character its own random strokes, jittered per drawing). Output is a pure function of `seed`
(fixed archive timestamps), byte for byte.
"""

from __future__ import annotations

import colorsys
import csv
import gzip
import io
import json
import math
import pickle
import tarfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from kml import MODES, KmlError
from kml.data.download import update_sha256sums
from kml.data.images import encode_image
from kml.data.prepare import (
    AIRCRAFT_ARCHIVE,
    AIRCRAFT_ROOT,
    CUB_ARCHIVE,
    CUB_ROOT,
    FC100_ARCHIVE,
    FC100_ROOT,
    FC100_SIDE,
    MINIIMAGENET_CSVS,
    MINIIMAGENET_IMAGES_DIR,
    MINIIMAGENET_IMAGES_ZIP,
    OMNIGLOT_ARCHIVES,
    file_sha256,
)

CHECKSUMS_FILE = "SHA256SUMS"
IMAGES_PER_CLASS = 20  # 5 support + 15 query
OMNIGLOT_CHARACTERS = 30
OMNIGLOT_CHARACTERS_PER_ALPHABET = 10
OMNIGLOT_SIDE = 105
MINIIMAGENET_CLASSES = {"train": 10, "val": 5, "test": 5}
# 34 classes cut 70/15/15 percent by MMAML's int() arithmetic give 23/5/6: at least 5 classes in every split.
CUB_CLASSES = 34
AIRCRAFT_VARIANT_STRIDE = 3  # every third real variant name: 34 names, some with spaces and '/'
AIRCRAFT_BANNER_HEIGHT = 20
CIFAR_TRAIN_PER_CLASS = 16  # the rest of IMAGES_PER_CLASS goes to the CIFAR test pickle
CIFAR_CLASSES_PER_SUPERCLASS = 5
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
    if name not in _GENERATORS:
        raise KmlError(f"unknown dataset {name!r}; choose one of {', '.join(MODES)}")
    if omniglot_characters < 3:
        raise KmlError(f"omniglot_characters={omniglot_characters}: both Omniglot zips need characters; "
                       f"give at least 3")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, MODES.index(name)])
    generate = _GENERATORS[name]
    contents = generate(rng, omniglot_characters) if name == "omniglot" else generate(rng)
    paths = []
    for file_name, content in contents.items():
        path = out / file_name
        _write_raw_file(path, content)
        paths.append(path)
    update_sha256sums(out / CHECKSUMS_FILE, {path.name: file_sha256(path) for path in paths})
    return paths


# ---- Deterministic archives --------------------------------------------------------------------------------

Members = list[tuple[str, bytes]]


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


# ---- Class-specific pictures -------------------------------------------------------------------------------

_SHAPES: tuple[Callable[[np.ndarray, np.ndarray], np.ndarray], ...] = (
    lambda dx, dy: dx**2 + dy**2 <= 1.0,                                   # disc
    lambda dx, dy: np.maximum(abs(dx), abs(dy)) <= 0.85,                   # square
    lambda dx, dy: abs(dx) + abs(dy) <= 1.1,                               # diamond
    lambda dx, dy: (dx**2 + dy**2 <= 1.0) & (dx**2 + dy**2 >= 0.3),        # ring
    lambda dx, dy: ((abs(dx) <= 0.35) | (abs(dy) <= 0.35)) & (np.maximum(abs(dx), abs(dy)) <= 1.0),  # cross
)
_GOLDEN = (math.sqrt(5) - 1) / 2  # hue step that keeps successive hues far apart


@dataclass(frozen=True)
class _Style:
    hue: float  # of the shape's colour, in [0, 1)
    shape: int  # index into _SHAPES
    stripe_cycles: float  # across the image
    stripe_angle: float  # radians


def _class_style(index: int) -> _Style:
    """Every class its own hue (golden-ratio steps keep neighbours apart); shape and stripes vary too."""
    return _Style(hue=(index * _GOLDEN) % 1.0, shape=index % len(_SHAPES),
                  stripe_cycles=1.5 + (index // len(_SHAPES)) % 4, stripe_angle=index * 0.7)


def _picture(style: _Style, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """uint8 [height, width, 3]: the class's striped shape on a random dim background, with this image's
    own position, size, stripe phase, colour jitter and pixel noise."""
    y = np.linspace(-1, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, width, dtype=np.float32)[None, :]
    centre_x, centre_y = rng.uniform(-0.25, 0.25, size=2)
    radius = rng.uniform(0.45, 0.65)
    inside = _SHAPES[style.shape]((x - centre_x) / radius, (y - centre_y) / radius)
    along = x * math.cos(style.stripe_angle) + y * math.sin(style.stripe_angle)
    phase = rng.uniform(0, 2 * math.pi)
    shade = 0.55 + 0.45 * (0.5 + 0.5 * np.sin(math.pi * style.stripe_cycles * along + phase))
    hue = (style.hue + rng.uniform(-0.02, 0.02)) % 1.0
    colour = np.array(colorsys.hsv_to_rgb(hue, rng.uniform(0.7, 0.95), rng.uniform(0.8, 1.0)), np.float32)
    # The background carries no class information: the network has to look at the shape.
    background = np.array(colorsys.hsv_to_rgb(*rng.uniform((0, 0, 0.1), (1, 0.4, 0.35))), np.float32)
    image = np.where(inside[..., None], shade[..., None] * colour, background)
    image += (rng.random((height, width, 3), dtype=np.float32) - 0.5) * 0.2  # uniform pixel noise
    return (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)


def _jpeg(pixels: np.ndarray, grayscale: bool = False) -> bytes:
    image = Image.fromarray(pixels)
    return encode_image(image.convert("L") if grayscale else image, "JPEG")


def _reference_splits() -> dict:
    """The packaged split lists (kml/data/splits.json): real class names for the synthetic archives."""
    return json.loads(resources.files("kml.data").joinpath("splits.json").read_text())


# ---- Omniglot ----------------------------------------------------------------------------------------------

def _omniglot_drawing(strokes: list[np.ndarray], rng: np.random.Generator) -> bytes:
    """A 105×105 1-bit PNG: the character's strokes, jittered and shifted, dark on white as the originals."""
    image = Image.new("L", (OMNIGLOT_SIDE, OMNIGLOT_SIDE), 255)
    draw = ImageDraw.Draw(image)
    shift = rng.uniform(-5, 5, size=2)
    width = int(rng.integers(3, 6))
    for stroke in strokes:
        points = stroke + shift + rng.uniform(-3, 3, size=stroke.shape)
        draw.line([tuple(p) for p in points], fill=0, width=width, joint="curve")
    return encode_image(image.convert("1", dither=Image.Dither.NONE), "PNG")


def _omniglot(rng: np.random.Generator, characters: int) -> dict[str, Members]:
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
            members += [(f"{folder}/{character_number:04d}_{drawer:02d}.png", _omniglot_drawing(strokes, rng))
                        for drawer in range(1, IMAGES_PER_CLASS + 1)]
        files[archive] = members
    return files


# ---- mini-ImageNet -----------------------------------------------------------------------------------------

def _miniimagenet(rng: np.random.Generator) -> dict[str, bytes | Members]:
    """The Ravi CSVs (real wnids, the first classes of each split) and mini-imagenet.zip with images/*.jpg."""
    ravi = _reference_splits()["miniimagenet_ravi"]
    files: dict[str, bytes | Members] = {}
    images: Members = []
    class_index = 0
    for split, csv_name in MINIIMAGENET_CSVS.items():
        rows = [("filename", "label")]
        for wnid in ravi[split][:MINIIMAGENET_CLASSES[split]]:
            style = _class_style(class_index)
            class_index += 1
            for k in range(1, IMAGES_PER_CLASS + 1):
                file_name = f"{wnid}{k:08d}.jpg"  # official names: wnid + 8-digit index
                rows.append((file_name, wnid))
                images.append((f"{MINIIMAGENET_IMAGES_DIR}/{file_name}", _jpeg(_picture(style, 84, 84, rng))))
        text = io.StringIO()
        csv.writer(text, lineterminator="\n").writerows(rows)
        files[csv_name] = text.getvalue().encode()
    files[MINIIMAGENET_IMAGES_ZIP] = images
    return files


# ---- FC100 (CIFAR-100) -------------------------------------------------------------------------------------

def _cifar100_hierarchy() -> tuple[list[str], list[str], list[int]]:
    """CIFAR-100's fine_label_names, coarse_label_names and the superclass id of every fine class.

    From splits.json fc100_mmaml, which lists each split's superclasses (coarse_ids with coarse_names) and
    their fine names five per superclass in coarse_ids order. CIFAR-100 numbers fine (and coarse) classes
    alphabetically; tests/test_synth.py checks the result against the real `meta`.
    """
    fc100 = _reference_splits()["fc100_mmaml"]
    fine_names = sorted(name for split in fc100.values() for name in split["fine_names"])
    coarse_names = [""] * sum(len(split["coarse_ids"]) for split in fc100.values())
    superclass_of = [-1] * len(fine_names)
    for split in fc100.values():
        superclasses = zip(split["coarse_ids"], split["coarse_names"], strict=True)
        for j, (coarse_id, coarse_name) in enumerate(superclasses):
            coarse_names[coarse_id] = coarse_name
            first = j * CIFAR_CLASSES_PER_SUPERCLASS
            for name in split["fine_names"][first:first + CIFAR_CLASSES_PER_SUPERCLASS]:
                superclass_of[fine_names.index(name)] = coarse_id
    return fine_names, coarse_names, superclass_of


def _cifar_batch(label: str, images: list[np.ndarray], fine: list[int], superclass_of: list[int],
                 fine_names: list[str], rng: np.random.Generator) -> bytes:
    """A CIFAR-100 python pickle: data uint8 N×3072 (R, G, B planes), labels, names; shuffled as the real."""
    order = rng.permutation(len(images))
    data = np.stack([images[i].transpose(2, 0, 1).reshape(-1) for i in order])
    labels = [fine[i] for i in order]
    batch = {
        "filenames": [f"{fine_names[c]}_s_{n:06d}.png" for n, c in enumerate(labels)],
        "batch_label": label,
        "fine_labels": labels,
        "coarse_labels": [superclass_of[c] for c in labels],
        "data": data,
    }
    return pickle.dumps(batch, protocol=2)


def _fc100(rng: np.random.Generator) -> dict[str, Members]:
    fine_names, coarse_names, superclass_of = _cifar100_hierarchy()
    parts: dict[str, tuple[list[np.ndarray], list[int]]] = {"train": ([], []), "test": ([], [])}
    for c in range(len(fine_names)):
        style = _class_style(c)
        for k in range(IMAGES_PER_CLASS):
            images, labels = parts["train" if k < CIFAR_TRAIN_PER_CLASS else "test"]
            images.append(_picture(style, FC100_SIDE, FC100_SIDE, rng))
            labels.append(c)
    meta = pickle.dumps({"fine_label_names": fine_names, "coarse_label_names": coarse_names}, protocol=2)
    members = [(f"{FC100_ROOT}/meta", meta)]
    for part, label in (("train", "training batch 1 of 1"), ("test", "testing batch 1 of 1")):
        images, labels = parts[part]
        batch = _cifar_batch(label, images, labels, superclass_of, fine_names, rng)
        members.append((f"{FC100_ROOT}/{part}", batch))
    members.append((f"{FC100_ROOT}/file.txt~", b""))  # the official tarball carries this empty file too
    return {FC100_ARCHIVE: members}


# ---- CUB ---------------------------------------------------------------------------------------------------

CUB_README = b"""Synthetic stand-in for The Caltech-UCSD Birds-200-2011 Dataset, written by `kml synth cub`.
Same layout as the official archive: classes.txt, images.txt, image_class_labels.txt, train_test_split.txt,
bounding_boxes.txt and images/<class folder>/<image>.jpg; the pictures are class-coloured shapes, not birds.
"""
# One image in this many is stored as a grayscale JPEG, as some real CUB photographs are.
CUB_GRAYSCALE_EVERY = 9


def _cub(rng: np.random.Generator) -> dict[str, Members]:
    cub = _reference_splits()["cub_mmaml_sorted"]
    class_folders = sorted(cub["train"] + cub["val"] + cub["test"])[:CUB_CLASSES]
    tables: dict[str, list[str]] = {name: [] for name in
                                    ("images", "image_class_labels", "train_test_split", "bounding_boxes")}
    images: Members = []
    image_id = 0
    for class_id, folder in enumerate(class_folders, start=1):
        style = _class_style(class_id - 1)
        species = folder.split(".", 1)[1]
        for k in range(1, IMAGES_PER_CLASS + 1):
            image_id += 1
            height, width = int(rng.integers(64, 96)), int(rng.integers(72, 112))  # varied, as photographs
            relative = f"{folder}/{species}_{k:04d}_{image_id}.jpg"
            pixels = _picture(style, height, width, rng)
            grayscale = image_id % CUB_GRAYSCALE_EVERY == 0
            images.append((f"{CUB_ROOT}/images/{relative}", _jpeg(pixels, grayscale)))
            tables["images"].append(f"{image_id} {relative}")
            tables["image_class_labels"].append(f"{image_id} {class_id}")
            tables["train_test_split"].append(f"{image_id} {k % 2}")
            tables["bounding_boxes"].append(f"{image_id} 0.0 0.0 {float(width)} {float(height)}")
    classes = [f"{class_id} {folder}" for class_id, folder in enumerate(class_folders, start=1)]
    metadata = [(f"{CUB_ROOT}/README", CUB_README), (f"{CUB_ROOT}/classes.txt", _text(classes))]
    metadata += [(f"{CUB_ROOT}/{name}.txt", _text(lines)) for name, lines in tables.items()]
    return {CUB_ARCHIVE: metadata + images}


def _text(lines: list[str]) -> bytes:
    return "".join(f"{line}\n" for line in lines).encode()


# ---- Aircraft ----------------------------------------------------------------------------------------------

# Per class, image k goes to images_variant_{train,val,test}.txt by k mod 3 (the official split is ~1/3 each).
AIRCRAFT_PARTS = ("train", "val", "test")
AIRCRAFT_CONTENT_SIZE = (64, 96)  # height, width above the banner


def _aircraft_photo(style: _Style, rng: np.random.Generator) -> bytes:
    """A picture above a dark ~20 px banner of light, text-like marks, like the official copyright line."""
    height, width = AIRCRAFT_CONTENT_SIZE
    banner = np.full((AIRCRAFT_BANNER_HEIGHT, width, 3), 24, dtype=np.uint8)
    for start in range(4, width // 2, 6):
        top = 6 + int(rng.integers(0, 3))
        banner[top:top + 8, start:start + 4] = 220
    return _jpeg(np.concatenate([_picture(style, height, width, rng), banner]))


def _aircraft(rng: np.random.Generator) -> dict[str, Members]:
    variants = _reference_splits()["aircraft_mmaml"]["variants_order_assumed"][::AIRCRAFT_VARIANT_STRIDE]
    ids = iter(rng.permutation(len(variants) * IMAGES_PER_CLASS) + 1_000_000)  # official ids have 7 digits
    lists: dict[str, list[tuple[str, str]]] = {part: [] for part in AIRCRAFT_PARTS}
    images: Members = []
    for index, variant in enumerate(variants):
        style = _class_style(index)
        for k in range(IMAGES_PER_CLASS):
            image_id = f"{next(ids):07d}"
            lists[AIRCRAFT_PARTS[k % len(AIRCRAFT_PARTS)]].append((image_id, variant))
            images.append((f"{AIRCRAFT_ROOT}/images/{image_id}.jpg", _aircraft_photo(style, rng)))
    lists["trainval"] = lists["train"] + lists["val"]
    members = [(f"{AIRCRAFT_ROOT}/variants.txt", _text(variants))]
    members += [(f"{AIRCRAFT_ROOT}/images_variant_{part}.txt", _text([f"{i} {v}" for i, v in sorted(pairs)]))
                for part, pairs in lists.items()]
    return {AIRCRAFT_ARCHIVE: members + images}


_GENERATORS: dict[str, Callable[..., dict[str, bytes | Members]]] = {
    "omniglot": _omniglot,
    "miniimagenet": _miniimagenet,
    "fc100": _fc100,
    "cub": _cub,
    "aircraft": _aircraft,
}
