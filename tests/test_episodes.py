"""The episode sampler: task structure, determinism, mode mixing, the fixed evaluation set, rotation,
errors."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from kml import MODES
from kml.data.episodes import (
    EpisodeError,
    EpisodeSampler,
    MetaBatch,
    MultimodalSampler,
    SplitImages,
    evaluation_batches,
    fixed_tasks,
    load_splits,
    prefetch,
)
from kml.data.hdf5 import Split, write_dataset

WAYS, SHOTS, QUERIES = 3, 2, 3
SIZE = 6
CLASSES = 5
# Uneven class sizes, so that a wrong class offset would gather another class's images.
IMAGES_PER_CLASS = (5, 7, 6, 9, 5)


def _write_dataset(path: Path, name: str, seed: int, size: int = SIZE,
                   images_per_class: tuple[int, ...] = IMAGES_PER_CLASS) -> Path:
    # Random pixels make every stored image, and each of its rotations, unique, so images can be identified.
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(images_per_class)), images_per_class)
    images = rng.integers(0, 256, size=(len(labels), size, size, 3), dtype=np.uint8)
    split = Split(images, labels, tuple(f"{name}-class{c}" for c in range(len(images_per_class))))
    return write_dataset(path, {"train": split}, dataset=name, image_size=size, split_rule="test", sources={})


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("episodes")
    return {mode: _write_dataset(folder / f"{mode}.h5", mode, seed) for seed, mode in enumerate(MODES)}


@pytest.fixture(scope="module")
def splits(files) -> dict[str, SplitImages]:
    return load_splits(files, "train")


def _sampler(splits, modes, seed=0, **options) -> MultimodalSampler:
    return MultimodalSampler({m: splits[m] for m in modes}, ways=WAYS, shots=SHOTS, queries=QUERIES,
                             meta_batch_size=options.pop("meta_batch_size", 6), seed=seed, **options)


def _identify(split: SplitImages, image: torch.Tensor) -> tuple[int, int]:
    """(row in the split, quarter turns k) such that rot90(split.images[row], k) equals `image`."""
    for k in range(4):
        matches = (split.images == torch.rot90(image, -k, dims=(1, 2))).flatten(1).all(1).nonzero()
        if len(matches):
            return int(matches[0]), k
    raise AssertionError("image is not a rotation of any stored image")


def _class_of(split: SplitImages, row: int) -> int:
    return int(np.searchsorted(split.class_offsets, row, side="right")) - 1


def _assert_same(a: MetaBatch, b: MetaBatch) -> None:
    assert torch.equal(a.support_images, b.support_images) and torch.equal(a.query_images, b.query_images)
    assert torch.equal(a.support_labels, b.support_labels) and torch.equal(a.query_labels, b.query_labels)
    assert a.modes == b.modes and a.task_ids == b.task_ids and np.array_equal(a.classes, b.classes)
    assert np.array_equal(a.image_indices, b.image_indices)


def _concat(batches) -> MetaBatch:
    batches = list(batches)
    return MetaBatch(*(torch.cat([getattr(b, f) for b in batches])
                       for f in ("support_images", "support_labels", "query_images", "query_labels")),
                     modes=sum((b.modes for b in batches), ()),
                     task_ids=sum((b.task_ids for b in batches), ()),
                     classes=np.concatenate([b.classes for b in batches]),
                     image_indices=np.concatenate([b.image_indices for b in batches]))


def test_tasks_are_disjoint_label_sorted_and_one_class_per_label(splits):
    batch = _sampler(splits, ("omniglot", "miniimagenet", "cub")).meta_batch(3)
    assert batch.support_images.shape == (6, WAYS * SHOTS, 3, SIZE, SIZE)
    assert batch.query_images.shape == (6, WAYS * QUERIES, 3, SIZE, SIZE)
    for t, mode in enumerate(batch.modes):
        split = splits[mode]
        assert len(set(batch.classes[t].tolist())) == WAYS
        rows = {}
        for part, images, labels, per_class in (
                ("support", batch.support_images, batch.support_labels, SHOTS),
                ("query", batch.query_images, batch.query_labels, QUERIES)):
            assert labels[t].tolist() == [k for k in range(WAYS) for _ in range(per_class)]
            rows[part] = [_identify(split, image)[0] for image in images[t]]
            assert ([_class_of(split, r) for r in rows[part]]
                    == [batch.classes[t][k] for k in labels[t].tolist()])
        assert len(set(rows["support"])) == WAYS * SHOTS and len(set(rows["query"])) == WAYS * QUERIES
        assert not set(rows["support"]) & set(rows["query"])
        if mode != "omniglot":  # unrotated: the recorded indices are the very images gathered
            indices = batch.image_indices[t]
            assert torch.equal(split.images[indices[:, :SHOTS].flatten()], batch.support_images[t])
            assert torch.equal(split.images[indices[:, SHOTS:].flatten()], batch.query_images[t])


def test_same_seed_same_tasks_other_seed_other_tasks(splits):
    modes = ("miniimagenet", "fc100")
    _assert_same(_sampler(splits, modes, seed=4).meta_batch(2), _sampler(splits, modes, seed=4).meta_batch(2))
    other = _sampler(splits, modes, seed=5).meta_batch(2)
    assert not torch.equal(_sampler(splits, modes, seed=4).meta_batch(2).query_images, other.query_images)


def test_meta_batch_depends_only_on_seed_and_iteration(splits):
    resumed = _sampler(splits, MODES).meta_batch(9)
    uninterrupted = _sampler(splits, MODES)
    for i in range(9):
        uninterrupted.meta_batch(i)
    _assert_same(resumed, uninterrupted.meta_batch(9))
    assert resumed.task_ids == tuple(range(54, 60))


@pytest.mark.parametrize(("modes", "expected_counts"), [
    (MODES[:2], [5, 5]),
    (MODES[:3], [3, 3, 4]),
    (MODES, [2, 2, 2, 2, 2]),
])
def test_round_robin_balances_each_meta_batch(splits, modes, expected_counts):
    sampler = _sampler(splits, modes, meta_batch_size=10)
    fourth_mode = set()
    for i in range(30):
        slots = sampler.slot_modes(np.random.default_rng([0, i]))
        counts = Counter(slots)
        assert sorted(counts.values()) == expected_counts
        start = modes.index(slots[0])
        assert slots == [modes[(s + start) % len(modes)] for s in range(10)]
        fourth_mode |= {m for m, n in counts.items() if n == 4}
    if len(modes) == 3:  # the mode with the extra task rotates with the random start
        assert fourth_mode == set(modes)


def test_iid_assignment_is_not_balanced_per_batch(splits):
    sampler = _sampler(splits, MODES[:2], meta_batch_size=10, mode_assignment="iid")
    counts = [Counter(sampler.slot_modes(np.random.default_rng([0, i]))) for i in range(20)]
    assert any(c[MODES[0]] != 5 for c in counts)
    assert sum(c[MODES[0]] for c in counts) > 0 and sum(c[MODES[1]] for c in counts) > 0


def test_meta_batch_carries_the_drawn_modes(splits):
    batch = _sampler(splits, MODES[:3], meta_batch_size=10).meta_batch(4)
    assert sorted(Counter(batch.modes).values()) == [3, 3, 4]
    for t, mode in enumerate(batch.modes):
        _identify(splits[mode], batch.query_images[t, 0])


def test_evaluation_set_is_balanced_and_independent_of_batch_size(splits):
    modes = ("omniglot", "fc100", "aircraft")
    subset = {m: splits[m] for m in modes}
    tasks = {size: _concat(evaluation_batches(subset, ways=WAYS, shots=SHOTS, queries=QUERIES,
                                              tasks_per_mode=4, seed=7, meta_batch_size=size))
             for size in (1, 5, 12)}
    _assert_same(tasks[1], tasks[5])
    _assert_same(tasks[1], tasks[12])
    assert tasks[1].task_ids == tuple(range(12))
    assert tasks[1].modes == modes * 4


def test_fixed_tasks_depend_on_seed_stream_and_index_only(splits):
    def draw(stream, batch_size):
        return _concat(fixed_tasks(splits["miniimagenet"], ways=WAYS, shots=SHOTS, queries=QUERIES, count=5,
                                   seed=3, stream=stream, rotate=False, batch_size=batch_size))

    _assert_same(draw(10, 1), draw(10, 2))
    assert draw(10, 1).modes == ("miniimagenet",) * 5
    assert not torch.equal(draw(10, 5).query_images, draw(11, 5).query_images)


def test_omniglot_classes_are_rotated_and_switch_off(splits):
    modes = ("omniglot", "miniimagenet")
    rotated = _sampler(splits, modes, meta_batch_size=10).meta_batch(1)
    plain = _sampler(splits, modes, meta_batch_size=10, rotate_modes=()).meta_batch(1)
    turns_seen = set()
    for t, mode in enumerate(rotated.modes):
        class_turns = []
        for images, per_class in ((rotated.support_images, SHOTS), (rotated.query_images, QUERIES)):
            turns = [_identify(splits[mode], image)[1] for image in images[t]]
            # One rotation per class: the same for all its images.
            class_turns.append([set(turns[label * per_class:(label + 1) * per_class])
                                for label in range(WAYS)])
            turns_seen |= set(turns)
            if mode != "omniglot":
                assert set(turns) == {0}
        support_turns, query_turns = class_turns
        assert all(len(turns) == 1 for turns in support_turns) and support_turns == query_turns
        # The switch changes the pixels only: the same stored images, unrotated.
        for rotated_images, plain_images in ((rotated.support_images, plain.support_images),
                                             (rotated.query_images, plain.query_images)):
            for image, unrotated in zip(rotated_images[t], plain_images[t]):
                row, _ = _identify(splits[mode], image)
                assert torch.equal(unrotated, splits[mode].images[row])
    assert turns_seen == {0, 1, 2, 3}


def test_to_converts_to_float_in_unit_range(splits):
    batch = _sampler(splits, ("cub",)).meta_batch(0)
    on_device = batch.to("cpu")
    assert on_device.support_images.dtype == torch.float32 and on_device.query_images.dtype == torch.float32
    assert on_device.query_images.shape == batch.query_images.shape
    assert 0.0 <= float(on_device.query_images.min()) and float(on_device.query_images.max()) <= 1.0
    assert torch.equal(on_device.query_images * 255, batch.query_images.to(torch.float32))
    assert on_device.support_labels.dtype == torch.int64
    single = on_device.task(2)
    assert (single.support_images.shape == (1, WAYS * SHOTS, 3, SIZE, SIZE)
            and single.task_ids == (batch.task_ids[2],))


def test_too_few_images_per_class_names_the_split_and_sizes(tmp_path):
    path = _write_dataset(tmp_path / "small.h5", "cub", seed=0, images_per_class=(6, 4, 6))
    split = load_splits({"cub": path}, "train")["cub"]
    with pytest.raises(EpisodeError,
                       match=r"small\.h5 \[train\].*'cub-class1' has 4 images.*2 support \+ 3 query"):
        EpisodeSampler(split, ways=WAYS, shots=SHOTS, queries=QUERIES, rotate=False)


def test_too_few_classes_is_an_error(splits):
    with pytest.raises(EpisodeError, match=r"omniglot\.h5 \[train\]: 5 classes, fewer than a 6-way task"):
        EpisodeSampler(splits["omniglot"], ways=6, shots=1, queries=1, rotate=False)


def test_files_with_different_image_sizes_are_rejected(tmp_path, files):
    other = _write_dataset(tmp_path / "fc100-big.h5", "fc100", seed=0, size=SIZE + 2)
    with pytest.raises(EpisodeError, match=r"omniglot\.h5 \[train\]: 6 px.*fc100-big\.h5 \[train\]: 8 px"):
        load_splits({"omniglot": files["omniglot"], "fc100": other}, "train")


def test_prefetch_gives_the_same_batches_in_order_and_reports_errors_where_they_belong(splits):
    sampler = _sampler(splits, ("omniglot", "cub"))
    direct = [sampler.meta_batch(i) for i in range(5)]
    prefetched = list(prefetch(map(sampler.meta_batch, range(5)), depth=3))
    assert len(prefetched) == 5
    for a, b in zip(direct, prefetched, strict=True):
        _assert_same(a, b)

    def failing():
        yield from direct[:2]
        raise EpisodeError("broken split")

    received = []
    with pytest.raises(EpisodeError, match="broken split"):
        for batch in prefetch(failing()):
            received.append(batch)  # noqa: PERF402 (a loop keeps what arrived before the error)
    assert len(received) == 2  # the batches drawn before the error arrive first

    stream = prefetch(map(sampler.meta_batch, range(1000)))
    next(stream)
    stream.close()  # stopping early waits for at most the batches already drawn ahead
