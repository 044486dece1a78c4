"""FC100 (docs/specification.md §2.5): CIFAR-100 split by superclass (Oreshkin et al. 2018), as MMAML's
proc_cifar.py.

CIFAR-100's train and test sets are merged (600 images per fine class) and the fine classes split by their
coarse superclass id. The released code trained on photographic negatives of the images; kml stores the true
colours unless asked for the negatives.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from kml.data.hdf5 import SPLITS
from kml.data.images import resize_rgb_arrays
from kml.data.raw import (
    Prepared,
    PrepareOptions,
    RawContents,
    RawDataError,
    build_split,
    class_counts,
    no_images,
    raw_sources,
    read_raw,
    refetch_hint,
    unpickle,
)
from kml.data.sources import Dataset, Source
from kml.data.splits import reference_splits
from kml.data.standins import IMAGES_PER_CLASS, Members, StandInOptions, class_style, picture

NAME = "fc100"

# ---- Sources and raw layout ------------------------------------------------------------------------------

FC100_ARCHIVE = "cifar-100-python.tar.gz"
FC100_ROOT = "cifar-100-python"
# The python pickles: both halves of the images, and the class names.
_PICKLES = {name: f"{FC100_ROOT}/{name}" for name in ("train", "test", "meta")}
FC100_SIDE = 32
SOURCES = Dataset(NAME, {"official": (
    Source(FC100_ARCHIVE, (f"https://www.cs.toronto.edu/~kriz/{FC100_ARCHIVE}",),
           size=169_001_437, md5="eb9058c3a382ffc7106e4002c42a8d85",
           sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),
)})

# ---- Split rule ------------------------------------------------------------------------------------------

# proc_cifar.py: CIFAR-100 coarse (superclass) ids per split, the FC100 split of Oreshkin et al. 2018.
FC100_SUPERCLASSES = {
    "train": (1, 2, 3, 4, 5, 6, 9, 10, 15, 17, 18, 19),
    "val": (8, 11, 13, 16),
    "test": (0, 7, 12, 14),
}


def fc100_class_split(superclass_of: Sequence[int]) -> dict[str, list[int]]:
    """Fine-class ids per split (ascending), given the superclass id of every fine class."""
    return {split: [c for c, coarse in enumerate(superclass_of) if coarse in FC100_SUPERCLASSES[split]]
            for split in SPLITS}


# ---- Preparer --------------------------------------------------------------------------------------------

def colour_negative(images: np.ndarray) -> np.ndarray:
    """(256 - v) mod 256: what ToPILImage's `mul(255).byte()` makes of 0..255 floats
    (docs/specification.md §2.5)."""
    return ((256 - images.astype(np.uint16)) % 256).astype(np.uint8)


def _cifar_pickle(contents: RawContents, member: str, keys: Sequence[str]) -> dict:
    batch = unpickle(contents.file(member), contents.path, NAME)
    if not isinstance(batch, dict) or not set(keys) <= batch.keys():
        raise RawDataError(f"{contents.path}: member {member} is not a CIFAR-100 pickle with keys "
                           f"{list(keys)}; {refetch_hint(NAME)}")
    return batch


def _superclass_of_each_class(fine: np.ndarray, coarse: np.ndarray, num_classes: int,
                              path: Path) -> list[int]:
    """The coarse label of every fine class, checked to be unique per class (the archive's own hierarchy)."""
    superclass_of = []
    for c in range(num_classes):
        labels = np.unique(coarse[fine == c])
        if len(labels) == 0:
            raise no_images(path, NAME, f"fine class {c}")
        if len(labels) > 1:
            raise RawDataError(f"{path}: fine class {c} has several coarse labels {labels.tolist()}; "
                               f"{refetch_hint(NAME)}")
        superclass_of.append(int(labels[0]))
    unknown = set(superclass_of) - {c for ids in FC100_SUPERCLASSES.values() for c in ids}
    if unknown:
        raise RawDataError(f"{path}: coarse labels {sorted(unknown)} are not CIFAR-100's; "
                           f"{refetch_hint(NAME)}")
    return superclass_of


def prepare(folder: Path, options: PrepareOptions) -> Prepared:
    """CIFAR-100 train + test merged (600 images per class), split by superclass as proc_cifar.py."""
    path = folder / FC100_ARCHIVE
    contents = read_raw(path, NAME, options, keep=set(_PICKLES.values()).__contains__)
    class_names = list(_cifar_pickle(contents, _PICKLES["meta"], ["fine_label_names"])["fine_label_names"])
    batches = [_cifar_pickle(contents, _PICKLES[part], ["data", "fine_labels", "coarse_labels"])
               for part in ("train", "test")]
    data = np.concatenate([np.asarray(b["data"], dtype=np.uint8) for b in batches])
    if data.ndim != 2 or data.shape[1] != 3 * FC100_SIDE * FC100_SIDE:
        raise RawDataError(f"{path}: CIFAR data is {data.shape}, expected N×3072; {refetch_hint(NAME)}")
    fine = np.concatenate([np.asarray(b["fine_labels"], dtype=np.int64) for b in batches])
    coarse = np.concatenate([np.asarray(b["coarse_labels"], dtype=np.int64) for b in batches])

    # Stored channel-major (R, G, B planes of 32×32, row-major): to [N, 32, 32, 3].
    images = data.reshape(-1, 3, FC100_SIDE, FC100_SIDE).transpose(0, 2, 3, 1)
    if options.fc100_negative:
        images = colour_negative(images)
    images = resize_rgb_arrays(np.ascontiguousarray(images), options.image_size, NAME)

    split = fc100_class_split(_superclass_of_each_class(fine, coarse, len(class_names), path))
    splits = {name: build_split([(class_names[c], images[fine == c]) for c in ids], options.image_size)
              for name, ids in split.items()}
    colours = ("colour-negative as the released code ((256 - v) mod 256 before the resize, "
               "docs/specification.md §2.5)"
               if options.fc100_negative else "true colours (the released code's negative is not reproduced)")
    rule = ("FC100 (Oreshkin et al. 2018, MMAML proc_cifar.py): CIFAR-100 train+test merged, fine classes "
            "split by coarse superclass id, "
            + "; ".join(f"{s} {list(ids)}" for s, ids in FC100_SUPERCLASSES.items())
            + f" -> {class_counts(split)} classes in fine-label order; 32 px -> PIL Lanczos "
            f"{options.image_size} px; {colours}.")
    return Prepared(splits, rule, raw_sources([path]))


# ---- Synthetic stand-in ----------------------------------------------------------------------------------

# All 100 CIFAR-100 classes with their real names and numbering (60/20/20 after prepare); of each class's
# IMAGES_PER_CLASS images this many go to the train pickle, the rest to the test pickle.
CIFAR_TRAIN_PER_CLASS = 16
CIFAR_CLASSES_PER_SUPERCLASS = 5


def _cifar100_hierarchy() -> tuple[list[str], list[str], list[int]]:
    """CIFAR-100's fine_label_names, coarse_label_names and the superclass id of every fine class.

    From splits.json fc100_mmaml, which lists each split's superclasses (coarse_ids with coarse_names) and
    their fine names five per superclass in coarse_ids order. CIFAR-100 numbers fine (and coarse) classes
    alphabetically; tests/test_synth.py checks the result against the real `meta`.
    """
    fc100 = reference_splits()["fc100_mmaml"]
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


def synthesize(rng: np.random.Generator, options: StandInOptions) -> dict[str, Members]:
    """cifar-100-python.tar.gz with the official pickles (meta, train, test)."""
    fine_names, coarse_names, superclass_of = _cifar100_hierarchy()
    parts: dict[str, tuple[list[np.ndarray], list[int]]] = {"train": ([], []), "test": ([], [])}
    for c in range(len(fine_names)):
        style = class_style(c)
        for k in range(IMAGES_PER_CLASS):
            images, labels = parts["train" if k < CIFAR_TRAIN_PER_CLASS else "test"]
            images.append(picture(style, FC100_SIDE, FC100_SIDE, rng))
            labels.append(c)
    meta = pickle.dumps({"fine_label_names": fine_names, "coarse_label_names": coarse_names}, protocol=2)
    members = [(_PICKLES["meta"], meta)]
    for part, label in (("train", "training batch 1 of 1"), ("test", "testing batch 1 of 1")):
        images, labels = parts[part]
        batch = _cifar_batch(label, images, labels, superclass_of, fine_names, rng)
        members.append((_PICKLES[part], batch))
    members.append((f"{FC100_ROOT}/file.txt~", b""))  # the official tarball carries this empty file too
    return {FC100_ARCHIVE: members}
