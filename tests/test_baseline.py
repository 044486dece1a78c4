"""The released-code baseline of `kml bench` (kml/baseline.py): its data path gives kml's pixels and loads
what the released loader loads, and the benchmark refuses to time it against kml when the two compute
different things."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
import torch

from kml.baseline import BaselineError, ReleasedImages, ReleasedStyle, released_splits
from kml.bench.settings import QUICK, BenchError
from kml.bench.training import compare_training
from kml.config import MAMLConfig, ModelConfig, ProtoNetConfig, RunConfig, TaskConfig, TrainConfig
from kml.data.episodes import PIXEL_MAX, MultimodalSampler
from kml.methods.registry import build_method

SIZE = 16
SIZES = {"miniimagenet": (6, 20), "fc100": (6, 20)}
CPU = torch.device("cpu")


def config(method: str = "maml", **changes) -> RunConfig:
    base = RunConfig(method=method, modes=tuple(SIZES), task=TaskConfig(ways=3, shots=2, queries=3),
                     model=ModelConfig(channels=(4, 4, 4, 4), image_size=SIZE, embedding_dim=8),
                     maml=MAMLConfig(inner_steps=2), train=TrainConfig(meta_batch_size=4))
    return replace(base, **changes)


def sampler(run: RunConfig, splits) -> MultimodalSampler:
    return MultimodalSampler(splits, ways=run.task.ways, shots=run.task.shots, queries=run.task.queries,
                             meta_batch_size=run.train.meta_batch_size, seed=0)


def test_released_forms_hold_the_prepared_pixels():
    splits, released = released_splits(SIZES, SIZE)
    assert released["fc100"].stored.shape[1:] == (32, 32, 3)  # upsampled to 16 px on every load
    assert isinstance(released["miniimagenet"].stored[0], bytes)  # an encoded file, decoded on every load
    for mode in SIZES:
        for index in (0, 57, 119):
            expected = splits[mode].images[index].float() / PIXEL_MAX
            assert torch.equal(released[mode].tensor(index, SIZE), expected)


def test_loads_every_task_of_the_batch_and_a_full_meta_batch_of_every_mode():
    run = config()
    splits, released = released_splits(SIZES, SIZE)
    loads = Counter()

    def counted(mode: str, images: ReleasedImages) -> ReleasedImages:
        def load(stored, side):
            loads[mode] += 1
            return images.load(stored, side)
        return ReleasedImages(images.stored, load)

    counting = {m: counted(m, images) for m, images in released.items()}
    baseline = ReleasedStyle(run, build_method(run), counting, CPU)
    batch = sampler(run, splits).meta_batch(3)
    tasks = baseline.load_tasks(batch)
    floats = batch.to(CPU)
    for t, (support, query) in enumerate(tasks):
        assert torch.equal(support, floats.support_images[t]) and torch.equal(query, floats.query_images[t])
    per_task = run.task.ways * (run.task.shots + run.task.queries)
    assert loads == {mode: run.train.meta_batch_size * per_task for mode in SIZES}
    assert len(baseline.load_seconds) == 1


def test_baseline_rejects_what_it_does_not_implement():
    run = config("protonet", protonet=ProtoNetConfig(transductive=True))
    with pytest.raises(BaselineError, match="transductive"):
        ReleasedStyle(run, build_method(run), {}, CPU)
    with pytest.raises(BaselineError, match="omniglot"):
        released_splits({"omniglot": (6, 20)}, SIZE)


@pytest.mark.parametrize("method", ["maml", "mmaml_kml", "mprotonet"])
def test_benchmark_times_only_equal_computations(method, monkeypatch):
    run = config(method)
    splits, released = released_splits(SIZES, SIZE)
    result = compare_training(run, splits, released, QUICK, CPU, peak_flops=1e9, quick=True, threads="test")
    assert result.max_relative_error <= 1e-5

    # The same baseline with slightly different first-layer kernels (noise: a plain rescaling would be undone
    # by BatchNorm) computes something else, and the benchmark must refuse to time it.
    original = ReleasedStyle.__init__

    def different(self, *args, **kwargs):
        original(self, *args, **kwargs)
        kernels = self.params["backbone.blocks.0.conv.weight"]
        noise = torch.randn(kernels.shape, generator=torch.Generator().manual_seed(0), dtype=kernels.dtype)
        with torch.no_grad():
            kernels.add_(0.01 * kernels.abs().mean() * noise)

    monkeypatch.setattr(ReleasedStyle, "__init__", different)
    with pytest.raises(BenchError, match="disagree"):
        compare_training(run, splits, released, QUICK, CPU, peak_flops=1e9, quick=True, threads="test")
