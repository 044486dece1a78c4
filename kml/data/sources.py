"""Where each dataset's raw files come from: URLs, official file names, sizes and checksums.

This module is data. The facts and their provenance are in shared/spec/DATASETS.md; `kml download` reads
them, and `kml prepare` reads the files under exactly these names in `{raw}/{dataset}/`.
"""

from __future__ import annotations

from dataclasses import dataclass

from kml import KmlError


class UnknownSourceError(KmlError, ValueError):
    """A dataset or source variant that the table does not list."""


@dataclass(frozen=True)
class Source:
    """One file of a dataset's raw folder and where it can be fetched."""

    file_name: str
    # Tried in order; the first is the canonical origin, the others are mirrors of the same bytes.
    urls: tuple[str, ...]
    size: int | None = None
    md5: str | None = None
    sha256: str | None = None
    # A folder that a user may place in the raw folder by hand instead of this file.
    stand_in_folder: str | None = None
    # Provenance and how to obtain the file by hand; shown when a download fails.
    note: str = ""


@dataclass(frozen=True)
class Dataset:
    name: str
    # Alternative source sets by name; the first one is the default.
    variants: dict[str, tuple[Source, ...]]


_OMNIGLOT = "https://github.com/brendenlake/omniglot/raw/master/python/"
_LEARN2LEARN_ZENODO = "https://zenodo.org/record/7978538/files/"
_RAVI_SPLITS = "https://raw.githubusercontent.com/twitter/meta-learning-lstm/master/data/miniImagenet/"
# Google Drive's direct-download endpoint; confirm=t skips the virus-scan page it shows for large files.
_DRIVE_DOWNLOAD = "https://drive.usercontent.google.com/download?export=download&confirm=t&id="
_MMAML_DRIVE_ID = "1HkgrkAwukzEZA0TpO7010PkAOREb2Nuk"


def _miniimagenet_pickle(file_name: str) -> Source:
    return Source(
        file_name=file_name,
        urls=(_LEARN2LEARN_ZENODO + file_name,),
        note="learn2learn's copy of the Ren et al. pickles; no checksum is published, so the sha256 seen on "
             "first download is recorded in checksums.lock",
    )


def _ravi_split(file_name: str, size: int, md5: str) -> Source:
    return Source(file_name=file_name, urls=(_RAVI_SPLITS + file_name,), size=size, md5=md5,
                  note="Ravi & Larochelle split file (twitter/meta-learning-lstm), identical to MMAML's copy")


DATASETS: dict[str, Dataset] = {
    "omniglot": Dataset("omniglot", {"official": (
        Source("images_background.zip", (_OMNIGLOT + "images_background.zip",), size=9_464_212,
               md5="68d2efa1b9178cc56df9314c21c6e718",
               sha256="ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640"),
        Source("images_evaluation.zip", (_OMNIGLOT + "images_evaluation.zip",), size=6_462_886,
               md5="6b91aef0f799c5bb55b94e3f2daec811",
               sha256="1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee"),
    )}),
    "miniimagenet": Dataset("miniimagenet", {
        "pickles": tuple(_miniimagenet_pickle(f"mini-imagenet-cache-{split}.pkl")
                         for split in ("train", "validation", "test")),
        "images": (
            _ravi_split("train.csv", 1_228_815, "9525e1538f67719f18f1936bf8d0782d"),
            _ravi_split("val.csv", 307_215, "ce315ce99b41fbf84fa6acd69315d918"),
            _ravi_split("test.csv", 384_015, "5b89df877c6cbe5d291e43118a2a9591"),
            Source("mini-imagenet.zip", (_DRIVE_DOWNLOAD + _MMAML_DRIVE_ID,), stand_in_folder="images",
                   note=f"MMAML's image archive exists only on Google Drive (file id {_MMAML_DRIVE_ID}, "
                        f"https://drive.google.com/file/d/{_MMAML_DRIVE_ID}/view) and has no published "
                        "checksum; instead of the zip, its images/ folder (flat *.jpg named as in the CSVs) "
                        "may be placed in the raw folder"),
        ),
    }),
    "fc100": Dataset("fc100", {"official": (
        Source("cifar-100-python.tar.gz", ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
               size=169_001_437, md5="eb9058c3a382ffc7106e4002c42a8d85",
               sha256="85cd44d02ba6437773c5bbd22e183051d648de2e7d6b014e1ef29b855ba677a7"),
    )}),
    "cub": Dataset("cub", {"official": (
        Source("CUB_200_2011.tgz",
               ("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",
                "https://zenodo.org/record/8000562/files/CUB_200_2011.tgz"),
               size=1_150_585_339, md5="97eceeb196236b17998738112f37df78",
               sha256="0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081",
               note="the legacy URL used by MMAML (http://www.vision.caltech.edu/visipedia-data/CUB-200-2011/"
                    "CUB_200_2011.tgz) is no longer served; a Google Drive copy has id "
                    "1hbzc_P1FuxMkcabkgn9ZKinBwW683j45"),
    )}),
    "aircraft": Dataset("aircraft", {"official": (
        # The only published sha256 comes from a single unrelated script and is not trusted (DATASETS.md §0).
        Source("fgvc-aircraft-2013b.tar.gz",
               ("https://www.robots.ox.ac.uk/~vgg/data/fgvc-aircraft/archives/fgvc-aircraft-2013b.tar.gz",),
               size=2_753_340_328, md5="d4acdd33327262359767eeaa97a4f732"),
    )}),
}


def dataset_sources(name: str, variant: str | None = None) -> tuple[Source, ...]:
    """The files of one dataset's source set; `variant=None` picks the dataset's default set."""
    if name not in DATASETS:
        raise UnknownSourceError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    variants = DATASETS[name].variants
    if variant is None:
        return next(iter(variants.values()))
    if variant not in variants:
        raise UnknownSourceError(f"{name} has no source variant {variant!r}; "
                                 f"choose one of {', '.join(variants)}")
    return variants[variant]
