"""What every method shares: the optional task modulation, the per-task loss and the meta-batch forward.

The per-task computation (`task_loss`) is a function of one task's explicit tensors, with no Python control
flow on tensor values and no in-place ops on inputs, so that it works under `torch.func.functional_call`
(the transference analysis evaluates it at modified meta-parameters) and under `torch.func.vmap`.

`forward_tasks` computes one mathematics in two ways (`task_batching`):
  "vmap"  the tasks' networks run together under `torch.func.vmap`: per-task weights (MAML's fast weights,
          KML's modulated kernels) become one grouped convolution, shared ones one convolution over every
          task's images; BatchNorm still normalises each task's images with that task's statistics;
  "loop"  the reference: one task after another in Python; optionally (`channels_last`) with each task's
          images in channels-last layout, with which oneDNN ran ProtoNet-family iterations 1.16-1.18x faster
          on the CPU (second-order MAML: no faster), but whose float32 gradients measured 5x to 43x further
          from float64 than NCHW's (ProtoNet 1-shot at 84 px: 2.0e-3 against 4.6e-5 relative), so it is off
          by default.
"auto" is the loop on the CPU, where it measured faster for every method (84 px, meta-batch 10, 2-core
machine: MAML 1-shot 2.8 s against 4.2 s per iteration, ProtoNet 1-shot 2.2 against 6.5 CPU seconds): oneDNN
runs ten tasks' ordinary convolutions faster than one grouped convolution over them, and vmap's BatchNorm
rule moves the task dimension into the channels and back (copies of every feature map) and applies the
affine parameters as separate passes. On the GPU "auto" is vmap, which turns the ten tasks' small kernels
into one launch each (not measurable in the session that wrote this; `kml bench` on a GPU says).
tests/test_fast_path.py checks that both ways give the same losses and gradients.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import vmap

from kml.models.backbone import ConvBackbone, LayerModulation
from kml.models.encoder import TaskEncoder
from kml.models.modulation import FiLMGenerator, KMLGenerator

if TYPE_CHECKING:  # methods read a batch's tensors only; no runtime dependency on the sampler
    from kml.data.episodes import MetaBatch

TaskBatching = Literal["auto", "vmap", "loop"]


@dataclass(frozen=True)
class EpisodeResult:
    loss: Tensor  # scalar: mean over tasks of the query cross-entropy
    task_losses: Tensor  # [T]
    task_accuracies: Tensor  # [T], fractions in [0, 1]


class MetaLearner(nn.Module, abc.ABC):
    """A backbone plus, for the modulated methods, a task encoder and a generator (both or neither)."""

    def __init__(
        self,
        backbone: ConvBackbone,
        encoder: TaskEncoder | None = None,
        generator: FiLMGenerator | KMLGenerator | None = None,
        *,
        query_embedding: Literal["support", "query"] = "support",
        task_batching: TaskBatching = "auto",
        channels_last: bool = False,
        amp_bf16: bool = False,
    ):
        super().__init__()
        if (encoder is None) != (generator is None):
            raise ValueError("a modulated method needs both a task encoder and a generator")
        self.backbone = backbone
        self.encoder = encoder
        self.generator = generator
        self.query_embedding = query_embedding
        # How forward_tasks runs a meta-batch's tasks and lays out their images (module docstring).
        self.task_batching = task_batching
        self.channels_last = channels_last
        # bfloat16 autocast, meant for tensor-core GPUs; it rounds, so it is an option, off by default.
        self.amp_bf16 = amp_bf16

    def modulation(self, images: Tensor) -> list[LayerModulation] | None:
        """The per-layer modulation computed from an image set, or None for an unmodulated method."""
        if self.encoder is None:
            return None
        return self.generator(self.encoder(images))

    def task_modulations(
        self, support_x: Tensor, query_x: Tensor
    ) -> tuple[list[LayerModulation] | None, list[LayerModulation] | None]:
        """(support pass, query pass) modulations: both from the support set, or the query pass's from the
        query set (model.query_embedding="query", the released ProtoNet code's quirk, REFERENCE §7.2)."""
        support = self.modulation(support_x)
        if self.query_embedding == "query":
            return support, self.modulation(query_x)
        return support, support

    @abc.abstractmethod
    def query_logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """Logits [N*Q, N] of one task's queries after learning from its support set."""

    def task_loss(
        self, support_x: Tensor, support_y: Tensor, query_x: Tensor, query_y: Tensor
    ) -> tuple[Tensor, Tensor]:
        """One task: (query cross-entropy, query accuracy), both scalars."""
        logits = self.query_logits(support_x, support_y, query_x)
        # At least float32: a bfloat16 mean of 75 hits would round the accuracy to about 3 digits.
        hits = logits.argmax(dim=-1) == query_y
        accuracy = hits.to(torch.promote_types(logits.dtype, torch.float32)).mean()
        return F.cross_entropy(logits, query_y), accuracy

    def batches_tasks(self, device: torch.device) -> bool:
        """Whether `forward_tasks` vmaps over the tasks on `device` (module docstring)."""
        if self.task_batching != "auto":
            return self.task_batching == "vmap"
        return device.type != "cpu"

    def forward_tasks(
        self, support_images: Tensor, support_labels: Tensor, query_images: Tensor, query_labels: Tensor
    ) -> EpisodeResult:
        """`task_loss` of every task along the leading dimension, vmapped or in a loop (`task_batching`)."""
        tasks = (support_images, support_labels, query_images, query_labels)
        device = support_images.device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp_bf16):
            if self.batches_tasks(device):
                losses, accuracies = vmap(self.task_loss)(*tasks)
            else:
                per_task = [self.task_loss(self._layout(s), sy, self._layout(q), qy)
                            for s, sy, q, qy in zip(*tasks)]
                losses, accuracies = (torch.stack(values) for values in zip(*per_task))
        return EpisodeResult(losses.mean(), losses, accuracies)

    def _layout(self, images: Tensor) -> Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def forward(self, batch: MetaBatch) -> EpisodeResult:
        """`batch` already on the device, with float images."""
        return self.forward_tasks(
            batch.support_images, batch.support_labels, batch.query_images, batch.query_labels
        )

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """{"base": backbone, "modulation": task encoder + generator}: the two Adams' parameters."""
        parts = [part for part in (self.encoder, self.generator) if part is not None]
        modulation = [p for part in parts for p in part.parameters()]
        return {"base": list(self.backbone.parameters()), "modulation": modulation}
