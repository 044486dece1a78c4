"""Seeded few-shot task sampling: N-way K-shot Q-query tasks and multimodal meta-batches.

Why the splits live in memory. A task takes N·(K+Q) images scattered over a split (100 for 5-way 5-shot
15-query; a meta-batch of 10 tasks, 1000), and every meta-batch draws new ones. Read from the HDF5 file or a
memory map, each of those images is a separate random read, so sampling would be I/O bound; held in memory,
a task is two `index_select` gathers (the memory this takes: docs/performance.md). Each split is read once
and transposed once at load to the NCHW layout the networks take, so no task pays for a transpose.

Determinism. Everything is a pure function of a seed and an index, through
`np.random.default_rng([seed, stream, index])`:
  training meta-batch i     stream TRAIN_STREAM, index i (resuming at i needs no sampler state)
  evaluation task t         stream EVAL_STREAM, index t (identical whatever the batch size or the method)
  `fixed_tasks` task t      the caller's stream, index t
Every key has three words on purpose: numpy's SeedSequence pads a key with zeros, so `[s, i]` and
`[s, i, 0]` would be one and the same stream. The streams are reproducible on any machine for a given numpy
version (NEP 19 allows `Generator.choice` and `integers` to change between numpy versions).

Mode mixing follows the released code (docs/specification.md §3.2): slot s of a training meta-batch gets mode
`(s + start) mod M`, in the canonical order `kml.MODES`, with `start` uniform per meta-batch; `iid` draws
each slot's mode uniformly instead. Unlike the released code, which draws a full meta-batch of every mode
and then picks each slot's task among its mode's tasks with replacement (M·B tasks loaded for B used, and
duplicates possible, §3.2), each slot here draws one fresh task of its mode. And where the released
sampler silently falls back to drawing with replacement from a class with fewer than K+Q images, here that
is an error naming the split and the class.

A task differs from the released code's in one harmless respect: support and query rows are sorted by label
(rows k·K:(k+1)·K carry label k) instead of grouped in random first-appearance order (§3.1). The labels are
still a random permutation of the classes, so nothing a model sees about a class depends on its position.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np
import torch

from kml import MODES, KmlError
from kml.data.hdf5 import Split, read_split

# Random-number streams (the middle word of every key); a new consumer of fixed tasks picks a new number.
TRAIN_STREAM = 0
EVAL_STREAM = 1

# Modes whose classes are rotated by a random multiple of 90 degrees per class per task, at train and test
# time alike (docs/specification.md §2.3); DataConfig.omniglot_rotation switches it off.
ROTATED_MODES = frozenset({"omniglot"})

QUARTER_TURNS = 4
# `prefetch` keeps this many meta-batches drawn ahead of the one in use.
PREFETCH_DEPTH = 2
# uint8 pixel values are divided by this to give floats in [0, 1], as torchvision's ToTensor.
PIXEL_MAX = 255


class EpisodeError(KmlError, ValueError):
    """A split cannot provide the requested tasks, or the splits of a setting do not fit together."""


@dataclass(frozen=True)
class SplitImages:
    """One split of one mode, held in memory in the layout tasks are gathered from."""

    mode: str
    images: torch.Tensor  # uint8 [N, 3, S, S], images of one class contiguous
    class_offsets: np.ndarray  # int64 [C+1]: class c is images[offsets[c]:offsets[c+1]]
    class_names: tuple[str, ...]
    origin: str  # where the split came from, for error messages: "path [split]"

    @classmethod
    def from_split(cls, mode: str, split: Split, origin: str) -> SplitImages:
        images = torch.from_numpy(split.images).permute(0, 3, 1, 2).contiguous()
        return cls(mode, images, split.class_offsets, split.class_names, origin)

    @property
    def image_size(self) -> int:
        return self.images.shape[-1]

    @property
    def num_classes(self) -> int:
        return len(self.class_offsets) - 1


def load_splits(files: Mapping[str, str | Path], split: str) -> dict[str, SplitImages]:
    """Read split `split` of each mode's prepared HDF5 file (mode name -> file) into memory, in MODES order;
    each file must hold its mode's dataset."""
    modes = canonical_modes(files)
    splits = {mode: SplitImages.from_split(mode, read_split(files[mode], split, dataset=mode),
                                           f"{files[mode]} [{split}]")
              for mode in modes}
    _check_one_image_size(splits.values())
    return splits


def canonical_modes(modes: Iterable[str]) -> tuple[str, ...]:
    """The given modes in the canonical order of kml.MODES, which fixes the round-robin order (§1.1)."""
    modes = set(modes)
    unknown = sorted(modes - set(MODES))
    if unknown:
        raise EpisodeError(f"data.files: unknown modes {unknown}; the modes are {', '.join(MODES)}")
    return tuple(mode for mode in MODES if mode in modes)


def _check_one_image_size(splits: Iterable[SplitImages]) -> None:
    sizes = {split.origin: split.image_size for split in splits}
    if len(set(sizes.values())) > 1:
        listing = ", ".join(f"{origin}: {size} px" for origin, size in sizes.items())
        raise EpisodeError(f"the modes of one setting must share one image size, but {listing}; "
                           "prepare every file with the same --image-size")


@dataclass(frozen=True)
class MetaBatch:
    """T tasks of one (ways, shots, queries); images uint8 on the host, float32 in [0, 1] after `.to()`."""

    support_images: torch.Tensor  # [T, N*K, 3, S, S]
    support_labels: torch.Tensor  # int64 [T, N*K]; rows k*K:(k+1)*K are label k
    query_images: torch.Tensor  # [T, N*Q, 3, S, S]
    query_labels: torch.Tensor  # int64 [T, N*Q]; rows k*Q:(k+1)*Q are label k
    modes: tuple[str, ...]  # mode of each task
    task_ids: tuple[int, ...]  # stable ids: training i*B + slot; evaluation and fixed tasks: the task index
    classes: np.ndarray  # int64 [T, N]: split-level class index of label k of each task
    # int64 [T, N, K+Q]: split-level index of every image; [t, k, :K] label k's support rows, [t, k, K:] its
    # query rows (before any rotation). Where each image came from, e.g. for reading it in another form.
    image_indices: np.ndarray

    @property
    def num_tasks(self) -> int:
        return len(self.task_ids)

    def to(self, device: torch.device | str, non_blocking: bool = False) -> MetaBatch:
        """The batch on `device` with float32 images in [0, 1]; uint8 is moved first (4x fewer bytes)."""
        return replace(self, **{name: _to_device(getattr(self, name), device, non_blocking)
                                            for name in _TENSOR_FIELDS})

    def pin_memory(self) -> MetaBatch:
        """The batch in page-locked host memory, so that `.to(cuda, non_blocking=True)` overlaps compute."""
        return replace(self, **{name: getattr(self, name).pin_memory() for name in _TENSOR_FIELDS})

    def task(self, t: int) -> MetaBatch:
        """Task t alone, as a batch of one."""
        one = slice(t, t + 1)
        return MetaBatch(**{field.name: getattr(self, field.name)[one] for field in fields(self)})


_TENSOR_FIELDS = ("support_images", "support_labels", "query_images", "query_labels")


def _to_device(tensor: torch.Tensor, device: torch.device | str, non_blocking: bool) -> torch.Tensor:
    """Move, then turn uint8 images into float32 in [0, 1] on the device, as torchvision's ToTensor."""
    tensor = tensor.to(device, non_blocking=non_blocking)
    if tensor.dtype != torch.uint8:  # labels, or images already converted
        return tensor
    return tensor.to(torch.float32).div_(PIXEL_MAX)


class EpisodeSampler:
    """N-way K-shot Q-query tasks from one split: N classes without replacement, K+Q distinct images each."""

    def __init__(self, split: SplitImages, *, ways: int, shots: int, queries: int, rotate: bool) -> None:
        for key, value in (("ways", ways), ("shots", shots), ("queries", queries)):
            if value < 1:
                raise EpisodeError(f"task.{key}: must be at least 1, got {value}")
        self.split = split
        self.ways, self.shots, self.queries = ways, shots, queries
        self.rotate = rotate
        self._check_split_fits()

    def _check_split_fits(self) -> None:
        split = self.split
        if split.num_classes < self.ways:
            raise EpisodeError(f"{split.origin}: {split.num_classes} classes, fewer than a {self.ways}-way "
                               "task needs; lower task.ways or use a split with more classes")
        sizes = np.diff(split.class_offsets)
        smallest = int(np.argmin(sizes))
        per_class = self.shots + self.queries
        if sizes[smallest] < per_class:
            raise EpisodeError(
                f"{split.origin}: class {split.class_names[smallest]!r} has {sizes[smallest]} images, "
                f"fewer than the {self.shots} support + {self.queries} query images a task takes from every "
                "class; lower task.shots or task.queries")

    def write_task(self, rng: np.random.Generator, support_out: torch.Tensor,
                   query_out: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Draw one task from `rng` into support_out [N*K, 3, S, S] and query_out [N*Q, ...]; return its
        classes [N] and image indices [N, K+Q] (row k: label k's support images, then its queries).

        Draw order: classes, then each class's images, then (only when rotating) each class's quarter turns,
        so switching rotation off leaves the classes and images of the task unchanged.
        """
        offsets = self.split.class_offsets
        # Drawn without replacement in random order: label k is classes[k], a random permutation of the
        # classes.
        classes = rng.choice(self.split.num_classes, size=self.ways, replace=False)
        per_class = self.shots + self.queries
        picks = np.stack([rng.choice(offsets[c + 1] - offsets[c], size=per_class, replace=False)
                          for c in classes])
        indices = picks + offsets[classes, None]
        rows = torch.from_numpy(indices)
        torch.index_select(self.split.images, 0, rows[:, :self.shots].flatten(), out=support_out)
        torch.index_select(self.split.images, 0, rows[:, self.shots:].flatten(), out=query_out)
        if self.rotate:
            turns = rng.integers(QUARTER_TURNS, size=self.ways)
            _rotate_classes(support_out, turns, self.shots)
            _rotate_classes(query_out, turns, self.queries)
        return classes, indices


def _rotate_classes(images: torch.Tensor, turns: np.ndarray, per_class: int) -> None:
    """Rotate, in place, the per_class consecutive images of label k by turns[k] quarter turns."""
    for label, k in enumerate(turns):
        if k:
            block = images[label * per_class:(label + 1) * per_class]
            block.copy_(torch.rot90(block, int(k), dims=(2, 3)))


def _collate(draws: list[tuple[EpisodeSampler, np.random.Generator]], task_ids: tuple[int, ...]) -> MetaBatch:
    """One meta-batch from (sampler, rng) per task; the samplers share (ways, shots, queries) and image
    size."""
    first = draws[0][0]
    ways, shots, queries = first.ways, first.shots, first.queries
    image_shape = first.split.images.shape[1:]
    support = torch.empty((len(draws), ways * shots, *image_shape), dtype=torch.uint8)
    query = torch.empty((len(draws), ways * queries, *image_shape), dtype=torch.uint8)
    classes, indices = zip(*(sampler.write_task(rng, support[t], query[t])
                             for t, (sampler, rng) in enumerate(draws)))
    return MetaBatch(
        support_images=support,
        support_labels=torch.arange(ways).repeat_interleave(shots).repeat(len(draws), 1),
        query_images=query,
        query_labels=torch.arange(ways).repeat_interleave(queries).repeat(len(draws), 1),
        modes=tuple(sampler.split.mode for sampler, _ in draws),
        task_ids=task_ids,
        classes=np.stack(classes).astype(np.int64),
        image_indices=np.stack(indices).astype(np.int64),
    )


def _samplers(splits: Mapping[str, SplitImages], ways: int, shots: int, queries: int,
              rotate_modes: Collection[str]) -> dict[str, EpisodeSampler]:
    """One sampler per mode, in canonical mode order."""
    modes = canonical_modes(splits)
    if not modes:
        raise EpisodeError("data.files: give at least one mode's prepared file")
    _check_one_image_size(splits.values())
    return {mode: EpisodeSampler(splits[mode], ways=ways, shots=shots, queries=queries,
                                 rotate=mode in rotate_modes)
            for mode in modes}


class MultimodalSampler:
    """Training meta-batches over one or more modes; meta-batch i is a pure function of (seed, i)."""

    def __init__(self, splits: Mapping[str, SplitImages], *, ways: int, shots: int, queries: int,
                 meta_batch_size: int, seed: int, mode_assignment: str = "round_robin",
                 rotate_modes: Collection[str] = ROTATED_MODES) -> None:
        if mode_assignment not in ("round_robin", "iid"):
            raise EpisodeError(f"data.mode_assignment: {mode_assignment!r} is not 'round_robin' or 'iid'")
        if meta_batch_size < 1:
            raise EpisodeError(f"train.meta_batch_size: must be at least 1, got {meta_batch_size}")
        self.samplers = _samplers(splits, ways, shots, queries, rotate_modes)
        self.modes = tuple(self.samplers)
        self.meta_batch_size = meta_batch_size
        self.seed = seed
        self.mode_assignment = mode_assignment

    def slot_modes(self, rng: np.random.Generator) -> list[str]:
        """The mode of each slot of one meta-batch."""
        count, size = len(self.modes), self.meta_batch_size
        if self.mode_assignment == "iid":
            picks = rng.integers(count, size=size)
        else:
            picks = (np.arange(size) + rng.integers(count)) % count
        return [self.modes[p] for p in picks]

    def meta_batch(self, iteration: int) -> MetaBatch:
        rng = np.random.default_rng([self.seed, TRAIN_STREAM, iteration])
        modes = self.slot_modes(rng)
        # One child stream per slot: a task's content depends only on (seed, iteration, slot), whatever the
        # other slots drew (spawned keys cannot coincide with the three-word keys of other streams).
        draws = [(self.samplers[mode], task_rng) for mode, task_rng in zip(modes, rng.spawn(len(modes)))]
        first = iteration * self.meta_batch_size
        return _collate(draws, tuple(range(first, first + len(draws))))


def _fixed_batches(sampler_of: Callable[[int], EpisodeSampler], count: int, seed: int, stream: int,
                   batch_size: int) -> Iterator[MetaBatch]:
    """Tasks 0..count-1, task t drawn from sampler_of(t) with default_rng([seed, stream, t]), in batches.

    Not a generator itself, so that a bad batch size is reported at the call, not at the first batch.
    """
    if batch_size < 1:
        raise EpisodeError(f"meta-batch size (eval.meta_batch_size) must be at least 1, got {batch_size}")
    id_batches = (range(start, min(start + batch_size, count)) for start in range(0, count, batch_size))
    return (_collate([(sampler_of(t), np.random.default_rng([seed, stream, t])) for t in ids], tuple(ids))
            for ids in id_batches)


def evaluation_batches(splits: Mapping[str, SplitImages], *, ways: int, shots: int, queries: int,
                       tasks_per_mode: int, seed: int, meta_batch_size: int,
                       rotate_modes: Collection[str] = ROTATED_MODES) -> Iterator[MetaBatch]:
    """The fixed evaluation task set: tasks 0..tasks_per_mode*M-1, task t of mode MODES-order modes[t % M].

    Task t depends only on (seed, t) and its mode, so every method, and every batch size, sees the same tasks.
    """
    samplers = list(_samplers(splits, ways, shots, queries, rotate_modes).values())
    return _fixed_batches(lambda t: samplers[t % len(samplers)], tasks_per_mode * len(samplers), seed,
                              EVAL_STREAM, meta_batch_size)


def fixed_tasks(split: SplitImages, *, ways: int, shots: int, queries: int, count: int, seed: int,
                stream: int, rotate: bool, batch_size: int = 1) -> Iterator[MetaBatch]:
    """`count` fixed tasks of one split (e.g. the transference analysis's sources and targets).

    Task t depends only on (seed, stream, t); give each use its own named stream.
    """
    sampler = EpisodeSampler(split, ways=ways, shots=shots, queries=queries, rotate=rotate)
    return _fixed_batches(lambda t: sampler, count, seed, stream, batch_size)


def prefetch(batches: Iterable[MetaBatch], *, pin_memory: bool = False,
             depth: int = PREFETCH_DEPTH) -> Iterator[MetaBatch]:
    """The same batches in the same order, each drawn `depth` ahead on a background thread, so that sampling
    overlaps the network's work (the gathers release the GIL); in page-locked memory with `pin_memory`, for
    `.to(cuda, non_blocking=True)`. Batches are pure functions of their index, so prefetching changes nothing
    they contain; an error while drawing one is raised where that batch would have been returned."""
    iterator = iter(batches)

    def draw() -> MetaBatch | None:
        batch = next(iterator, None)
        return batch.pin_memory() if batch is not None and pin_memory else batch

    # One worker: `draw` calls run one after another, in submission order.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="kml-prefetch") as pool:
        pending = deque(pool.submit(draw) for _ in range(depth))
        while (batch := pending.popleft().result()) is not None:
            pending.append(pool.submit(draw))
            yield batch
