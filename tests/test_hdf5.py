"""The prepared-dataset schema: damaged files are named with their split, and a file of another dataset is
refused, by `read_split`, `load_splits` (training, evaluation) and `kml inspect` alike."""

from __future__ import annotations

import re

import h5py
import numpy as np
import pytest

from kml.cli import main
from kml.data.episodes import load_splits
from kml.data.hdf5 import DatasetFileError, Split, describe, read_split, write_dataset

SIZE = 4
IMAGES_PER_CLASS = (3, 2, 4)


def _dataset(path, name="cub"):
    labels = np.repeat(np.arange(len(IMAGES_PER_CLASS)), IMAGES_PER_CLASS)
    images = np.zeros((len(labels), SIZE, SIZE, 3), np.uint8)
    split = Split(images, labels, tuple(f"class{c}" for c in range(len(IMAGES_PER_CLASS))))
    return write_dataset(path, {"train": split, "test": split}, dataset=name, image_size=SIZE,
                         split_rule="test", sources={})


def _damage(path, split, name, values):
    with h5py.File(path, "r+") as f:
        del f[split][name]
        f[split].create_dataset(name, data=values)


LABELS = np.repeat(np.arange(3), IMAGES_PER_CLASS)


@pytest.mark.parametrize(("name", "values", "problem"), [
    ("labels", LABELS[:-1], "8 labels for 9 images"),
    ("labels", LABELS + 1, ("labels must run from 0 to 2 (3 class names), non-decreasing, with images for "
                            "every class; they run from 1 to 3")),
    ("labels", np.array([0, 0, 0, 2, 2, 1, 1, 1, 1]),
     "they run from 0 to 1 with steps back or classes skipped"),
    ("labels", np.array([0, 0, 0, 2, 2, 2, 2, 2, 2]),
     "they run from 0 to 2 with steps back or classes skipped"),
    ("class_names", np.array([b"class0", b"class1"]), "labels must run from 0 to 1 (2 class names)"),
    ("images", np.zeros((9, SIZE, SIZE, 3), np.float32), "images must be uint8 [N, S, S, 3], got float32"),
    ("images", np.zeros((9, SIZE + 1, SIZE + 1, 3), np.uint8),
     "images are 5×5 px, but the file's image_size is 4"),
])
def test_a_damaged_split_is_named_with_its_file_and_split_everywhere(tmp_path, capsys, name, values, problem):
    path = _dataset(tmp_path / "cub.h5")
    _damage(path, "test", name, values)
    assert describe(_dataset(tmp_path / "intact.h5"))
    named = re.escape(f"{path} [test]: ") + ".*" + re.escape(problem)
    with pytest.raises(DatasetFileError, match=named):
        read_split(path, "test")
    with pytest.raises(DatasetFileError, match=named):
        load_splits({"cub": path}, "test")
    assert read_split(path, "train").num_classes == 3  # the other split is intact

    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    fix = "; the file is damaged or not made by `kml prepare`: delete it and run `kml prepare` again\n"
    assert re.fullmatch(f"kml inspect: error: {named}.*{re.escape(fix)}", err), err


def test_a_file_of_another_dataset_is_refused_for_a_mode(tmp_path):
    path = _dataset(tmp_path / "data.h5", name="miniimagenet")
    with pytest.raises(DatasetFileError, match=re.escape(
            f"{path}: holds miniimagenet (its `dataset` attribute), not omniglot; give the file prepared "
            "from omniglot (`kml prepare omniglot`)")):
        load_splits({"omniglot": path}, "train")
    assert load_splits({"miniimagenet": path}, "train")["miniimagenet"].num_classes == 3
