"""What every method shares: the optional task modulation, the per-task loss and the meta-batch forward.

The per-task computation (`task_loss`) is a function of one task's explicit tensors, with no Python control
flow on tensor values and no in-place ops on inputs, so that it works under `torch.func.functional_call`
(the transference analysis evaluates it at modified meta-parameters) and under `torch.func.vmap`.

`forward_tasks` computes one mathematics in two ways (`task_batching`):
  "vmap"  the tasks' networks run together under `torch.func.vmap`: per-task weights (MAML's fast weights,
          KML's modulated kernels) become one grouped convolution, shared ones one convolution over every
          task's images; BatchNorm still normalises each task's images with that task's statistics;
  "loop"  the reference: one task after another in Python, each task's images in channels-last layout
          (`channels_last`), which oneDNN's CPU convolutions run faster than NCHW.
"auto" picks what `kml bench` measured faster: vmap wherever a task's network differs from the others' (an
inner loop or a modulation), and on the GPU; the loop for an unmodulated ProtoNet on the CPU, where every
task runs the same network on batches large enough already, and vmap's BatchNorm rule (moving the task
dimension into the channels and back, and applying the affine parameters separately) costs more than it
saves. The modulation itself is computed task by task before the vmap: the task encoder's weights are shared
by all tasks, the case in which the loop measured faster. tests/test_fast_path.py checks that both ways give
the same losses and gradients.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
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
Modulations = tuple[list[LayerModulation] | None, list[LayerModulation] | None]  # (support pass, query pass)


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
        channels_last: bool = True,
        amp_bf16: bool = False,
    ):
        super().__init__()
        if (encoder is None) != (generator is None):
            raise ValueError("a modulated method needs both a task encoder and a generator")
        self.backbone = backbone
        self.encoder = encoder
        self.generator = generator
        self.query_embedding = query_embedding
        # Speed only (module docstring): how forward_tasks runs a meta-batch's tasks.
        self.task_batching = task_batching
        self.channels_last = channels_last
        # bfloat16 autocast: faster on tensor-core GPUs, but it rounds, so it is an option, off by default.
        self.amp_bf16 = amp_bf16
        # The current task's precomputed modulations while forward_tasks maps task_loss over tasks.
        self._given_modulations: Modulations | None = None

    # Whether the inner loop gives every task its own weights (MAML); ProtoNet has none.
    adapts_per_task = False

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
        if self._given_modulations is not None:
            return self._given_modulations
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
        accuracy = (logits.argmax(dim=-1) == query_y).to(torch.promote_types(logits.dtype, torch.float32)).mean()
        return F.cross_entropy(logits, query_y), accuracy

    def batches_tasks(self, device: torch.device) -> bool:
        """Whether `forward_tasks` vmaps over the tasks on `device` (module docstring)."""
        if self.task_batching != "auto":
            return self.task_batching == "vmap"
        return device.type != "cpu" or self.adapts_per_task or self.encoder is not None

    def forward_tasks(
        self, support_images: Tensor, support_labels: Tensor, query_images: Tensor, query_labels: Tensor
    ) -> EpisodeResult:
        """`task_loss` of every task along the leading dimension, vmapped or in a loop (`task_batching`)."""
        tasks = (support_images, support_labels, query_images, query_labels)
        device = support_images.device
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=self.amp_bf16):
            if self.batches_tasks(device):
                losses, accuracies = self._vmapped_task_losses(*tasks)
            else:
                per_task = [self.task_loss(self._layout(s), sy, self._layout(q), qy) for s, sy, q, qy in zip(*tasks)]
                losses, accuracies = (torch.stack(values) for values in zip(*per_task))
        return EpisodeResult(losses.mean(), losses, accuracies)

    def _layout(self, images: Tensor) -> Tensor:
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def _vmapped_task_losses(self, support_images: Tensor, support_labels: Tensor, query_images: Tensor,
                             query_labels: Tensor) -> tuple[Tensor, Tensor]:
        per_task = [self.task_modulations(s, q) for s, q in zip(support_images, query_images)]
        template = per_task[0]
        stacked = [torch.stack(values) for values in zip(*(_modulation_tensors(m) for m in per_task))]

        def one_task(modulation: list[Tensor], *task: Tensor) -> tuple[Tensor, Tensor]:
            self._given_modulations = _with_tensors(template, modulation)
            try:
                return self.task_loss(*task)
            finally:
                self._given_modulations = None

        return vmap(one_task)(stacked, support_images, support_labels, query_images, query_labels)

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


def _modulation_tensors(modulations: Modulations) -> list[Tensor]:
    """The tensors of a task's (support, query) modulations, in a fixed order (`_with_tensors` inverts it)."""
    return [value for layers in modulations for layer in layers or () for value in _tensor_fields(layer).values()]


def _with_tensors(template: Modulations, tensors: Sequence[Tensor]) -> Modulations:
    """`template` with its tensors replaced, in `_modulation_tensors` order."""
    values = iter(tensors)
    rebuilt = tuple(
        None if layers is None
        else [replace(layer, **{name: next(values) for name in _tensor_fields(layer)}) for layer in layers]
        for layers in template
    )
    return rebuilt


def _tensor_fields(layer: LayerModulation) -> dict[str, Tensor]:
    return {f.name: getattr(layer, f.name) for f in fields(layer) if isinstance(getattr(layer, f.name), Tensor)}
