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

from kml.config import ModelConfig, ProtoNetConfig, RunConfig, TaskConfig, TrainConfig
from kml.execution import Execution
from kml.methods.protonet import (
    class_prototypes,
    refine_prototypes,
    released_refine_prototypes,
    released_support_order,
    squared_distances,
)
from kml.methods.registry import build_method

WAYS, QUERIES, DIM, SIZE = 3, 4, 5, 8
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
        refined,
        released_refine_prototypes(prototypes, torch.from_numpy(support), torch.from_numpy(queries), shots=1))


# ---- in the model: kml's tasks sorted by label, laid out as the released ones ------------------------------

def tiny(shots, transductive):
    config = RunConfig(
        method="protonet", modes=("fc100",), task=TaskConfig(ways=WAYS, shots=shots, queries=QUERIES),
        model=ModelConfig(channels=(3, 4, 3, 2), image_size=SIZE),
        protonet=ProtoNetConfig(transductive=transductive), train=TrainConfig(seed=3),
    )
    return build_method(config).double()


def kml_task(shots, seed=0):
    """Images in 1/255 steps, rows sorted by label as kml's sampler writes them; the classes' pixel sums are
    ordered as BLOCK_ORDER, so the released layout puts class BLOCK_ORDER[j] in block j."""
    generator = torch.Generator().manual_seed(seed)
    support = torch.randint(0, 128, (WAYS * shots, 3, SIZE, SIZE), generator=generator).double()
    # Class BLOCK_ORDER[j] is the j-th darkest.
    brightness = torch.tensor(BLOCK_ORDER).argsort().double() * 128
    support = (support + brightness.repeat_interleave(shots)[:, None, None, None]) / 255
    query = torch.randint(0, 256, (WAYS * QUERIES, 3, SIZE, SIZE), generator=generator).double() / 255
    labels = torch.arange(WAYS).repeat_interleave(shots)
    return support, labels, query


@pytest.mark.parametrize("shots", [1, 5])
def test_the_model_reads_block_j_as_the_released_tasks_laid_it_out(shots):
    model = tiny(shots, "released")
    support_x, support_y, query_x = kml_task(shots)
    # by hand: the classes in order of their support pixel sums (BLOCK_ORDER), each with its rows in order
    sums = [round(float(support_x[support_y == k].sum() * 255)) for k in range(WAYS)]
    assert sorted(range(WAYS), key=sums.__getitem__) == BLOCK_ORDER
    rows = np.concatenate([np.flatnonzero(support_y.numpy() == k) for k in BLOCK_ORDER])
    assert released_support_order(support_x, support_y, ways=WAYS).tolist() == rows.tolist()
    with torch.no_grad():
        support_f = model.backbone(support_x, None).numpy()
        query_f = model.backbone(query_x, None).numpy()
        logits = model.query_logits(support_x, support_y, query_x).numpy()
    _, expected = by_hand(support_f[rows], support_y.numpy()[rows], query_f, shots)
    np.testing.assert_allclose(logits, expected, rtol=1e-6, atol=1e-9)
    # and not what the correct step, or reading kml's sorted blocks, would give
    with torch.no_grad():
        correct = tiny(shots, True).query_logits(support_x, support_y, query_x).numpy()
    _, sorted_blocks = by_hand(support_f, support_y.numpy(), query_f, shots)
    assert np.abs(logits - correct).max() > 1e-3
    assert shots == 1 or np.abs(logits - sorted_blocks).max() > 1e-3  # at 1-shot no support row is read


def test_the_layout_does_not_depend_on_where_the_rows_of_each_class_are():
    support_x, support_y, query_x = kml_task(5, seed=1)
    model = tiny(5, "released")
    # Rows 0, 5, 10, 1, 6, ...: the same class order.
    interleaved = torch.arange(WAYS * 5).reshape(WAYS, 5).T.flatten()
    with torch.no_grad():
        torch.testing.assert_close(
            model.query_logits(support_x[interleaved], support_y[interleaved], query_x),
            model.query_logits(support_x, support_y, query_x))


def test_vmapped_tasks_compute_what_the_loop_computes():
    """train.task_batching: vmap (the GPU's path) runs the released step per task as the loop does."""
    model = tiny(5, "released")
    tasks = [kml_task(5, seed=seed) for seed in range(3)]
    support_x, support_y, query_x = (torch.stack(parts) for parts in zip(*tasks))
    query_y = torch.arange(WAYS).repeat_interleave(QUERIES).expand(3, -1)
    results, gradients = {}, {}
    for batching in ("vmap", "loop"):
        execution = Execution.of(TrainConfig(task_batching=batching), torch.device("cpu"))
        results[batching] = execution.run_tasks(model, support_x, support_y, query_x, query_y)
        gradients[batching] = torch.autograd.grad(results[batching].loss, list(model.parameters()))
    torch.testing.assert_close(results["vmap"].task_losses, results["loop"].task_losses)
    torch.testing.assert_close(results["vmap"].task_accuracies, results["loop"].task_accuracies)
    torch.testing.assert_close(gradients["vmap"], gradients["loop"])
