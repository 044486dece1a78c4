"""How a run executes: on which device, and how a meta-batch's tasks run there.

One decision (`Execution.of`) serves training, evaluation and the transference analysis; the methods hold
only the mathematics (kml/methods/base.py), and every way of executing computes the same:

    vmap_tasks     the tasks run together under torch.func.vmap: per-task weights (MAML's fast weights,
                   KML's modulated kernels) become grouped convolutions, shared ones one convolution over
                   every task's images; otherwise they run one after another (`MetaLearner.forward_tasks`,
                   the reference);
    channels_last  the loop's images in channels-last memory layout;
    amp_bf16       bfloat16 autocast.

`train.task_batching: auto` is vmap on an accelerator and the loop on the CPU, where oneDNN runs ten tasks'
ordinary convolutions faster than one grouped convolution over them; channels-last and bf16 are off unless
asked for, because they move results (docs/performance.md has the measurements behind each choice).
tests/test_fast_path.py checks that the ways agree.
"""

from __future__ import annotations

import resource
import sys
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.func import vmap

from kml import gpus
from kml.config import TrainConfig
from kml.data.episodes import MetaBatch
from kml.methods.base import EpisodeResult, MetaLearner
from kml.methods.multi import MultiModel


def resolve_device(name: str) -> torch.device:
    """train.device: "auto" is a GPU when there is one, else the CPU; anything else as torch spells it.

    With several visible GPUs, "auto" is one that no other kml job on this machine holds while there is one
    (kml/gpus.py), and it becomes this process's current CUDA device.
    """
    if name != "auto":
        return torch.device(name)
    if not torch.cuda.is_available():
        return torch.device("cpu")
    count = torch.cuda.device_count()
    if count == 1:
        return torch.device("cuda")
    index = gpus.claim([_gpu_id(i) for i in range(count)])
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def _gpu_id(index: int) -> str:
    """What names a GPU alike in every process, whatever its CUDA_VISIBLE_DEVICES: its UUID."""
    return str(getattr(torch.cuda.get_device_properties(index), "uuid", index))


@dataclass(frozen=True)
class Execution:
    device: torch.device
    vmap_tasks: bool = False
    channels_last: bool = False
    amp_bf16: bool = False

    @classmethod
    def of(cls, train: TrainConfig, device: torch.device | None = None) -> Execution:
        """How a run with these training settings executes (on `device`, default: train.device)."""
        device = resolve_device(train.device) if device is None else device
        vmap_tasks = train.task_batching == "vmap" or (train.task_batching == "auto" and device.type != "cpu")
        return cls(device, vmap_tasks, train.channels_last, train.amp_bf16)

    @property
    def pin_memory(self) -> bool:
        """Whether batches are staged in pinned host memory and copied without blocking (CUDA only)."""
        return self.device.type == "cuda"

    def to_device(self, batch: MetaBatch) -> MetaBatch:
        return batch.to(self.device, non_blocking=self.pin_memory)

    def run_tasks(self, learner: MetaLearner, support_images: Tensor, support_labels: Tensor,
                  query_images: Tensor, query_labels: Tensor) -> EpisodeResult:
        """`learner.task_loss` of every task along the leading dimension, executed as decided."""
        tasks = (support_images, support_labels, query_images, query_labels)
        with torch.autocast(support_images.device.type, dtype=torch.bfloat16, enabled=self.amp_bf16):
            if self.vmap_tasks:
                return EpisodeResult.of(*vmap(learner.task_loss)(*tasks))
            layout = torch.channels_last if self.channels_last else torch.contiguous_format
            return learner.forward_tasks(*tasks, memory_format=layout)

    def run(self, model: MetaLearner | MultiModel, batch: MetaBatch) -> EpisodeResult:
        """A meta-batch (on the device, float images) through a method or a Multi-* ensemble."""
        if isinstance(model, MultiModel):
            return model(batch, self.run_tasks)
        return self.run_tasks(model, batch.support_images, batch.support_labels, batch.query_images,
                              batch.query_labels)


def peak_memory_mb(device: torch.device) -> float:
    """Peak GPU memory allocated by tensors on CUDA; peak resident set size of the process on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    kilobytes = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # bytes on macOS, KiB on Linux
    return kilobytes / 2**20 if sys.platform == "darwin" else kilobytes / 2**10
