"""What every method shares: the optional task modulation, the per-task loss and the meta-batch loss.

The per-task computation (`task_loss`) is a function of one task's explicit tensors, with no Python control
flow on tensor values and no in-place ops on inputs, so that it works under `torch.func.functional_call`
(the transference analysis evaluates it at modified meta-parameters) and under `torch.func.vmap`
(kml/execution.py runs a meta-batch's tasks together that way where it is faster).

`forward_tasks` is the reference meaning of a meta-batch: each task's `task_loss` in turn, and their mean.
How a run actually executes a meta-batch (vmapped or in this loop, its memory layout, bf16) is decided once,
in kml/execution.py; the methods hold only the mathematics.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kml.models.backbone import ConvBackbone, LayerModulation
from kml.models.encoder import TaskEncoder
from kml.models.modulation import FiLMGenerator, KMLGenerator

if TYPE_CHECKING:  # methods read a batch's tensors only; no runtime dependency on the sampler
    from kml.data.episodes import MetaBatch


@dataclass(frozen=True)
class EpisodeResult:
    loss: Tensor  # scalar: mean over tasks of the query cross-entropy
    task_losses: Tensor  # [T]
    task_accuracies: Tensor  # [T], fractions in [0, 1]

    @classmethod
    def of(cls, task_losses: Tensor, task_accuracies: Tensor) -> EpisodeResult:
        return cls(task_losses.mean(), task_losses, task_accuracies)


class MetaLearner(nn.Module, abc.ABC):
    """A backbone plus, for the modulated methods, a task encoder and a generator (both or neither)."""

    def __init__(
        self,
        backbone: ConvBackbone,
        encoder: TaskEncoder | None = None,
        generator: FiLMGenerator | KMLGenerator | None = None,
        *,
        query_embedding: Literal["support", "query"] = "support",
    ):
        super().__init__()
        if (encoder is None) != (generator is None):
            raise ValueError("a modulated method needs both a task encoder and a generator")
        self.backbone = backbone
        self.encoder = encoder
        self.generator = generator
        self.query_embedding = query_embedding

    def modulation(self, images: Tensor) -> list[LayerModulation] | None:
        """The per-layer modulation computed from an image set, or None for an unmodulated method."""
        if self.encoder is None:
            return None
        return self.generator(self.encoder(images))

    def task_modulations(
        self, support_x: Tensor, query_x: Tensor
    ) -> tuple[list[LayerModulation] | None, list[LayerModulation] | None]:
        """(support pass, query pass) modulations: both from the support set, or the query pass's from the
        query set (model.query_embedding="query", the released ProtoNet code's quirk,
        docs/specification.md §5.2)."""
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

    def forward_tasks(
        self, support_images: Tensor, support_labels: Tensor, query_images: Tensor, query_labels: Tensor,
        *, memory_format: torch.memory_format = torch.contiguous_format,
    ) -> EpisodeResult:
        """`task_loss` of every task along the leading dimension, one after another (`memory_format`: the
        layout of each task's images, a speed option of kml/execution.py)."""
        per_task = [self.task_loss(s.contiguous(memory_format=memory_format), sy,
                                   q.contiguous(memory_format=memory_format), qy)
                    for s, sy, q, qy in zip(support_images, support_labels, query_images, query_labels)]
        losses, accuracies = (torch.stack(values) for values in zip(*per_task))
        return EpisodeResult.of(losses, accuracies)

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
