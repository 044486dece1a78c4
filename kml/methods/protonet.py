"""Prototypical networks (docs/specification.md §5.2), shared by ProtoNet, MProtoNet (FiLM) and MProtoNet+KML.

Labels are turned into one-hot matrices rather than used as slice bounds, so the support rows of each class
are found wherever they are and nothing depends on tensor values in Python. The one exception is on purpose:
`protonet.transductive: released` reproduces the released code's transductive step, slicing bugs included
(§5.3 there), with `released_support_order` and `released_refine_prototypes`.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from kml.methods.base import MetaLearner


def label_matrix(labels: Tensor, ways: int, dtype: torch.dtype) -> Tensor:
    """One-hot [n, ways] of integer labels."""
    return (labels[:, None] == torch.arange(ways, device=labels.device)).to(dtype)


def class_prototypes(features: Tensor, labels: Tensor, ways: int) -> Tensor:
    """c_k = mean of the features of class k: [ways, D]."""
    onehot = label_matrix(labels, ways, features.dtype)
    return onehot.T @ features / onehot.sum(dim=0)[:, None]


def squared_distances(x: Tensor, prototypes: Tensor) -> Tensor:
    """‖x_i − c_k‖² [n, ways], by explicit differences (no expansion that cancels catastrophically)."""
    return (x[:, None, :] - prototypes[None, :, :]).pow(2).sum(dim=-1)


def refine_prototypes(
    prototypes: Tensor, support_features: Tensor, support_labels: Tensor, query_features: Tensor
) -> Tensor:
    """One transductive step: c_k ← (Σ_{support of k} f + Σ_q p_qk f_q) / (K_k + Σ_q p_qk),
    p_qk = softmax_k(−‖f_q − c_k‖²)."""
    ways = prototypes.shape[0]
    weights = F.softmax(-squared_distances(query_features, prototypes), dim=-1)
    onehot = label_matrix(support_labels, ways, support_features.dtype)
    totals = onehot.T @ support_features + weights.T @ query_features
    counts = onehot.sum(dim=0) + weights.sum(dim=0)
    return totals / counts[:, None]


def released_support_order(support_images: Tensor, support_labels: Tensor, *, ways: int) -> Tensor:
    """Row indices that lay a support set out as the released sampler did: grouped by class, the classes in
    an order that does not depend on their labels; within a class, rows keep their order.

    Why (docs/specification.md §3.1, §5.3): the released step reads "class j" from row block j, but the
    released tasks put the classes in random first-appearance order, independent of the labels, so the class
    whose support sum refined prototype j was a uniformly random one. kml's tasks are sorted by label (block j
    is class j), which would hide that bug. kml's labels, though, are a uniformly random permutation of the
    task's classes, so ordering the classes by any key that ignores the labels has the released effect: which
    class's support sum refines which prototype is again a uniformly random permutation, independent of the
    images. (Within a class both keep a random row order, so the shot left out is a random one in both.)
    The key is the sum of each class's support pixels in units of 1/255: integers, so exact in any summation
    order or memory layout. Two classes tie, and keep their label order, only if those sums are equal.
    """
    onehot = label_matrix(support_labels, ways, torch.int64)
    pixel_sums = (support_images * 255).round().to(torch.int64).flatten(1).sum(dim=1)
    # Elementwise, not a matmul: CUDA has no integer matmul.
    class_position = (onehot * pixel_sums[:, None]).sum(dim=0).argsort(stable=True).argsort()
    rows = support_labels.shape[0]
    row_keys = class_position[support_labels] * rows + torch.arange(rows, device=support_labels.device)
    return row_keys.argsort()


def released_refine_prototypes(
    prototypes: Tensor, support_features: Tensor, query_features: Tensor, *, shots: int
) -> Tensor:
    """The released code's transductive step exactly, bugs included (docs/specification.md §5.3):
        c_j ← (Σ_{i = jK}^{jK+K−2} f_i + Σ_q p_qj f_q) / (K + Σ_q p_qj),   p_qj = softmax_j(−‖f_q − c_j‖²).
    "Class j" is row block j of `support_features` (rows jK … jK+K−1 in the order given, whatever their
    labels), and of it only the first K−1 rows are summed: at K = 1 the sum is empty and the support image
    drops out. The denominator still counts K shots.
    """
    ways, dim = prototypes.shape
    blocks = support_features.reshape(ways, shots, dim)
    support_sums = blocks[:, : shots - 1].sum(dim=1)
    weights = F.softmax(-squared_distances(query_features, prototypes), dim=-1)
    totals = support_sums + weights.T @ query_features
    return totals / (shots + weights.sum(dim=0))[:, None]


class ProtoNet(MetaLearner):
    """`transductive`: False (plain prototypes), True (one correct transductive step) or "released" (the
    released code's step, bugs included, on the support set laid out as the released tasks were)."""

    def __init__(self, *args, ways: int, transductive: bool | Literal["released"], **kwargs):
        super().__init__(*args, **kwargs)
        self.ways = ways
        self.transductive = transductive

    def query_logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """−‖f(x_q) − c_k‖²."""
        support_modulation, query_modulation = self.task_modulations(support_x, query_x)
        support_features = self.backbone(support_x, support_modulation)
        query_features = self.backbone(query_x, query_modulation)
        prototypes = class_prototypes(support_features, support_y, self.ways)
        if self.transductive == "released":
            order = released_support_order(support_x, support_y, ways=self.ways)
            prototypes = released_refine_prototypes(prototypes, support_features[order], query_features,
                                                    shots=support_y.shape[0] // self.ways)
        elif self.transductive:
            prototypes = refine_prototypes(prototypes, support_features, support_y, query_features)
        return -squared_distances(query_features, prototypes)
