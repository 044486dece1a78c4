"""The sampler benchmark (`sampler`): training meta-batches per second, drawn from splits of the real train
splits' sizes."""

from __future__ import annotations

from collections.abc import Iterator

from kml import MODES
from kml.bench.output import Result
from kml.bench.resources import cpu_description
from kml.bench.settings import SHOTS, BenchSettings
from kml.bench.timing import time_iterations
from kml.bench.workload import QUICK_SPLIT_SIZE, random_splits
from kml.config import ModelConfig, TaskConfig, TrainConfig
from kml.data.episodes import MultimodalSampler

# (classes, images per class) of each mode's train split (docs/specification.md §2.8; CUB averages about 60
# a class).
TRAIN_SPLIT_SIZES = {"omniglot": (1100, 20), "miniimagenet": (64, 600), "fc100": (60, 600), "cub": (140, 60),
                     "aircraft": (70, 100)}


def bench_sampler(settings: BenchSettings) -> Iterator[Result]:
    """Training meta-batches of all five modes per second, converted to float on the CPU as a CPU run does."""
    task, train, image_size = TaskConfig(), TrainConfig(), ModelConfig().image_size
    sizes = {mode: QUICK_SPLIT_SIZE for mode in MODES} if settings.quick else TRAIN_SPLIT_SIZES
    splits = random_splits(sizes, image_size)
    notes = (f"{len(MODES)} modes, round robin; random uint8 images, "
             + ("tiny splits" if settings.quick else "real train-split class and image counts")
             + "; includes the float conversion on the cpu")
    for shots in SHOTS:
        sampler = MultimodalSampler(splits, ways=task.ways, shots=shots, queries=task.queries,
                                    meta_batch_size=train.meta_batch_size, seed=train.seed)
        timing = time_iterations(lambda i, sampler=sampler: sampler.meta_batch(i).to("cpu"), settings)
        yield Result("sampler", cpu_description(), task.ways, shots, task.queries, train.meta_batch_size,
                     image_size, timing, settings.quick, notes)
