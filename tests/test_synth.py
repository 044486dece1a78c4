"""`kml synth`: official formats that `kml prepare` reads, split sizes, determinism, SHA256SUMS."""

from __future__ import annotations

import hashlib
import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kml import MODES
from kml.cli import main
from kml.data.hdf5 import SPLITS, read_split
from kml.data.prepare import prepare_dataset
from kml.data.standins import IMAGES_PER_CLASS
from kml.data.synth import CHECKSUMS_FILE, make_synthetic

# Classes per split after `kml prepare` (Omniglot with --omniglot-train-classes 20).
EXPECTED_CLASSES = {
    "omniglot": (20, 0, 10),
    "miniimagenet": (10, 5, 5),
    "fc100": (60, 20, 20),
    "cub": (23, 5, 6),  # MMAML's int(70%)/int(15%)/rest of 34 classes
    "aircraft": (23, 5, 6),
}


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, list[Path]]:
    """Every dataset's synthetic files, written into one folder (as a file:// mirror would hold them)."""
    out = tmp_path_factory.mktemp("mirror")
    return {dataset: make_synthetic(dataset, out) for dataset in MODES}


@pytest.fixture(scope="module")
def synthetic(written) -> Path:
    return written["omniglot"][0].parent


def sha256sums(folder: Path) -> dict[str, str]:
    lines = (folder / CHECKSUMS_FILE).read_text().splitlines()
    return {name: digest for digest, name in (line.split("  ", 1) for line in lines)}


@pytest.mark.parametrize("dataset", MODES)
def test_synthetic_archives_prepare_with_the_expected_splits(written, tmp_path, dataset):
    folder = tmp_path / "raw" / dataset
    folder.mkdir(parents=True)
    for path in written[dataset]:  # the raw folder `kml download` would fill from the mirror
        (folder / path.name).symlink_to(path)
    out = prepare_dataset(dataset, tmp_path / "raw", tmp_path / "out.h5", image_size=16, workers=1,
                          omniglot_train_classes=EXPECTED_CLASSES["omniglot"][0])
    splits = [read_split(out, split) for split in SPLITS]
    assert tuple(s.num_classes for s in splits) == EXPECTED_CLASSES[dataset]
    for split in splits:
        assert np.all(np.diff(split.class_offsets) == IMAGES_PER_CLASS)


def test_same_seed_same_bytes_other_seed_other_bytes(synthetic, tmp_path):
    for dataset in MODES:
        make_synthetic(dataset, tmp_path / "again", seed=0)
    assert main(["synth", "cub", "--out", str(tmp_path / "other"), "--seed", "1"]) == 0
    written = sorted(p.name for p in synthetic.iterdir())
    assert written == sorted(p.name for p in (tmp_path / "again").iterdir())
    for name in written:
        assert (synthetic / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name
    cub = "CUB_200_2011.tgz"
    assert (tmp_path / "other" / cub).read_bytes() != (synthetic / cub).read_bytes()


def test_sha256sums_lists_every_file_of_every_dataset(synthetic, tmp_path):
    sums = sha256sums(synthetic)
    files = {p.name for p in synthetic.iterdir()} - {CHECKSUMS_FILE}
    assert set(sums) == files and len(files) == 9
    for name, digest in sums.items():
        assert hashlib.sha256((synthetic / name).read_bytes()).hexdigest() == digest
    # Merging keeps other entries and replaces stale ones.
    (tmp_path / CHECKSUMS_FILE).write_text(f"{'0' * 64}  other.zip\n{'1' * 64}  CUB_200_2011.tgz\n")
    paths = make_synthetic("cub", tmp_path)
    assert sha256sums(tmp_path) == {"other.zip": "0" * 64, "CUB_200_2011.tgz": sums["CUB_200_2011.tgz"]}
    assert paths == [tmp_path / "CUB_200_2011.tgz"]


def test_omniglot_zips_have_the_official_layout(synthetic):
    for name in ("images_background.zip", "images_evaluation.zip"):
        with zipfile.ZipFile(synthetic / name) as z:
            pngs = [n for n in z.namelist() if n.endswith(".png")]
            assert {n.split("/")[0] for n in pngs} == {name.removesuffix(".zip")}
            characters = {n.rsplit("/", 1)[0] for n in pngs}
            assert all(sum(p.startswith(c + "/") for p in pngs) == 20 for c in characters)
            image = Image.open(io.BytesIO(z.read(pngs[0])))
            assert (image.mode, image.size) == ("1", (105, 105))


def test_cifar_pickles_have_the_official_structure(synthetic, shared_data):
    with tarfile.open(synthetic / "cifar-100-python.tar.gz") as t:
        read = {m.name: t.extractfile(m).read() for m in t if m.isfile()}
    meta = pickle.loads(read["cifar-100-python/meta"], encoding="latin1")
    real = pickle.loads((shared_data / "cifar100/cifar-100-python/meta").read_bytes(), encoding="latin1")
    assert meta == real  # the real class names, in the real numbering
    train = pickle.loads(read["cifar-100-python/train"], encoding="latin1")
    assert {"data", "fine_labels", "coarse_labels", "filenames", "batch_label"} <= train.keys()
    assert train["data"].dtype == np.uint8 and train["data"].shape[1] == 3072
    # Every fine class sits in one superclass, the one whose name CIFAR-100's hierarchy gives it.
    pairs = {(real["fine_label_names"][f], real["coarse_label_names"][c])
             for f, c in zip(train["fine_labels"], train["coarse_labels"], strict=True)}
    assert len(pairs) == 100 and ("trout", "fish") in pairs and ("girl", "people") in pairs


def test_cub_and_aircraft_carry_their_quirks(synthetic):
    with tarfile.open(synthetic / "CUB_200_2011.tgz") as t:
        names = t.getnames()
        modes = {Image.open(io.BytesIO(t.extractfile(n).read())).mode for n in names if n.endswith(".jpg")}
        for metadata in ("README", "classes.txt", "images.txt", "image_class_labels.txt",
                         "train_test_split.txt", "bounding_boxes.txt"):
            assert f"CUB_200_2011/{metadata}" in names
    assert modes == {"RGB", "L"}  # some grayscale photographs, as in the real archive
    with tarfile.open(synthetic / "fgvc-aircraft-2013b.tar.gz") as t:
        data = "fgvc-aircraft-2013b/data"
        variants = t.extractfile(f"{data}/variants.txt").read().decode().splitlines()
        for part in ("train", "val", "trainval", "test"):
            assert f"{data}/images_variant_{part}.txt" in t.getnames()
        jpeg = next(n for n in t.getnames() if n.endswith(".jpg"))
        pixels = np.asarray(Image.open(io.BytesIO(t.extractfile(jpeg).read())))
    assert any(" " in v for v in variants) and any("/" in v for v in variants)
    assert len(Path(jpeg).stem) == 7
    assert pixels[-20:].mean() < pixels[-20:].max() and pixels[-20:].std() > 40  # dark banner, light marks
