"""Meta-learners: MAML's meta-gradients against finite differences and an independent first-order
implementation, the inner loop's contract, ProtoNet's prototypes, Multi-* routing and determinism.
Tiny float64 networks on 8-px images, so every identity holds to near machine precision."""

import copy
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from kml import KmlError
from kml.config import MAMLConfig, ModelConfig, ProtoNetConfig, RunConfig, TaskConfig, TrainConfig
from kml.data.episodes import MetaBatch
from kml.methods.protonet import class_prototypes, refine_prototypes
from kml.methods.registry import build_method, build_multi

WAYS, SHOTS, QUERIES, SIZE = 2, 2, 3, 8
MODULATED = ["mmaml", "mmaml_kml", "mprotonet", "mprotonet_kml"]


def tiny(method, *, seed=0, inner_steps=2, inner_lr=0.05, grad_clamp=0.0, first_order=False,
         query_embedding="support", transductive=False):
    config = RunConfig(
        method=method, modes=("fc100",),
        task=TaskConfig(ways=WAYS, shots=SHOTS, queries=QUERIES),
        model=ModelConfig(channels=(3, 4, 3, 2), image_size=SIZE, embedding_dim=5,
                          query_embedding=query_embedding),
        maml=MAMLConfig(inner_steps=inner_steps, inner_lr=inner_lr, grad_clamp=grad_clamp,
                        first_order=first_order),
        protonet=ProtoNetConfig(transductive=transductive),
        train=TrainConfig(seed=seed),
    )
    return build_method(config).double()


def make_batch(modes, seed=0):
    generator = torch.Generator().manual_seed(seed)
    tasks = len(modes)

    def images(per_class):
        return torch.rand(tasks, WAYS * per_class, 3, SIZE, SIZE, generator=generator, dtype=torch.float64)

    def labels(per_class):
        return torch.arange(WAYS).repeat_interleave(per_class).expand(tasks, -1)

    return MetaBatch(images(SHOTS), labels(SHOTS), images(QUERIES), labels(QUERIES), tuple(modes),
                     tuple(range(tasks)), np.zeros((tasks, WAYS), dtype=np.int64),
                     np.zeros((tasks, WAYS, SHOTS + QUERIES), dtype=np.int64))


def task(batch, t):
    return batch.support_images[t], batch.support_labels[t], batch.query_images[t], batch.query_labels[t]


# (parameter, element) probed by finite differences: base network and, if modulated, the modulation network
PROBES = {
    "maml": [("backbone.blocks.0.conv.weight", (0, 1, 2, 0)), ("backbone.blocks.2.conv.weight", (1, 3, 0, 1)),
             ("backbone.head.weight", (1, 0)), ("backbone.head.bias", (0,))],
    "mmaml": [("encoder.blocks.1.conv.weight", (2, 0, 1, 1)), ("generator.layers.1.weight", (3, 2))],
    "mmaml_kml": [("encoder.project.weight", (1, 0)), ("generator.layers.1.v.weight", (5, 2)),
                  ("generator.layers.3.u.weight", (4, 1))],
}


def loss_and_grads(model, batch, probes):
    model.zero_grad()
    model(batch).loss.backward()
    params = dict(model.named_parameters())
    return [params[name].grad[index].item() for name, index in probes]


@pytest.mark.parametrize("method", ["maml", "mmaml", "mmaml_kml"])
def test_second_order_meta_gradient_matches_central_finite_differences(method):
    model, batch = tiny(method), make_batch(("fc100", "fc100"))
    probes = PROBES["maml"] + (PROBES[method] if method != "maml" else [])
    analytic = loss_and_grads(model, batch, probes)
    params, eps = dict(model.named_parameters()), 1e-6
    with torch.no_grad():  # the loss value does not depend on whether a graph is kept
        for (name, index), grad in zip(probes, analytic):
            value = params[name][index].item()
            params[name][index] = value + eps
            plus = model(batch).loss.item()
            params[name][index] = value - eps
            minus = model(batch).loss.item()
            params[name][index] = value
            assert grad == pytest.approx((plus - minus) / (2 * eps), rel=1e-5, abs=1e-9), name
    # the check can fail: dropping the second-order terms changes these gradients beyond the tolerance
    first_order = loss_and_grads(tiny(method, first_order=True), batch, probes)
    assert any(f != pytest.approx(s, rel=1e-3) for f, s in zip(first_order, analytic))


@pytest.mark.parametrize("method", ["maml", "mmaml_kml"])
def test_first_order_meta_gradient_is_the_query_gradient_at_the_adapted_weights(method):
    model, batch = tiny(method, first_order=True, inner_steps=3), make_batch(("fc100",))
    model(batch).loss.backward()
    support_x, support_y, query_x, query_y = task(batch, 0)
    with torch.no_grad():
        modulation = model.modulation(support_x)
    # independently: a copy of the base network trained by plain SGD, then the query loss's gradient there
    learner = copy.deepcopy(model.backbone)
    sgd = torch.optim.SGD(learner.parameters(), lr=model.inner_lr)
    for _ in range(model.inner_steps):
        sgd.zero_grad()
        F.cross_entropy(learner(support_x, modulation), support_y).backward()
        sgd.step()
    sgd.zero_grad()
    F.cross_entropy(learner(query_x, modulation), query_y).backward()
    for (name, meta), adapted in zip(model.backbone.named_parameters(), learner.parameters(), strict=True):
        torch.testing.assert_close(meta.grad, adapted.grad, msg=name)


def test_inner_loop_reduces_the_support_loss_adapts_only_the_base_network_and_is_the_same_in_eval():
    model, batch = tiny("mmaml_kml", inner_steps=3), make_batch(("fc100",))
    support_x, support_y, _, _ = task(batch, 0)
    modulation = model.modulation(support_x)
    fast = model.adapt(support_x, support_y, modulation)
    assert list(fast) == [name for name, _ in model.backbone.named_parameters()]
    before = F.cross_entropy(model.backbone(support_x, modulation), support_y)
    after = F.cross_entropy(functional_call(model.backbone, fast, (support_x, modulation)), support_y)
    assert after < before
    train_loss = model(batch).loss
    model.eval()
    with torch.no_grad():
        fast_eval = model.adapt(support_x, support_y, modulation)
        eval_loss = model(batch).loss
    for name, weight in fast_eval.items():
        assert weight.grad_fn is None  # evaluation keeps no graph across the inner loop
        torch.testing.assert_close(weight, fast[name])
    torch.testing.assert_close(eval_loss, train_loss)


def test_inner_gradients_are_clamped_elementwise():
    clamp, lr = 0.01, 0.5
    model, batch = tiny("maml", inner_steps=1, inner_lr=lr, grad_clamp=clamp), make_batch(("fc100",))
    support_x, support_y, _, _ = task(batch, 0)
    fast = model.adapt(support_x, support_y, None)
    F.cross_entropy(model.backbone(support_x), support_y).backward()
    clamped = unclamped = 0
    for name, weight in model.backbone.named_parameters():
        torch.testing.assert_close(fast[name], weight - lr * weight.grad.clamp(-clamp, clamp))
        clamped += int((weight.grad.abs() > clamp).sum())
        unclamped += int((weight.grad.abs() < clamp).sum())
    assert clamped > 0 and unclamped > 0


@pytest.mark.parametrize("method", MODULATED)
def test_modulation_is_computed_once_per_task_and_trained_by_the_outer_loss_only(method):
    model, batch = tiny(method, inner_steps=3), make_batch(("fc100",) * 3)
    encoded = []
    model.encoder.register_forward_hook(lambda module, args, output: encoded.append(args[0].shape[0]))
    model(batch).loss.backward()
    assert encoded == [WAYS * SHOTS] * 3  # once per task, not per inner step
    groups = model.parameter_groups()
    assert {id(p) for p in groups["base"]} == {id(p) for p in model.backbone.parameters()}
    assert len(groups["base"]) + len(groups["modulation"]) == len(list(model.parameters()))
    for name, param in model.named_parameters():
        if name.startswith(("encoder.", "generator.")) and ".delta_b." not in name:
            assert param.grad.abs().sum() > 0, name
        # docs/specification.md §4.5: a bias shift before batch-statistics BN cancels exactly
        if ".delta_b." in name:
            assert param.grad.abs().max() < 1e-10, name


@pytest.mark.parametrize("method", ["maml", "protonet"])
def test_unmodulated_methods_have_no_modulation_group(method):
    model = tiny(method)
    assert model.parameter_groups()["modulation"] == [] and model.encoder is None


@pytest.mark.parametrize("method", ["mmaml_kml", "mprotonet"])
def test_query_embedding_switch_chooses_the_images_the_encoder_sees_for_the_query_pass(method):
    support_x, support_y, query_x, _ = task(make_batch(("fc100",)), 0)
    logits = {}
    for choice, expected in (("support", [support_x]), ("query", [support_x, query_x])):
        model = tiny(method, query_embedding=choice)
        seen = []
        model.encoder.register_forward_hook(lambda module, args, output, seen=seen: seen.append(args[0]))
        logits[choice] = model.query_logits(support_x, support_y, query_x)
        assert len(seen) == len(expected) and all(a is b for a, b in zip(seen, expected))
    assert not torch.allclose(logits["support"], logits["query"])


@pytest.mark.parametrize("transductive", [False, True])
def test_protonet_logits_are_negative_squared_distances_to_the_prototypes(transductive):
    model = tiny("mprotonet_kml", transductive=transductive)
    support_x, _, query_x, _ = task(make_batch(("fc100",)), 0)
    support_y = torch.tensor([1, 0, 0, 1])  # not sorted: the class rows are found by label
    logits = model.query_logits(support_x, support_y, query_x)
    modulation = model.modulation(support_x)
    support_f, query_f = model.backbone(support_x, modulation), model.backbone(query_x, modulation)
    prototypes = torch.stack([support_f[support_y == k].mean(dim=0) for k in range(WAYS)])
    if transductive:
        prototypes = refine_prototypes(prototypes, support_f, support_y, query_f)
    torch.testing.assert_close(logits, -torch.cdist(query_f, prototypes) ** 2)


def test_prototypes_are_class_means_and_the_transductive_step_is_the_formula():
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    labels = torch.tensor([1, 0, 1])  # class 0 has one shot, class 1 two, interleaved
    queries = torch.tensor([[1.0, 1.0], [3.0, 0.0]], dtype=torch.float64)
    prototypes = class_prototypes(support, labels, 2)
    torch.testing.assert_close(prototypes, torch.tensor([[2.0, 0.0], [0.0, 1.0]], dtype=torch.float64))
    refined = refine_prototypes(prototypes, support, labels, queries)
    # by hand: p_qk = softmax_k(-|q - c_k|^2); c_k <- (S_k + sum_q p_qk q) / (K_k + sum_q p_qk)
    c = prototypes.tolist()
    p = []
    for q in queries.tolist():
        scores = [math.exp(-sum((qi - ci) ** 2 for qi, ci in zip(q, ck))) for ck in c]
        p.append([s / sum(scores) for s in scores])
    support_sums, shots = [[2.0, 0.0], [0.0, 2.0]], [1, 2]
    expected = [
        [(support_sums[k][d] + sum(p[i][k] * queries[i, d].item() for i in range(2)))
         / (shots[k] + p[0][k] + p[1][k]) for d in range(2)]
        for k in range(2)
    ]
    torch.testing.assert_close(refined, torch.tensor(expected, dtype=torch.float64))


def test_multi_model_routes_each_task_to_its_modes_member_and_keeps_task_order():
    members = {"omniglot": tiny("maml", seed=1), "fc100": tiny("maml", seed=2)}
    batch = make_batch(("fc100", "omniglot", "omniglot", "fc100", "omniglot"))
    result = build_multi(members)(batch)
    for t, mode in enumerate(batch.modes):
        other = "fc100" if mode == "omniglot" else "omniglot"
        loss, accuracy = members[mode].task_loss(*task(batch, t))
        torch.testing.assert_close((result.task_losses[t], result.task_accuracies[t]), (loss, accuracy))
        assert not torch.allclose(members[other].task_loss(*task(batch, t))[0], loss)  # members differ
    torch.testing.assert_close(result.loss, result.task_losses.mean())


def test_multi_model_names_the_missing_mode():
    multi = build_multi({"fc100": tiny("protonet")})
    with pytest.raises(KmlError, match="cub"):
        multi(make_batch(("fc100", "cub")))


def test_same_seed_gives_the_same_initial_weights_and_loss_and_leaves_the_global_rng_alone():
    rng = torch.get_rng_state()
    first, second, other = tiny("mmaml_kml", seed=3), tiny("mmaml_kml", seed=3), tiny("mmaml_kml", seed=4)
    assert torch.equal(torch.get_rng_state(), rng)
    for name, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[name])
    batch = make_batch(("fc100", "fc100"))
    assert torch.equal(first(batch).loss, second(batch).loss)
    assert not torch.equal(first(batch).loss, other(batch).loss)


def test_loss_under_functional_call_is_the_loss_of_a_model_holding_those_parameters():
    model, batch = tiny("mmaml_kml"), make_batch(("fc100",))
    generator = torch.Generator().manual_seed(0)
    theta = {
        name: (p.detach() + 0.05 * torch.randn(p.shape, generator=generator, dtype=p.dtype)).requires_grad_()
        for name, p in model.named_parameters()
    }
    loss = functional_call(model, theta, (batch,)).loss
    holder = copy.deepcopy(model)
    holder.load_state_dict({name: value.detach() for name, value in theta.items()})
    torch.testing.assert_close(loss, holder(batch).loss)
    assert not torch.allclose(loss, model(batch).loss)
    grads = torch.autograd.grad(loss, list(theta.values()))  # every meta-parameter reaches the loss
    assert sum(g.abs().sum() for g in grads) > 0
