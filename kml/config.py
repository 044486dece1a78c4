"""Typed configuration of one run (training, evaluation or transference).

The workflow writes one of these YAML files per job from `config.yaml`; `kml train --config FILE` reads it.
Defaults are the paper's settings (REFERENCE §3), so an empty section means "as in the paper".
Unknown keys and wrongly typed values are rejected with the dotted path of the offending key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from kml import MODES, KmlError

METHODS = (
    "maml",
    "multi_maml",
    "mmaml",
    "mmaml_kml",
    "protonet",
    "multi_protonet",
    "mprotonet",
    "mprotonet_kml",
)


class ConfigError(KmlError, ValueError):
    """A configuration file or value is invalid; the message names the key and the fix."""


@dataclass(frozen=True)
class TaskConfig:
    ways: int = 5
    shots: int = 1
    queries: int = 15


@dataclass(frozen=True)
class DataConfig:
    # mode name -> prepared HDF5 file (`kml prepare`)
    files: dict[str, str] = field(default_factory=dict)
    # Omniglot classes rotated by a random k*90 degrees per class per task, at train and test (REFERENCE §1.2).
    omniglot_rotation: bool = True
    # "round_robin": slot i of a meta-batch gets mode (i + start) mod M, as the released code (§1.3).
    # "iid": every task draws its mode uniformly at random.
    mode_assignment: Literal["round_robin", "iid"] = "round_robin"


@dataclass(frozen=True)
class ModelConfig:
    channels: tuple[int, ...] = (32, 64, 128, 256)
    image_size: int = 84
    # Dimension of the task embedding produced by the task encoder (MMAML's --embedding-hidden-size).
    embedding_dim: int = 128
    # KML kernel form: "residual" W*(J+M) as in the paper; "released" W*M as in the released code (§7.4).
    kml_form: Literal["residual", "released"] = "residual"
    # Which set the query pass's task embedding comes from; "query" is the released ProtoNet code's quirk (§7.2).
    query_embedding: Literal["support", "query"] = "support"


@dataclass(frozen=True)
class MAMLConfig:
    inner_steps: int = 5
    inner_lr: float = 0.05
    # Element-wise clamp of inner-loop gradients (--inner-loop-grad-clip); 0 disables it.
    grad_clamp: float = 20.0
    first_order: bool = False


@dataclass(frozen=True)
class ProtoNetConfig:
    # The released code's transductive prototype refinement (§2.5), implemented without its bugs (§7.3).
    transductive: bool = False


@dataclass(frozen=True)
class OptimConfig:
    # Two Adams: base network and modulation network (task encoder + generator).
    lr: float = 1e-3
    modulation_lr: float = 1e-3
    # Multiply both learning rates by lr_decay_factor every lr_decay_every iterations (ProtoNet family: 10000).
    lr_decay_every: int | None = None
    lr_decay_factor: float = 0.5


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = 60000
    meta_batch_size: int = 10
    seed: int = 0
    device: str = "auto"
    checkpoint_every: int = 1000
    # Iterations whose checkpoints are kept and published as snapshots (the transference analysis reads them).
    extra_checkpoints: tuple[int, ...] = ()
    log_every: int = 100
    # Speed switches (kml/methods/base.py). How a meta-batch's tasks run: "vmap" together, "loop" one after
    # another (the reference), "auto" what `kml bench` measured faster (vmap on the GPU, and on the CPU
    # wherever a task's network differs from the others'). Same mathematics either way.
    task_batching: Literal["auto", "vmap", "loop"] = "auto"
    # The loop's images in channels-last layout: oneDNN's CPU convolutions run it about 10% faster, but its
    # float32 gradients measured 8-36x further from float64 than NCHW's (kml/methods/base.py), so off.
    channels_last: bool = False
    # bfloat16 autocast: faster on tensor-core GPUs, but it rounds, so results change; off by default.
    amp_bf16: bool = False


@dataclass(frozen=True)
class EvalConfig:
    tasks_per_mode: int = 1000
    seed: int = 2021
    # Tasks evaluated together; changes speed only, never which tasks are drawn.
    meta_batch_size: int = 10


@dataclass(frozen=True)
class FamilyStepSizes:
    """α of the plain gradient-step lookahead, one per meta-learner family, shared by the family's methods,
    snapshots and shot counts so that they are compared at the same step (docs/transference.md: how chosen)."""

    maml: float = 3e-4
    protonet: float = 1e-3


@dataclass(frozen=True)
class StepSizeSweepConfig:
    """The step-size sweep (`kml transference --sweep`): the first `sources` x `targets` fixed tasks of the
    analysis at every α of `step_sizes`, on the last analysed snapshot of each model."""

    step_sizes: tuple[float, ...] = (1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    sources: int = 50
    targets: int = 5


@dataclass(frozen=True)
class TransferenceConfig:
    """Loss-ratio analysis (docs/transference.md): sources from one mode's meta-train split, targets from
    another's meta-test split."""

    source_mode: str = "miniimagenet"
    target_mode: str = "fc100"
    sources: int = 300
    # The paper used one target task; several give the positive fraction a confidence interval.
    targets: int = 20
    seed: int = 5
    # "sgd": the paper's θ − α·∇L_i, α = step_size of the run's family; "adam": the training optimizer's next
    # step from the snapshot's state, which is mostly the same momentum for every source (docs/transference.md).
    lookahead: Literal["sgd", "adam"] = "sgd"
    step_size: FamilyStepSizes = FamilyStepSizes()
    # "all": base and modulation networks; "base": the base network only.
    lookahead_params: Literal["all", "base"] = "all"
    # |LR - 1| < neutral_band counts as neutral.
    neutral_band: float = 0.01
    # Source tasks whose lookaheads are evaluated together (vmapped); changes speed and memory only.
    batch_size: int = 10
    sweep: StepSizeSweepConfig = StepSizeSweepConfig()


@dataclass(frozen=True)
class RunConfig:
    method: str
    # The modes of the setting (joint training) or a single mode (Multi-* members).
    modes: tuple[str, ...]
    # The setting's name in the paper's tables (2mode_dagger, 2mode, 3mode, 5mode); a label for outputs.
    setting: str = ""
    task: TaskConfig = TaskConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    maml: MAMLConfig = MAMLConfig()
    protonet: ProtoNetConfig = ProtoNetConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    transference: TransferenceConfig = TransferenceConfig()

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"method: unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if not self.modes:
            raise ConfigError("modes: give at least one mode")
        for mode in self.modes:
            if mode not in MODES:
                raise ConfigError(f"modes: unknown mode {mode!r}; choose from {', '.join(MODES)}")
        if len(set(self.modes)) != len(self.modes):
            raise ConfigError(f"modes: {list(self.modes)} lists a mode twice")
        # Fixed canonical order: the order given on the command line must not matter (§1.3).
        object.__setattr__(self, "modes", tuple(m for m in MODES if m in self.modes))

    @property
    def family(self) -> Literal["maml", "protonet"]:
        return "protonet" if "protonet" in self.method else "maml"

    def to_dict(self) -> dict[str, Any]:
        return _to_plain(dataclasses.asdict(self))


def _to_plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_plain(v) for v in value]
    return value


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """Check `value` against a type annotation and convert lists to tuples; raise ConfigError on mismatch."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if dataclasses.is_dataclass(annotation):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return _build(annotation, value, where)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigError as error:
                errors.append(str(error))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(map(repr, args))}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return {_coerce(k, args[0], where): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation in (bool, str):
        if not isinstance(value, annotation):
            raise ConfigError(f"{where}: expected {annotation.__name__}, got {value!r}")
        return value
    raise TypeError(f"unsupported annotation {annotation!r} at {where}")


def _build(cls: type, values: dict[str, Any], where: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in values:
        if key not in known:
            path = f"{where}.{key}" if where else key
            raise ConfigError(f"{path}: unknown key; known keys here: {', '.join(sorted(known))}")
    kwargs = {
        key: _coerce(value, hints[key], f"{where}.{key}" if where else key) for key, value in values.items()
    }
    try:
        return cls(**kwargs)
    except TypeError as error:  # a required key is missing
        raise ConfigError(f"{where or 'config'}: {error}") from None


def run_config_from_dict(values: dict[str, Any]) -> RunConfig:
    return _build(RunConfig, values)


# Sections that no trained model depends on. A model or snapshot keeps the configuration it was trained with;
# read back (`trained_config`), these are left out, so that a model trained by an earlier kml stays usable
# after their keys change.
NOT_TRAINED = ("eval", "transference")


def trained_config(recorded: dict[str, Any]) -> RunConfig:
    """The configuration saved with a model or snapshot by `kml train`, without the NOT_TRAINED sections."""
    return run_config_from_dict({key: value for key, value in recorded.items() if key not in NOT_TRAINED})


def load_run_config(path: str | Path) -> RunConfig:
    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return run_config_from_dict(values)
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None


def save_run_config(config: RunConfig, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
