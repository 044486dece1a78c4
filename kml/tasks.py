"""The tasks a run draws, from its configuration: the training sampler and the fixed evaluation tasks.

The episode machinery itself (kml/data/episodes.py) knows nothing of run configurations; this module reads a
`RunConfig` and hands the sampler the prepared splits of the run's modes, checked against the run.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from kml import KmlError
from kml.config import RunConfig
from kml.data.episodes import (
    ROTATED_MODES,
    MetaBatch,
    MultimodalSampler,
    SplitImages,
    evaluation_batches,
    load_splits,
)


class DataFilesError(KmlError, ValueError):
    """The run's prepared data files are missing or do not fit the run."""


def mode_splits(config: RunConfig, split: str) -> dict[str, SplitImages]:
    """Split `split` of every mode of `config`, after checking each file is given and has the model's size."""
    missing = [mode for mode in config.modes if mode not in config.data.files]
    if missing:
        example = f"data.files.{missing[0]}: data/processed/{missing[0]}-{config.model.image_size}.h5"
        raise DataFilesError(f"data.files: no prepared file for mode(s) {', '.join(missing)}; "
                             f"add e.g. {example}")
    splits = load_splits({mode: config.data.files[mode] for mode in config.modes}, split)
    for images in splits.values():
        if images.image_size != config.model.image_size:
            raise DataFilesError(f"{images.origin}: images are {images.image_size} px but model.image_size "
                                 f"is {config.model.image_size}; prepare the file with --image-size "
                                 f"{config.model.image_size} or change model.image_size")
    return splits


def rotated_modes(config: RunConfig) -> frozenset[str]:
    """The modes whose classes are rotated by a random multiple of 90° per task (data.omniglot_rotation)."""
    return ROTATED_MODES if config.data.omniglot_rotation else frozenset()


def training_sampler(config: RunConfig,
                     splits: Mapping[str, SplitImages] | None = None) -> MultimodalSampler:
    """The run's training meta-batches, from the prepared train splits of its modes or from `splits` (the
    benchmarks' in-memory ones)."""
    return MultimodalSampler(
        mode_splits(config, "train") if splits is None else splits, ways=config.task.ways,
        shots=config.task.shots, queries=config.task.queries, meta_batch_size=config.train.meta_batch_size,
        seed=config.train.seed, mode_assignment=config.data.mode_assignment,
        rotate_modes=rotated_modes(config),
    )


def evaluation_tasks(config: RunConfig) -> Iterator[MetaBatch]:
    """The cell's fixed test tasks, eval.tasks_per_mode per mode, in batches of eval.meta_batch_size."""
    return evaluation_batches(
        mode_splits(config, "test"), ways=config.task.ways, shots=config.task.shots,
        queries=config.task.queries, tasks_per_mode=config.eval.tasks_per_mode, seed=config.eval.seed,
        meta_batch_size=config.eval.meta_batch_size, rotate_modes=rotated_modes(config),
    )
