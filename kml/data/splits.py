"""Split rules shared between datasets, and the packaged reference split lists (kml/data/splits.json).

CUB and FGVC-Aircraft share MMAML's seeded class split (proc_bird.py and proc_aircraft.py,
docs/specification.md §2.6, §2.7); each dataset module says in which order its classes enter it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources

import numpy as np

from kml.data.raw import class_counts

# proc_bird.py and proc_aircraft.py: shuffle the class list with this seed, then cut 70/15/15 percent.
MMAML_SPLIT_SEED = 123
MMAML_SPLIT_PERCENTAGES = (70, 15, 15)


def mmaml_class_split(classes: Sequence[str]) -> dict[str, list[str]]:
    """proc_bird.py / proc_aircraft.py: RandomState(123).shuffle, then int(70%), int(15%), the rest."""
    shuffled = list(classes)
    np.random.RandomState(MMAML_SPLIT_SEED).shuffle(shuffled)
    total = sum(MMAML_SPLIT_PERCENTAGES)
    # float(ratio) / total * count, truncated, exactly as the released scripts compute it.
    num_train, num_val = (int(float(p) / total * len(shuffled)) for p in MMAML_SPLIT_PERCENTAGES[:2])
    return {"train": shuffled[:num_train], "val": shuffled[num_train:num_train + num_val],
            "test": shuffled[num_train + num_val:]}


def mmaml_rule(split: Mapping[str, Sequence[str]]) -> str:
    """The seeded split in words, for a split rule."""
    return (f"np.random.RandomState({MMAML_SPLIT_SEED}).shuffle, then "
            f"{'/'.join(map(str, MMAML_SPLIT_PERCENTAGES))} percent -> {class_counts(split)} classes")


def reference_splits() -> dict:
    """The packaged split lists (kml/data/splits.json); the stand-ins take real class names from them."""
    return json.loads(resources.files("kml.data").joinpath("splits.json").read_text())
