"""The five datasets, one module each. A module owns everything about its dataset:

    NAME                        the dataset's name, one of kml.MODES
    SOURCES                     its official raw files and where they come from (kml/data/sources.py)
    raw layout constants        the file and member names its preparer reads and its stand-in writes
    its split rule              a pure function of the class list, checked by the tests
    prepare(folder, options)    `kml prepare`: its raw folder -> Prepared (kml/data/raw.py)
    synthesize(rng, options)    `kml synth`: the raw files of its synthetic stand-in (kml/data/standins.py)

The shared machinery lives beside this package, in kml/data/.
"""

from __future__ import annotations

from types import ModuleType

from kml.data.datasets import aircraft, cub, fc100, miniimagenet, omniglot
from kml.data.sources import Dataset, Source, UnknownSourceError

_MODULES: dict[str, ModuleType] = {module.NAME: module
                                   for module in (omniglot, miniimagenet, fc100, cub, aircraft)}
# What `kml download` fetches, by dataset.
DATASETS: dict[str, Dataset] = {name: module.SOURCES for name, module in _MODULES.items()}


def dataset_module(name: str) -> ModuleType:
    """The module of dataset `name`."""
    if name not in _MODULES:
        raise _unknown(name)
    return _MODULES[name]


def dataset_sources(name: str, variant: str | None = None) -> tuple[Source, ...]:
    """The files of one dataset's source set; `variant=None` picks the dataset's default set."""
    if name not in DATASETS:
        raise _unknown(name)
    variants = DATASETS[name].variants
    if variant is None:
        return next(iter(variants.values()))
    if variant not in variants:
        raise UnknownSourceError(f"{name} has no source variant {variant!r}; "
                                 f"choose one of {', '.join(variants)}")
    return variants[variant]


def _unknown(name: str) -> UnknownSourceError:
    return UnknownSourceError(f"unknown dataset {name!r}; choose one of {', '.join(_MODULES)}")
