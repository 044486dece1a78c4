"""Method names → models (`build_method`), Multi-* ensembles (`build_multi`), and `kml info`.

What each method is (meta-learner family, modulation, Multi-*) is declared in the method table,
kml/method_table.py. A `multi_*` run config trains one member (its `modes` hold the member's single mode), so
`build_method` gives the plain single-mode model; the evaluator assembles the trained members with
`build_multi`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from kml import MODES
from kml.config import ModelConfig, RunConfig, TaskConfig
from kml.method_table import METHODS
from kml.methods.base import MetaLearner
from kml.methods.maml import MAML
from kml.methods.multi import MultiModel
from kml.methods.protonet import ProtoNet
from kml.models.backbone import ConvBackbone
from kml.models.encoder import TaskEncoder
from kml.models.modulation import FiLMGenerator, KMLGenerator


def _generator(modulation: str, model: ModelConfig) -> FiLMGenerator | KMLGenerator:
    if modulation == "film":
        return FiLMGenerator(model.embedding_dim, model.channels)
    return KMLGenerator(model.embedding_dim, model.channels, model.kml_form)


def build_method(config: RunConfig) -> MetaLearner:
    """The untrained model of `config.method`, initialised from `config.train.seed` (the global RNG is left
    as it was), on the CPU."""
    model, spec = config.model, config.spec
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        maml = spec.family == "maml"
        # The released MAML code's BN has no affine parameters; the ProtoNet code's has
        # (docs/specification.md §4.1).
        backbone = ConvBackbone(
            model.channels, batch_norm_affine=not maml, num_classes=config.task.ways if maml else None
        )
        encoder = TaskEncoder(model.channels, model.embedding_dim) if spec.modulated else None
        generator = _generator(spec.modulation, model) if spec.modulated else None
    if maml:
        hyperparameters = config.maml
        return MAML(backbone, encoder, generator, query_embedding=model.query_embedding,
                    inner_steps=hyperparameters.inner_steps, inner_lr=hyperparameters.inner_lr,
                    grad_clamp=hyperparameters.grad_clamp, first_order=hyperparameters.first_order)
    return ProtoNet(backbone, encoder, generator, query_embedding=model.query_embedding,
                    ways=config.task.ways, transductive=config.protonet.transductive)


def build_multi(members: Mapping[str, MetaLearner]) -> MultiModel:
    """Multi-MAML / Multi-ProtoNet for evaluation: {mode: trained member} → a model routing tasks by mode."""
    return MultiModel(members)


def _count(module: torch.nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def describe_parameters(channels: Sequence[int], image_size: int, ways: int) -> str:
    """Every method's learnable parameters by part, the ProtoNet embedding size and KML's compression."""
    model = ModelConfig(channels=tuple(channels), image_size=image_size)
    methods = {
        name: build_method(RunConfig(method=name, modes=MODES[:1], task=TaskConfig(ways=ways), model=model))
        for name in METHODS
    }
    columns = ("base network", "task encoder", "generator", "modulation net", "total")
    lines = [
        f"Learnable parameters: channels {'/'.join(map(str, channels))}, {image_size} px, {ways}-way",
        f"{'method':<16}" + "".join(f"{column:>16}" for column in columns),
    ]
    for name, method in methods.items():
        base, encoder, generator = _count(method.backbone), _count(method.encoder), _count(method.generator)
        counts = (base, encoder, generator, encoder + generator, base + encoder + generator)
        note = "  (per mode)" if METHODS[name].multi else ""
        lines.append(f"{name:<16}" + "".join(f"{n:>16,}" for n in counts) + note)
    protonet = methods["protonet"].backbone
    lines.append(f"ProtoNet embedding: {protonet.output_dim(image_size):,}-d")
    kml = methods["mmaml_kml"]
    kernels = sum(_count(conv) for conv in kml.backbone.convs)
    generated = kml.generator.output_size()
    lines.append(
        f"KML generator vs one linear map per layer: Σ(|W_l|+|b_l|) / Σ(v_l+u_l+Δb_l) = "
        f"{kernels:,}/{generated:,} = {kernels / generated:.1f}× smaller"
    )
    return "\n".join(lines)
