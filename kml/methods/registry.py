"""Method names → models (`build_method`), Multi-* ensembles (`build_multi`), and `kml info`.

| method | meta-learner | modulation |
|---|---|---|
| maml, multi_maml | MAML | none |
| mmaml | MAML | FiLM |
| mmaml_kml | MAML | KML |
| protonet, multi_protonet | ProtoNet | none |
| mprotonet | ProtoNet | FiLM |
| mprotonet_kml | ProtoNet | KML |

A `multi_*` run config trains one member (its `modes` hold the member's single mode), so `build_method`
gives the plain single-mode model; the evaluator assembles the trained members with `build_multi`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from kml import MODES
from kml.config import METHODS, ModelConfig, RunConfig, TaskConfig
from kml.methods.base import MetaLearner
from kml.methods.maml import MAML
from kml.methods.multi import MultiModel
from kml.methods.protonet import ProtoNet
from kml.models.backbone import ConvBackbone
from kml.models.encoder import TaskEncoder
from kml.models.modulation import FiLMGenerator, KMLGenerator

MODULATIONS = {
    "maml": "none",
    "multi_maml": "none",
    "mmaml": "film",
    "mmaml_kml": "kml",
    "protonet": "none",
    "multi_protonet": "none",
    "mprotonet": "film",
    "mprotonet_kml": "kml",
}


def _generator(modulation: str, model: ModelConfig) -> FiLMGenerator | KMLGenerator:
    if modulation == "film":
        return FiLMGenerator(model.embedding_dim, model.channels)
    return KMLGenerator(model.embedding_dim, model.channels, model.kml_form)


def build_method(config: RunConfig) -> MetaLearner:
    """The untrained model of `config.method`, initialised from `config.train.seed` (the global RNG is left
    as it was), on the CPU."""
    model = config.model
    modulation = MODULATIONS[config.method]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.train.seed)
        maml = config.family == "maml"
        # The released MAML code's BN has no affine parameters; the ProtoNet code's has (REFERENCE §2.1).
        backbone = ConvBackbone(
            model.channels, batch_norm_affine=not maml, num_classes=config.task.ways if maml else None
        )
        encoder = TaskEncoder(model.channels, model.embedding_dim) if modulation != "none" else None
        generator = _generator(modulation, model) if modulation != "none" else None
    speed = {"task_batching": config.train.task_batching, "channels_last": config.train.channels_last,
             "amp_bf16": config.train.amp_bf16}
    if maml:
        return MAML(backbone, encoder, generator, query_embedding=model.query_embedding, config=config.maml,
                    **speed)
    return ProtoNet(
        backbone, encoder, generator, query_embedding=model.query_embedding,
        ways=config.task.ways, transductive=config.protonet.transductive, **speed,
    )


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
        note = "  (per mode)" if name.startswith("multi_") else ""
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
