"""Prototypical networks (docs/specification.md §5.2), shared by ProtoNet, MProtoNet (FiLM) and MProtoNet+KML.

Labels are turned into one-hot matrices rather than used as slice bounds, so the support rows of each class
are found wherever they are (the released code's slicing bugs, §5.3 there, cannot
occur) and nothing depends on
tensor values in Python.
"""

from __future__ import annotations

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


class ProtoNet(MetaLearner):
    def __init__(self, *args, ways: int, transductive: bool, **kwargs):
        super().__init__(*args, **kwargs)
        self.ways = ways
        self.transductive = transductive

    def query_logits(self, support_x: Tensor, support_y: Tensor, query_x: Tensor) -> Tensor:
        """−‖f(x_q) − c_k‖²."""
        support_modulation, query_modulation = self.task_modulations(support_x, query_x)
        support_features = self.backbone(support_x, support_modulation)
        query_features = self.backbone(query_x, query_modulation)
        prototypes = class_prototypes(support_features, support_y, self.ways)
        if self.transductive:
            prototypes = refine_prototypes(prototypes, support_features, support_y, query_features)
        return -squared_distances(query_features, prototypes)
