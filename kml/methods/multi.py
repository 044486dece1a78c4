"""Multi-MAML / Multi-ProtoNet at meta-test: one separately trained model per mode, each task routed to
the model of its ground-truth mode (docs/specification.md §5.4). Training a member is training
`maml`/`protonet` on one mode; this module only routes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import torch
from torch import nn

from kml import KmlError
from kml.methods.base import EpisodeResult, MetaLearner

if TYPE_CHECKING:
    from torch import Tensor

    from kml.data.episodes import MetaBatch

# Runs a member on some tasks' tensors (support images, support labels, query images, query labels).
RunTasks = Callable[[MetaLearner, "Tensor", "Tensor", "Tensor", "Tensor"], EpisodeResult]


def _reference(member: MetaLearner, *tasks: Tensor) -> EpisodeResult:
    return member.forward_tasks(*tasks)


class MultiModel(nn.Module):
    def __init__(self, members: Mapping[str, MetaLearner]):
        super().__init__()
        self.members = nn.ModuleDict(members)

    def forward(self, batch: MetaBatch, run_tasks: RunTasks = _reference) -> EpisodeResult:
        """Each mode's tasks go to its member in one call of `run_tasks` (kml/execution.py passes its own);
        results come back in the batch's task order."""
        missing = sorted(set(batch.modes) - set(self.members))
        if missing:
            raise KmlError(
                f"no model for mode(s) {', '.join(missing)}: give one trained model per mode "
                f"(have {', '.join(self.members) or 'none'})"
            )
        order, losses, accuracies = [], [], []
        for mode in dict.fromkeys(batch.modes):
            tasks = [t for t, m in enumerate(batch.modes) if m == mode]
            index = torch.tensor(tasks, device=batch.support_images.device)
            result = run_tasks(
                self.members[mode], batch.support_images[index], batch.support_labels[index],
                batch.query_images[index], batch.query_labels[index],
            )
            order.append(index)
            losses.append(result.task_losses)
            accuracies.append(result.task_accuracies)
        # position i of the concatenation holds task order[i]; the inverse permutation restores batch order
        inverse = torch.argsort(torch.cat(order))
        return EpisodeResult.of(torch.cat(losses)[inverse], torch.cat(accuracies)[inverse])
