"""`kml prepare`: splits against the packaged reference lists, image processing, schema, errors.

Real fixtures (shared/data) check the rules on the official files; synthetic archives (`kml synth`) check
what needs whole archives the fixtures lack (CIFAR pickles, Aircraft).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import shutil
import tarfile
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from kml import KmlError
from kml.cli import main
from kml.data.datasets.aircraft import aircraft_class_split
from kml.data.datasets.cub import cub_class_split
from kml.data.datasets.miniimagenet import MINIIMAGENET_PICKLES
from kml.data.hdf5 import SPLITS, describe, read_attrs, read_split
from kml.data.prepare import prepare_dataset
from kml.data.synth import make_synthetic, write_tar_gz, write_zip

SPLITS_JSON = json.loads((Path(__file__).resolve().parents[1] / "kml/data/splits.json").read_text())
SYNTHETIC_OMNIGLOT_TRAIN = 20  # of the 30 synthetic characters
SIZE = 28  # small images keep the tests fast; the rules do not depend on the size


def read_members(archive: Path) -> list[tuple[str, bytes]]:
    """Every regular file of a zip or gzip tar, in archive order."""
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as z:
            return [(info.filename, z.read(info)) for info in z.infolist() if not info.is_dir()]
    with tarfile.open(archive) as t:
        return [(m.name, t.extractfile(m).read()) for m in t if m.isfile()]


def write_members(archive: Path, members: list[tuple[str, bytes]]) -> None:
    (write_zip if archive.suffix == ".zip" else write_tar_gz)(archive, members)


def splits_of(path: Path) -> dict:
    return {split: read_split(path, split) for split in SPLITS}


@pytest.fixture(scope="module")
def synthetic_raw(tmp_path_factory) -> Path:
    """A raw folder with every dataset's synthetic archives (read-only by convention: tests copy them)."""
    raw = tmp_path_factory.mktemp("raw")
    for dataset in ("omniglot", "miniimagenet", "fc100", "cub", "aircraft"):
        make_synthetic(dataset, raw / dataset)
    return raw


def copy_raw(synthetic_raw: Path, dataset: str, tmp_path: Path) -> Path:
    """A private copy of one dataset's synthetic raw folder; returns the raw root."""
    shutil.copytree(synthetic_raw / dataset, tmp_path / "raw" / dataset)
    return tmp_path / "raw"


# ---- Real fixtures -------------------------------------------------------------------------------------

def test_official_omniglot_subsets_under_the_full_names(shared_data, tmp_path):
    folder = tmp_path / "raw" / "omniglot"
    folder.mkdir(parents=True)
    # small1/small2 have top folders images_background_small{1,2}/: prepare reads each zip's single top folder
    # under the zip's name, so the subsets stand in for the full distribution's two zips.
    shutil.copy(shared_data / "omniglot/images_background_small1.zip", folder / "images_background.zip")
    shutil.copy(shared_data / "omniglot/images_background_small2.zip", folder / "images_evaluation.zip")
    out = prepare_dataset("omniglot", tmp_path / "raw", tmp_path / "omniglot.h5", image_size=84, workers=2,
                          omniglot_train_classes=200)
    splits = splits_of(out)
    assert [s.num_classes for s in splits.values()] == [200, 0, 92]
    names = splits["train"].class_names + splits["test"].class_names
    assert list(names) == sorted(names) and len(set(names)) == 292  # 136 + 156; Greek/Latin kept apart
    assert names[0].startswith("images_background/") and names[-1].startswith("images_evaluation/")
    for split in (splits["train"], splits["test"]):
        assert np.all(np.diff(split.class_offsets) == 20)
        images = split.images
        assert np.array_equal(images[..., 0], images[..., 1])
        assert np.array_equal(images[..., 0], images[..., 2])
        # Inverted: dark background, bright strokes.
        assert np.median(images) == 0 and images.max() == 255 and images.mean() < 40


def test_miniimagenet_ravi_split_from_the_csvs_and_real_images(shared_data, tmp_path):
    folder = tmp_path / "raw" / "miniimagenet"
    folder.mkdir(parents=True)
    present = {p.name for p in (shared_data / "miniimagenet/images").iterdir()}
    # The fixture has the first 20 images of each class; prepare rejects a CSV row whose image is missing
    # (an incomplete download), so the CSVs are cut to the rows whose images are present.
    for name in ("train.csv", "val.csv", "test.csv"):
        lines = (shared_data / "miniimagenet" / name).read_text().splitlines()
        kept = [lines[0]] + [line for line in lines[1:] if line.split(",")[0] in present]
        (folder / name).write_text("\n".join(kept) + "\n")
    (folder / "images").symlink_to(shared_data / "miniimagenet/images")  # the hand-placed folder variant
    out = prepare_dataset("miniimagenet", tmp_path / "raw", tmp_path / "mini.h5", image_size=84, workers=1)
    splits = splits_of(out)
    for split, reference in SPLITS_JSON["miniimagenet_ravi"].items():
        assert list(splits[split].class_names) == sorted(reference)
        assert np.all(np.diff(splits[split].class_offsets) == 20)
    assert [s.num_classes for s in splits.values()] == [64, 16, 20]
    # Already 84x84: stored pixels are the decoded JPEG, untouched; the first CSV row of the first class
    # first.
    rows = [line.split(",") for line in (folder / "train.csv").read_text().splitlines()[1:]]
    first = next(file for file, wnid in rows if wnid == splits["train"].class_names[0])
    assert np.array_equal(splits["train"].images[0],
                          np.asarray(Image.open(shared_data / "miniimagenet/images" / first).convert("RGB")))
    assert "images/" in read_attrs(out)["sources"]


def test_cub_real_metadata_and_images(shared_data, tmp_path):
    cub = shared_data / "cub/CUB_200_2011"
    present = {f"{p.parent.name}/{p.name}" for p in (cub / "images").glob("*/*.jpg")}
    # Only classes 001-020 have images here, and only some of theirs: the metadata is cut to those classes
    # and images, because prepare (rightly) rejects listed classes or images that the archive lacks.
    classes = (cub / "classes.txt").read_text().splitlines()[:20]
    images = [line for line in (cub / "images.txt").read_text().splitlines()
              if line.split(" ", 1)[1] in present]
    members = [("CUB_200_2011/classes.txt", ("\n".join(classes) + "\n").encode()),
               ("CUB_200_2011/images.txt", ("\n".join(images) + "\n").encode())]
    members += [(f"CUB_200_2011/images/{relative}", (cub / "images" / relative).read_bytes())
                for relative in sorted(present)]
    (tmp_path / "raw/cub").mkdir(parents=True)
    write_tar_gz(tmp_path / "raw/cub/CUB_200_2011.tgz", members)

    out = prepare_dataset("cub", tmp_path / "raw", tmp_path / "cub.h5", image_size=SIZE, workers=1)
    splits = splits_of(out)
    assert [s.num_classes for s in splits.values()] == [14, 3, 3]  # int(70% of 20), int(15% of 20), rest
    assert sum(len(s.labels) for s in splits.values()) == len(present) == 161
    split = next(s for s in splits.values() if "009.Brewer_Blackbird" in s.class_names)
    c = split.class_names.index("009.Brewer_Blackbird")
    order = [line.split(" ", 1)[1] for line in images if line.split(" ", 1)[1].startswith("009.")]
    grayscale = "009.Brewer_Blackbird/Brewer_Blackbird_0028_2682.jpg"
    tiled = split.images[split.class_offsets[c] + order.index(grayscale)]
    assert np.array_equal(tiled[..., 0], tiled[..., 1]) and np.array_equal(tiled[..., 0], tiled[..., 2])
    assert not np.array_equal(split.images[..., 0], split.images[..., 2])  # colour photographs stay colour

    full = [line.split(" ", 1)[1] for line in (cub / "classes.txt").read_text().splitlines()]
    assert cub_class_split(full[::-1]) == {s: SPLITS_JSON["cub_mmaml_sorted"][s] for s in SPLITS}


def test_fc100_split_with_the_real_cifar_meta(shared_data, synthetic_raw, tmp_path):
    raw = copy_raw(synthetic_raw, "fc100", tmp_path)
    archive = raw / "fc100/cifar-100-python.tar.gz"
    real_meta = (shared_data / "cifar100/cifar-100-python/meta").read_bytes()
    write_members(archive, [(name, real_meta if name.endswith("/meta") else data)
                            for name, data in read_members(archive)])
    splits = splits_of(prepare_dataset("fc100", raw, tmp_path / "fc100.h5", image_size=SIZE, workers=1))
    fine_names = pickle.loads(real_meta, encoding="latin1")["fine_label_names"]
    for split, reference in SPLITS_JSON["fc100_mmaml"].items():
        assert list(splits[split].class_names) == [fine_names[i] for i in reference["fine_ids"]]
        assert sorted(splits[split].class_names) == sorted(reference["fine_names"])
        assert np.all(np.diff(splits[split].class_offsets) == 20)


def test_aircraft_split_keeps_fa18_in_test():
    reference = SPLITS_JSON["aircraft_mmaml"]
    split = aircraft_class_split(reference["variants_order_assumed"])
    assert split == {s: reference[s] for s in SPLITS}
    assert "F/A-18" in split["test"] and len(split["test"]) == 15  # the released code lost it (14)


# ---- Synthetic archives --------------------------------------------------------------------------------

@pytest.mark.parametrize("dataset", ["cub", "miniimagenet", "omniglot"])  # gzip tar and zips
def test_splits_do_not_depend_on_archive_member_order(synthetic_raw, tmp_path, dataset):
    outputs = []
    for order in ("as written", "shuffled"):
        raw = copy_raw(synthetic_raw, dataset, tmp_path / order)
        for archive in [*raw.glob("*/*.zip"), *raw.glob("*/*.tgz")]:
            members = read_members(archive)
            if order == "shuffled":
                members = [members[i] for i in np.random.default_rng(7).permutation(len(members))]
            write_members(archive, members)
        outputs.append(splits_of(prepare_dataset(dataset, raw, tmp_path / f"{order}.h5", image_size=SIZE,
                                                 workers=1, omniglot_train_classes=SYNTHETIC_OMNIGLOT_TRAIN)))
    for split in SPLITS:
        assert outputs[0][split].class_names == outputs[1][split].class_names
        assert np.array_equal(outputs[0][split].images, outputs[1][split].images)


def test_parallel_decoding_matches_serial(synthetic_raw, tmp_path):
    serial, parallel = (splits_of(prepare_dataset("aircraft", synthetic_raw, tmp_path / f"{w}.h5",
                                                  image_size=SIZE, workers=w)) for w in (1, 2))
    for split in SPLITS:
        assert np.array_equal(serial[split].images, parallel[split].images)


def test_hdf5_schema_and_attributes(synthetic_raw, tmp_path):
    out = prepare_dataset("aircraft", synthetic_raw, tmp_path / "aircraft.h5", image_size=SIZE, workers=1)
    with h5py.File(out) as f:
        for split in SPLITS:
            images, labels = f[split]["images"], f[split]["labels"]
            assert images.dtype == np.uint8 and images.shape[1:] == (SIZE, SIZE, 3)
            assert labels.dtype == np.int64 and labels.shape == (images.shape[0],)
            classes = len(f[split]["class_names"])
            assert np.array_equal(np.unique(labels[()]), np.arange(classes))
            assert np.all(np.diff(labels[()]) >= 0)
    attrs = read_attrs(out)
    assert (attrs["dataset"], attrs["image_size"]) == ("aircraft", SIZE)
    assert "F/A-18" in attrs["split_rule"] and "RandomState(123)" in attrs["split_rule"]
    archive = synthetic_raw / "aircraft/fgvc-aircraft-2013b.tar.gz"
    assert attrs["sources"] == {archive.name: hashlib.sha256(archive.read_bytes()).hexdigest()}
    names = [n for s in SPLITS for n in read_split(out, s).class_names]
    assert any("/" in n for n in names) and any(" " in n for n in names)  # names survive as written


def test_fc100_negative_reproduces_the_released_quirk(synthetic_raw, tmp_path):
    # At 32 px nothing is resized, so the relation is exact: v -> (256 - v) mod 256.
    true, negative = (splits_of(prepare_dataset("fc100", synthetic_raw, tmp_path / f"{flag}.h5",
                                                image_size=32, fc100_negative=flag, workers=1))
                      for flag in (False, True))
    for split in SPLITS:
        expected = ((256 - true[split].images.astype(np.int64)) % 256).astype(np.uint8)
        assert np.array_equal(negative[split].images, expected)
    assert "colour-negative" in read_attrs(tmp_path / "True.h5")["split_rule"]
    with pytest.raises(KmlError, match="fc100 only"):
        prepare_dataset("cub", synthetic_raw, tmp_path / "cub.h5", fc100_negative=True)


def test_miniimagenet_pickles_variant(tmp_path):
    folder = tmp_path / "raw/miniimagenet"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    caches = {}
    for split, name in MINIIMAGENET_PICKLES.items():
        images = rng.integers(0, 256, (6, 84, 84, 3), dtype=np.uint8)
        caches[split] = images
        # wnids deliberately out of order; indices in class_dict order
        class_dict = {f"n0{split}b": [5, 1, 3], f"n0{split}a": [0, 2, 4]}
        (folder / name).write_bytes(pickle.dumps({"image_data": images, "class_dict": class_dict}))
    splits = splits_of(prepare_dataset("miniimagenet", tmp_path / "raw", tmp_path / "m.h5", image_size=84))
    for split, images in caches.items():
        assert splits[split].class_names == (f"n0{split}a", f"n0{split}b")
        assert np.array_equal(splits[split].images, images[[0, 2, 4, 5, 1, 3]])
    assert set(read_attrs(tmp_path / "m.h5")["sources"]) == set(MINIIMAGENET_PICKLES.values())


def test_cli_prepare_and_inspect(synthetic_raw, tmp_path, capsys):
    out = tmp_path / "omniglot.h5"
    assert main(["prepare", "omniglot", "--raw", str(synthetic_raw), "--out", str(out),
                 "--image-size", str(SIZE), "--workers", "1",
                 "--omniglot-train-classes", str(SYNTHETIC_OMNIGLOT_TRAIN)]) == 0
    assert main(["inspect", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.strip() == describe(out)
    assert "dataset: omniglot" in printed and "image size: 28" in printed
    assert "train        20      400  28×28×3" in printed and "val           0        0" in printed
    assert "test         10      200  28×28×3" in printed and "first 20 are train" in printed
    archive = synthetic_raw / "omniglot/images_background.zip"
    assert f"{hashlib.sha256(archive.read_bytes()).hexdigest()}  images_background.zip" in printed


# ---- Errors --------------------------------------------------------------------------------------------

def _break_truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _break_html(path: Path) -> None:
    path.write_text("<!DOCTYPE html><html><body>Sign in to continue</body></html>")


@pytest.mark.parametrize(("dataset", "archive"),
                         [("cub", "CUB_200_2011.tgz"), ("omniglot", "images_evaluation.zip")])
@pytest.mark.parametrize("damage", [Path.unlink, _break_truncated, _break_html],
                         ids=["missing", "truncated", "html"])
def test_bad_archives_are_named_and_leave_no_output(synthetic_raw, tmp_path, dataset, archive, damage):
    raw = copy_raw(synthetic_raw, dataset, tmp_path)
    damage(raw / dataset / archive)
    out_dir = tmp_path / "processed"
    with pytest.raises(KmlError, match=rf"{archive}: .*kml download {dataset}"):
        prepare_dataset(dataset, raw, out_dir / "out.h5", image_size=SIZE, workers=2,
                        omniglot_train_classes=SYNTHETIC_OMNIGLOT_TRAIN)
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_a_class_without_images_is_an_error(synthetic_raw, tmp_path):
    raw = copy_raw(synthetic_raw, "aircraft", tmp_path)
    archive = raw / "aircraft/fgvc-aircraft-2013b.tar.gz"
    members = [(name, data + b"Concorde\n" if name.endswith("variants.txt") else data)
               for name, data in read_members(archive)]
    write_members(archive, members)
    with pytest.raises(KmlError, match="class 'Concorde' has no images"):
        prepare_dataset("aircraft", raw, tmp_path / "out.h5", image_size=SIZE, workers=1)
    assert not (tmp_path / "out.h5").exists()


def test_listed_images_missing_or_undecodable_are_errors(synthetic_raw, tmp_path):
    raw = copy_raw(synthetic_raw, "cub", tmp_path)
    archive = raw / "cub/CUB_200_2011.tgz"
    members = read_members(archive)
    jpegs = [i for i, (name, _) in enumerate(members) if name.endswith(".jpg")]
    write_members(archive, [m for i, m in enumerate(members) if i != jpegs[0]])
    with pytest.raises(KmlError, match=rf"has no member {members[jpegs[0]][0]}"):
        prepare_dataset("cub", raw, tmp_path / "out.h5", image_size=SIZE, workers=1)
    members[jpegs[0]] = (members[jpegs[0]][0], b"not a jpeg")
    write_members(archive, members)
    with pytest.raises(KmlError, match=rf"CUB_200_2011.tgz: member {members[jpegs[0]][0]}: not a decodable"):
        prepare_dataset("cub", raw, tmp_path / "out.h5", image_size=SIZE, workers=2)


def test_omniglot_train_classes_must_leave_test_classes(synthetic_raw, tmp_path):
    with pytest.raises(KmlError, match="--omniglot-train-classes"):
        prepare_dataset("omniglot", synthetic_raw, tmp_path / "out.h5", image_size=SIZE, workers=1)
