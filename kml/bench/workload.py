"""What the benchmarks run: in-memory splits of random images, the sizes a training benchmark runs at
(`Scale`), the run configuration of each measured cost key, and the training iteration they time."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch

from kml.bench.timing import Step
from kml.config import EvalConfig, MAMLConfig, ModelConfig, RunConfig, TaskConfig, TrainConfig
from kml.data.episodes import PIXEL_MAX, MultimodalSampler, SplitImages
from kml.execution import Execution
from kml.methods.base import MetaLearner
from kml.train import Optimizers, training_step

# Quick runs: just enough classes and images for one 5-way 5-shot 15-query task.
QUICK_SPLIT_SIZE = (6, 20)
# The bench's modes: 2Mode-dagger; task content does not change the speed, so random images in tiny splits.
BENCH_MODES = ("miniimagenet", "fc100")

CostKey = tuple[str, int, int, int]  # method as trained, shots, meta-batch size, inner steps (0: ProtoNet)


def random_splits(sizes: dict[str, tuple[int, int]], image_size: int,
                  seed: int = 0) -> dict[str, SplitImages]:
    """In-memory splits of the given sizes with random pixels: sampling speed does not depend on content."""
    rng = np.random.default_rng(seed)
    splits = {}
    for mode, (classes, per_class) in sizes.items():
        images = rng.integers(0, PIXEL_MAX, size=(classes * per_class, 3, image_size, image_size),
                              dtype=np.uint8, endpoint=True)
        splits[mode] = SplitImages(mode, torch.from_numpy(images), np.arange(classes + 1) * per_class,
                                   tuple(f"class{c}" for c in range(classes)), origin=f"random {mode}")
    return splits


@dataclass(frozen=True)
class Scale:
    """The sizes a training benchmark runs at."""

    model: ModelConfig
    task: TaskConfig  # ways and queries; the shots vary
    matmul_size: int  # side of the matrices whose product measures the CPU's peak FLOP/s
    gpu_matmul_size: int  # the same on a GPU, which a CPU-sized product leaves launch-bound
    # Quick runs shrink meta-batches and inner loops as well, keeping the paper preset's distinct
    # configurations distinct, so that every step of the estimate runs.
    meta_batch_divisor: int = 1
    max_inner_steps: int | None = None

    def matmul_side(self, device: torch.device) -> int:
        return self.matmul_size if device.type == "cpu" else self.gpu_matmul_size

    def meta_batch_size(self, paper: int) -> int:
        return -(-paper // self.meta_batch_divisor)

    def inner_steps(self, paper: int) -> int:
        return paper if self.max_inner_steps is None else min(paper, self.max_inner_steps)


PAPER_SCALE = Scale(ModelConfig(), TaskConfig(), matmul_size=2048, gpu_matmul_size=8192)
# Quick: 16 px rather than less, so that the third feature map still has 2x2 pixels (16, 8, 4, 2, 1 through
# the four stride-2 convolutions) and batch-statistics BatchNorm stays well enough conditioned for the fp32
# equivalence check.
QUICK_SCALE = Scale(ModelConfig(channels=(4, 4, 4, 4), image_size=16, embedding_dim=8), TaskConfig(queries=2),
                    matmul_size=256, gpu_matmul_size=256, meta_batch_divisor=5, max_inner_steps=2)


def cost_key(config: RunConfig) -> CostKey:
    """What a run's cost per iteration or per task depends on (a Multi-* member trains as maml/protonet)."""
    steps = config.maml.inner_steps if config.family == "maml" else 0
    return config.method.removeprefix("multi_"), config.task.shots, config.train.meta_batch_size, steps


def bench_config(key: CostKey, scale: Scale) -> RunConfig:
    """The run configuration measured for a paper-preset cost key at `scale`."""
    method, shots, meta_batch_size, inner_steps = key
    train, maml, evaluation = TrainConfig(), MAMLConfig(), EvalConfig()
    return RunConfig(
        method=method, modes=BENCH_MODES, task=replace(scale.task, shots=shots), model=scale.model,
        maml=replace(maml, inner_steps=scale.inner_steps(inner_steps or maml.inner_steps)),
        train=replace(train, meta_batch_size=scale.meta_batch_size(meta_batch_size)),
        eval=replace(evaluation, meta_batch_size=scale.meta_batch_size(evaluation.meta_batch_size)),
    )


def joint_key(method: str, shots: int) -> CostKey:
    """The cost key of a joint training with the configuration defaults (the paper's)."""
    return cost_key(RunConfig(method=method, modes=BENCH_MODES, task=TaskConfig(shots=shots)))


def training_iteration(method: MetaLearner, optimizers: Optimizers, sampler: MultimodalSampler,
                       execution: Execution) -> Step:
    """One meta-training iteration as `kml train` runs it: sample, convert on the device, `training_step`."""

    def step(index: int) -> None:
        training_step(method, optimizers, execution.to_device(sampler.meta_batch(index)), execution)

    return step
