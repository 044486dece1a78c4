"""Small prepared datasets for tests: `kml synth` archives turned into HDF5 files by `kml prepare`.

Import the fixtures into a test module:

    from synthetic import one_thread, small_run_config, synthetic_files  # noqa: F401  (fixtures)

    def test_x(synthetic_files):
        files = synthetic_files(("fc100", "cub"), 16)  # {mode: Path to the prepared .h5}
        config = small_run_config(files, "mmaml", train={"iterations": 8})

Each (dataset, image size) is made once per test session, whichever module asks first: the files live in
the session's base temporary folder and are reused if present.

For tests that need a method to learn, prefer fc100, cub and aircraft: the synthetic mini-ImageNet test
classes share one colour and stripe pattern and differ only in shape, which small images barely resolve.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import torch

from kml.config import RunConfig, run_config_from_dict
from kml.data.datasets.omniglot import OMNIGLOT_CHARACTERS
from kml.data.hdf5 import read_attrs
from kml.data.prepare import prepare_dataset
from kml.data.synth import make_synthetic

# Two thirds of the synthetic characters to meta-train, as the Omniglot stand-in suggests (20 / 10).
OMNIGLOT_TRAIN_CLASSES = OMNIGLOT_CHARACTERS * 2 // 3


def prepared_file(root: Path, name: str, image_size: int) -> Path:
    """root/{name}-{image_size}.h5, made from root/raw/{name}/ unless it exists; neither is left half made."""
    out = root / f"{name}-{image_size}.h5"
    if not out.exists():
        raw = root / "raw"
        if not (raw / name).is_dir():
            make_synthetic(name, raw / f"{name}.partial")
            (raw / f"{name}.partial").rename(raw / name)
        prepare_dataset(name, raw, out, image_size=image_size, workers=1,
                        omniglot_train_classes=OMNIGLOT_TRAIN_CLASSES)
    return out


@pytest.fixture
def one_thread():
    """One torch thread for the test: the networks in tests are tiny, so extra threads only add
    synchronisation, and they starve when the machine is busy. Use with pytest.mark.usefixtures."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def synthetic_files(tmp_path_factory) -> Callable[[Sequence[str], int], dict[str, Path]]:
    """A function (modes, image_size) -> {mode: prepared HDF5 file} over synthetic data."""
    root = tmp_path_factory.getbasetemp() / "synthetic"

    def files(modes: Sequence[str], image_size: int) -> dict[str, Path]:
        return {mode: prepared_file(root, mode, image_size) for mode in modes}

    return files


def small_run_config(files: dict[str, Path], method: str, **sections: dict) -> RunConfig:
    """A run config over `files` ({mode: HDF5}) sized for a test: the files' image size, 16 channels, 5-way
    5-shot 5-query, meta-batches of 4; `sections` extend or override sections (train={"iterations": 8})."""
    image_size = read_attrs(next(iter(files.values())))["image_size"]
    values = {
        "method": method, "modes": list(files), "setting": "test",
        "task": {"ways": 5, "shots": 5, "queries": 5},
        "data": {"files": {mode: str(path) for mode, path in files.items()}},
        "model": {"channels": [16, 16, 16, 16], "image_size": image_size, "embedding_dim": 16},
        "train": {"iterations": 10, "meta_batch_size": 4, "checkpoint_every": 5, "log_every": 2},
        "eval": {"tasks_per_mode": 10, "meta_batch_size": 10},
    }
    for name, section in sections.items():
        values[name] = {**values.get(name, {}), **section} if isinstance(section, dict) else section
    return run_config_from_dict(values)
