"""`protonet.transductive: released` (docs/specification.md §5.3): the released code's transductive step, bugs
included, against a hand computation in NumPy written from the specification alone:

    c_k  = mean of the support features labelled k
    p_qj = softmax_j(−‖f_q − c_j‖²)
    c̃_j = (Σ_{i = jK}^{jK+K−2} f_i + Σ_q p_qj f_q) / (K + Σ_q p_qj)    (row block j, whatever its labels;
                                                                          its last row left out)
    logits_qj = −‖f_q − c̃_j‖²

The tasks put their classes in shuffled order, as the released tasks did, so that "block j" is not class j."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kml.methods.protonet import (
    class_prototypes,
    refine_prototypes,
    released_refine_prototypes,
    squared_distances,
)

WAYS, QUERIES, DIM = 3, 4, 5
BLOCK_ORDER = [2, 0, 1]  # the class of support row block j: not 0, 1, 2


def by_hand(support, labels, queries, shots):
    """The released computation in NumPy, float64: (refined prototypes [N, D], query logits [N*Q, N])."""
    means = np.stack([support[labels == k].mean(axis=0) for k in range(WAYS)])
    scores = -((queries[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    p = np.exp(scores - scores.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    refined = np.empty_like(means)
    for j in range(WAYS):
        block_sum = support[j * shots:j * shots + shots - 1].sum(axis=0)  # nothing at K = 1
        refined[j] = (block_sum + (p[:, j:j + 1] * queries).sum(axis=0)) / (shots + p[:, j].sum())
    logits = -((queries[:, None, :] - refined[None, :, :]) ** 2).sum(axis=2)
    return refined, logits


def shuffled_task(shots, seed=0):
    """Support features [N*K, D] grouped by class in BLOCK_ORDER, their labels, and query features."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(BLOCK_ORDER, shots)
    centres = rng.normal(size=(WAYS, DIM)) * 2
    support = centres[labels] + rng.normal(size=(WAYS * shots, DIM))
    queries = centres[np.repeat(np.arange(WAYS), QUERIES)] + rng.normal(size=(WAYS * QUERIES, DIM))
    return support, labels, queries


def implemented(support, labels, queries, shots, transductive="released"):
    support, queries = torch.from_numpy(support), torch.from_numpy(queries)
    labels = torch.from_numpy(labels)
    prototypes = class_prototypes(support, labels, WAYS)
    if transductive == "released":
        prototypes = released_refine_prototypes(prototypes, support, queries, shots=shots)
    else:
        prototypes = refine_prototypes(prototypes, support, labels, queries)
    return prototypes, -squared_distances(queries, prototypes)


@pytest.mark.parametrize("shots", [1, 5])
def test_the_released_step_is_the_hand_computation_on_shuffled_classes(shots):
    support, labels, queries = shuffled_task(shots)
    prototypes, logits = implemented(support, labels, queries, shots)
    expected_prototypes, expected_logits = by_hand(support, labels, queries, shots)
    np.testing.assert_allclose(prototypes.numpy(), expected_prototypes, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(logits.numpy(), expected_logits, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("shots", [1, 5])
def test_the_bugs_matter_and_the_correct_step_is_unchanged(shots):
    support, labels, queries = shuffled_task(shots)
    released, _ = implemented(support, labels, queries, shots)
    correct, _ = implemented(support, labels, queries, shots, transductive=True)
    assert np.abs(released.numpy() - correct.numpy()).max() > 0.1
    # the intended formula, by hand: all K shots of class k, matched by label
    means = np.stack([support[labels == k].mean(axis=0) for k in range(WAYS)])
    scores = -((queries[:, None, :] - means[None, :, :]) ** 2).sum(axis=2)
    p = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    intended = np.stack([(support[labels == k].sum(axis=0) + p[:, k] @ queries) / (shots + p[:, k].sum())
                         for k in range(WAYS)])
    np.testing.assert_allclose(correct.numpy(), intended, rtol=1e-6, atol=1e-9)


def test_at_one_shot_the_support_image_drops_out():
    support, labels, queries = shuffled_task(1)
    prototypes = class_prototypes(*(torch.from_numpy(a) for a in (support, labels)), WAYS)
    moved = torch.from_numpy(support + 100.0)  # the prototypes it starts from stay where they were
    refined = released_refine_prototypes(prototypes, moved, torch.from_numpy(queries), shots=1)
    torch.testing.assert_close(
        refined, released_refine_prototypes(prototypes, torch.from_numpy(support), torch.from_numpy(queries), shots=1))
