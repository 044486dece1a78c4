"""The configuration of one run (training, evaluation or transference): types, bounds and defaults, once.

`kml train/evaluate/transference --config FILE` reads a run configuration; the workflow composes one per job
from `config.yaml` (kml/workflow_config.py, kml/plan.py), so both entry points validate with these classes.
Defaults are the paper preset's values for a MAML-family run. The paper's implementation details were not
available, so most hyperparameters are the released MMAML code's; where the paper and the released code
disagree and the paper is explicit, the default follows the paper (docs/specification.md §0.1, §5.1, §6, §9).
The ProtoNet family's schedule and the Multi-MAML members' settings exist only as overrides in `config.yaml`
(§6.2, §6.3), so a run file for those must state them, as the workflow's do. A misspelt key, a wrongly typed
value or one out of bounds is rejected by a `ConfigError` that names the dotted key, the value and the fix.

Each key also declares which jobs read it (`ReadBy`): the workflow hands a job only the keys it reads, so that
changing a value in `config.yaml` reruns exactly the jobs whose result it can change.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import yaml
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from kml import MODES, KmlError
from kml.method_table import METHOD_NAMES, Method, method_spec


class ConfigError(KmlError, ValueError):
    """A configuration file or value is invalid; the message names the key and the fix."""


# ---- value types -------------------------------------------------------------------------------------------

FLOAT32_MAX = 3.4028234663852886e38


def _number_from_text(value: Any) -> Any:
    # PyYAML follows YAML 1.1, which reads 1e-3 (no dot) as text; accept it as the number it means.
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _float32(value: float) -> float:
    if not math.isfinite(value) or abs(value) > FLOAT32_MAX:
        raise ValueError(f"must be a finite number within the float32 range (±{FLOAT32_MAX:.1e})")
    return value


Int = Annotated[int, Strict()]
PositiveInt = Annotated[int, Strict(), Field(ge=1)]
Real = Annotated[float, BeforeValidator(_number_from_text), Strict(), AfterValidator(_float32)]
NonNegative = Annotated[Real, Field(ge=0)]
Positive = Annotated[Real, Field(gt=0)]
Bool = Annotated[bool, Strict()]
Text = Annotated[str, Strict(), Field(min_length=1)]
Mode = Literal[MODES]
MethodName = Literal[METHOD_NAMES]


def exact_literal(*choices: Any) -> Any:
    """Literal[choices], strict as the scalars above: a bare Literal would take 1 for True and 0 for False."""
    spelt = [str(choice).lower() if isinstance(choice, bool) else repr(choice) for choice in choices]
    expected = f"{', '.join(spelt[:-1])} or {spelt[-1]}"

    def exact(value: Any) -> Any:
        if not any(type(value) is type(choice) and value == choice for choice in choices):
            raise PydanticCustomError("literal_error", "Input should be {expected}", {"expected": expected})
        return value

    return Annotated[Literal[choices], BeforeValidator(exact)]


Transductive = exact_literal(False, True, "released")

# Lax at the level of sections (a YAML mapping becomes a section, a list a tuple); every scalar is strict.
SECTION = ConfigDict(extra="forbid")


# ---- who reads a key ---------------------------------------------------------------------------------------

# "sweep" is the transference step-size sweep (`kml transference --sweep`).
Job = Literal["train", "evaluate", "transference", "sweep"]
TRAIN: frozenset[str] = frozenset({"train"})
EVALUATE: frozenset[str] = frozenset({"evaluate"})
TRANSFERENCE: frozenset[str] = frozenset({"transference"})
SWEEP: frozenset[str] = frozenset({"sweep"})
EVERY_JOB: frozenset[str] = TRAIN | EVALUATE | TRANSFERENCE | SWEEP


@dataclasses.dataclass(frozen=True)
class Run:
    """What decides whether a key matters to a job: the method, the modes and the run's other values."""

    method: Method
    modes: tuple[str, ...]
    sections: Mapping[str, Mapping[str, Any]]


def _always(run: Run) -> bool:
    return True


def _maml_family(run: Run) -> bool:
    return run.method.family == "maml"


def _protonet_family(run: Run) -> bool:
    return run.method.family == "protonet"


def _modulated(run: Run) -> bool:
    return run.method.modulated


def _kernel_modulated(run: Run) -> bool:
    return run.method.modulation == "kml"


def _several_modes(run: Run) -> bool:
    return len(run.modes) > 1


def _omniglot(run: Run) -> bool:
    return "omniglot" in run.modes


def _decaying(run: Run) -> bool:
    return run.sections["optim"].get("lr_decay_every") is not None


@dataclasses.dataclass(frozen=True)
class ReadBy:
    """The jobs that read a key, and for which runs (`when`).

    `resumable`: a checkpoint written under one value may be resumed under another (where a run executes
    changes nothing a checkpoint holds).
    """

    jobs: frozenset[str]
    when: Callable[[Run], bool] = _always
    resumable: bool = False

    def reads(self, job: str, run: Run) -> bool:
        return job in self.jobs and self.when(run)


# `kml evaluate` and `kml transference` rebuild each model from the configuration saved with it, so of a
# training's keys they read only the tasks, the image size the model expects of the data and where to run.
EVERY_JOB_READS = ReadBy(EVERY_JOB)
ANALYSIS_READS = ReadBy(TRANSFERENCE)  # of the transference section: not its step-size sweep


# ---- sections ----------------------------------------------------------------------------------------------

@dataclass(frozen=True, config=SECTION)
class TaskConfig:
    read_by: ClassVar[ReadBy] = EVERY_JOB_READS

    ways: Annotated[Int, Field(ge=2)] = 5
    shots: PositiveInt = 1
    queries: PositiveInt = 15


@dataclass(frozen=True, config=SECTION)
class DataConfig:
    read_by: ClassVar[ReadBy] = ReadBy(TRAIN)

    # mode name -> prepared HDF5 file (`kml prepare`)
    files: Annotated[dict[Mode, Text], EVERY_JOB_READS] = field(default_factory=dict)
    # Omniglot classes rotated by a random k*90 degrees per class per task, at train and test (§2.3).
    omniglot_rotation: Annotated[Bool, ReadBy(EVERY_JOB, _omniglot)] = True
    # "round_robin": slot i of a meta-batch gets mode (i + start) mod M, as the released code (§3.2).
    # "iid": every task draws its mode uniformly at random.
    mode_assignment: Annotated[Literal["round_robin", "iid"], ReadBy(TRAIN, _several_modes)] = "round_robin"


@dataclass(frozen=True, config=SECTION)
class ModelConfig:
    read_by: ClassVar[ReadBy] = ReadBy(TRAIN)

    channels: Annotated[tuple[PositiveInt, ...], Field(min_length=1)] = (32, 64, 128, 256)
    image_size: Annotated[Int, Field(ge=8), EVERY_JOB_READS] = 84
    # Dimension of the task embedding produced by the task encoder (MMAML's --embedding-hidden-size).
    embedding_dim: Annotated[PositiveInt, ReadBy(TRAIN, _modulated)] = 128
    # KML kernel form: "residual" W*(J+M) as in the paper; "released" W*M as in the released code (§4.4).
    kml_form: Annotated[Literal["residual", "released"], ReadBy(TRAIN, _kernel_modulated)] = "residual"
    # Which set the query pass's task embedding comes from; "query" is the released ProtoNet code's quirk
    # (§5.2).
    query_embedding: Annotated[Literal["support", "query"], ReadBy(TRAIN, _modulated)] = "support"


@dataclass(frozen=True, config=SECTION)
class MAMLConfig:
    read_by: ClassVar[ReadBy] = ReadBy(TRAIN, _maml_family)

    inner_steps: Annotated[Int, Field(ge=0)] = 5
    inner_lr: NonNegative = 0.05
    # Element-wise clamp of inner-loop gradients (--inner-loop-grad-clip); 0 disables it.
    grad_clamp: NonNegative = 20.0
    first_order: Bool = False


@dataclass(frozen=True, config=SECTION)
class ProtoNetConfig:
    read_by: ClassVar[ReadBy] = ReadBy(TRAIN, _protonet_family)

    # The released code's transductive prototype refinement (§5.3): true computes the formula it intends,
    # "released" what it computes, bugs included.
    transductive: Transductive = False


@dataclass(frozen=True, config=SECTION)
class OptimConfig:
    read_by: ClassVar[ReadBy] = ReadBy(TRAIN)

    # Two Adams: base network and modulation network (task encoder + generator).
    lr: Positive = 1e-3
    modulation_lr: Annotated[Positive, ReadBy(TRAIN, _modulated)] = 1e-3
    # Multiply both learning rates by lr_decay_factor every lr_decay_every iterations (ProtoNet family:
    # 10000).
    lr_decay_every: PositiveInt | None = None
    lr_decay_factor: Annotated[Positive, ReadBy(TRAIN, _decaying)] = 0.5


@dataclass(frozen=True, config=SECTION)
class TrainConfig:
    read_by: ClassVar[ReadBy] = ReadBy(TRAIN)

    iterations: PositiveInt = 60000
    meta_batch_size: PositiveInt = 10
    seed: Int = 0
    # "auto" is the GPU when there is one, else the CPU; anything else as torch spells it.
    device: Annotated[Text, ReadBy(EVERY_JOB, resumable=True)] = "auto"
    checkpoint_every: PositiveInt = 1000
    # Iterations whose checkpoints are kept and published as snapshots (the transference analysis reads them).
    extra_checkpoints: tuple[PositiveInt, ...] = ()
    log_every: PositiveInt = 100
    # How the model executes, in training and wherever it is used later (evaluation and transference take
    # these from the configuration saved with the model); kml/execution.py decides how they apply and
    # docs/performance.md has the measurements. How a meta-batch's tasks run: "vmap" together, "loop" one
    # after another (the reference), "auto" the loop on the CPU and vmap on any other device. Same mathematics
    # either way.
    task_batching: Literal["auto", "vmap", "loop"] = "auto"
    # The loop's images in channels-last layout: off, because its float32 gradients are measurably further
    # from float64 than NCHW's for a small CPU speed-up (docs/performance.md).
    channels_last: Bool = False
    # bfloat16 autocast: faster on tensor-core GPUs, but it rounds, so results change; off by default.
    amp_bf16: Bool = False

    def checkpoints_beyond_run(self) -> list[int]:
        """The extra checkpoints a run of `iterations` never reaches (their snapshots would never appear)."""
        return [n for n in self.extra_checkpoints if n > self.iterations]


@dataclass(frozen=True, config=SECTION)
class EvalConfig:
    read_by: ClassVar[ReadBy] = ReadBy(EVALUATE)

    tasks_per_mode: PositiveInt = 1000
    seed: Int = 2021
    # Tasks evaluated together; changes speed only, never which tasks are drawn.
    meta_batch_size: PositiveInt = 10


@dataclass(frozen=True, config=SECTION)
class FamilyStepSizes:
    """α of the plain gradient-step lookahead, one per meta-learner family, shared by the family's methods,
    snapshots and shot counts so that they are compared at the same step (docs/transference.md: how chosen).
    A run reads its own family's."""

    read_by: ClassVar[ReadBy] = ReadBy(TRANSFERENCE)

    maml: Annotated[Positive, ReadBy(TRANSFERENCE, _maml_family)] = 3e-4
    protonet: Annotated[Positive, ReadBy(TRANSFERENCE, _protonet_family)] = 1e-3


@dataclass(frozen=True, config=SECTION)
class StepSizeSweepConfig:
    """The step-size sweep (`kml transference --sweep`): the first `sources` x `targets` fixed tasks of the
    analysis at every α of `step_sizes`, on the last analysed snapshot of each model."""

    read_by: ClassVar[ReadBy] = ReadBy(SWEEP)

    step_sizes: Annotated[tuple[Positive, ...], Field(min_length=1)] = (
        1e-5, 3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)
    sources: PositiveInt = 50
    targets: PositiveInt = 5


@dataclass(frozen=True, config=SECTION)
class TransferenceConfig:
    """Loss-ratio analysis (docs/transference.md, docs/specification.md §8): sources from one mode's
    meta-train split, targets from another's meta-test split. The analysis and its step-size sweep
    (`--sweep`) share the fixed tasks; each reads only its own keys of the rest.
    """

    read_by: ClassVar[ReadBy] = ReadBy(TRANSFERENCE | SWEEP)

    source_mode: Mode = "miniimagenet"
    target_mode: Mode = "fc100"
    sources: Annotated[PositiveInt, ANALYSIS_READS] = 300
    # The paper used one target task; several give the positive fraction a confidence interval.
    targets: Annotated[PositiveInt, ANALYSIS_READS] = 20
    seed: Int = 5
    # "sgd": the paper's θ − α·∇L_i, α = step_size of the run's family; "adam": the training optimizer's
    # next step from the snapshot's state, which is mostly the same momentum for every source
    # (docs/transference.md).
    lookahead: Annotated[Literal["sgd", "adam"], ANALYSIS_READS] = "sgd"
    step_size: Annotated[FamilyStepSizes, ANALYSIS_READS] = FamilyStepSizes()
    # "all": base and modulation networks; "base": the base network only.
    lookahead_params: Literal["all", "base"] = "all"
    # |LR - 1| < neutral_band counts as neutral.
    neutral_band: NonNegative = 0.01
    # Source tasks whose lookaheads are evaluated together (vmapped); changes speed and memory only.
    batch_size: PositiveInt = 10
    sweep: Annotated[StepSizeSweepConfig, ReadBy(SWEEP)] = StepSizeSweepConfig()


SECTIONS: dict[str, type] = {
    "task": TaskConfig, "data": DataConfig, "model": ModelConfig, "maml": MAMLConfig,
    "protonet": ProtoNetConfig, "optim": OptimConfig, "train": TrainConfig, "eval": EvalConfig,
    "transference": TransferenceConfig,
}


def _canonical_modes(modes: tuple[str, ...]) -> tuple[str, ...]:
    if len(set(modes)) != len(modes):
        raise ValueError(f"{list(modes)} lists a mode twice")
    # Fixed canonical order: the order given must not matter (§1.1).
    return tuple(m for m in MODES if m in modes)


@dataclass(frozen=True, config=SECTION)
class RunConfig:
    method: Annotated[MethodName, EVERY_JOB_READS]
    # The modes of the setting (joint training) or a single mode (Multi-* members).
    modes: Annotated[tuple[Mode, ...], Field(min_length=1), AfterValidator(_canonical_modes), EVERY_JOB_READS]
    # The setting's name in the paper's tables (2mode_dagger, 2mode, 3mode, 5mode): a label of the outputs,
    # which a resumed training may change.
    setting: Annotated[str, Strict(), ReadBy(EVERY_JOB, resumable=True)] = ""
    task: TaskConfig = TaskConfig()
    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    maml: MAMLConfig = MAMLConfig()
    protonet: ProtoNetConfig = ProtoNetConfig()
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    transference: TransferenceConfig = TransferenceConfig()

    @property
    def spec(self) -> Method:
        """The method's declaration in the method table."""
        return method_spec(self.method)

    @property
    def family(self) -> str:
        return self.spec.family

    def to_dict(self) -> dict[str, Any]:
        """Plain values (lists for tuples), as a run file holds them."""
        return _RUN_CONFIG.dump_python(self, mode="json")


_RUN_CONFIG = TypeAdapter(RunConfig)


# ---- who reads what ----------------------------------------------------------------------------------------

def reader(cls: type, key: str) -> ReadBy | None:
    """The `ReadBy` of a key of RunConfig or of one of its sections: the key's own, else (for a key holding a
    section) None, as each of the section's keys says, else that of the section it is in. An unknown key
    goes with its section (None at the top level), so that validation names it wherever it is read."""
    field = cls.__pydantic_fields__.get(key)
    if field is None:
        return getattr(cls, "read_by", None)
    own = [m for m in field.metadata if isinstance(m, ReadBy)]
    if own:
        return own[0]
    return None if hasattr(field.annotation, "read_by") else cls.read_by


def read_values(values: Mapping[str, Any], job: str, *, resumable: bool = True) -> dict[str, Any]:
    """The part of a run configuration (as a plain dict) that `job` reads for its method and modes.

    With `resumable=False`, keys that a resumed run may change (where it runs) are left out too: what remains
    must be equal for a checkpoint to be resumed.
    """
    run = Run(method_spec(values["method"]), tuple(values["modes"]), values)

    def read(cls: type, section: Mapping[str, Any]) -> dict[str, Any]:
        kept = {}
        for key, value in section.items():
            by = reader(cls, key)
            if by is not None and (not by.reads(job, run) or (by.resumable and not resumable)):
                continue
            inner = cls.__pydantic_fields__[key].annotation if key in cls.__pydantic_fields__ else None
            # A section: what the job reads of it.
            if hasattr(inner, "read_by") and isinstance(value, Mapping):
                value = read(inner, value)
                if not value:
                    continue
            kept[key] = value
        return kept

    return read(RunConfig, values)


# ---- reading and writing -----------------------------------------------------------------------------------

def run_config_from_dict(values: Mapping[str, Any]) -> RunConfig:
    """A validated RunConfig; a ConfigError names the first bad keys."""
    try:
        return _RUN_CONFIG.validate_python(dict(values))
    except ValidationError as error:
        raise ConfigError(describe_errors(error, RunConfig)) from None


def trained_config(recorded: Mapping[str, Any]) -> RunConfig:
    """The configuration saved with a model or snapshot by `kml train`, as far as its training read it.

    What only other jobs read (evaluation, transference) is left out, so that a model trained by an earlier
    kml stays usable after those keys change.
    """
    return run_config_from_dict(read_values(recorded, "train"))


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


# ---- messages ----------------------------------------------------------------------------------------------

MAX_REPORTED_ERRORS = 3


def describe_errors(error: ValidationError, root: type, where: Callable[[str], str] = str) -> str:
    """One line for a pydantic ValidationError of `root`: each bad key with what is wrong and the value given.

    `where(key)` may add where the key came from (the workflow names the configuration file).
    """
    messages: dict[str, str] = {}  # the first problem of each key: later ones follow from it
    for detail in error.errors(include_url=False):
        # List positions and the marker of a mapping's key are not keys a user writes.
        key = ".".join(str(part) for part in detail["loc"] if not isinstance(part, int) and part != "[key]")
        messages.setdefault(key, f"{where(key) if key else 'config'}: {_explain(detail, key, root)}")
    shown = list(messages.values())[:MAX_REPORTED_ERRORS]
    hidden = len(messages) - len(shown)
    return "; ".join(shown) + (f" (and {hidden} more)" if hidden > 0 else "")


def _explain(detail: Mapping[str, Any], key: str, root: type) -> str:
    kind, value = detail["type"], detail.get("input")
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        return f"unknown key; known keys here: {', '.join(_known_keys(root, key))}"
    if kind in ("missing", "missing_argument"):
        return "required, but not given"
    if kind == "literal_error":
        expected = detail["ctx"]["expected"]
        if all(repr(name) in expected for name in METHOD_NAMES):
            return f"unknown method {value!r}; choose one of {', '.join(METHOD_NAMES)}"
        if all(repr(mode) in expected for mode in MODES):
            return f"unknown mode {value!r}; choose from {', '.join(MODES)}"
        return f"{value!r} is not one of {expected}"
    if kind in ("float_type", "float_parsing"):
        return f"expected a number, got {value!r}"
    if kind in ("int_type", "int_from_float", "int_parsing"):
        return f"expected an integer, got {value!r}"
    if kind == "bool_type":
        return f"expected true or false, got {value!r}"
    if kind == "too_short":
        return f"give at least {detail['ctx']['min_length']}"
    message = detail["msg"].removeprefix("Value error, ").replace("Input should be", "must be")
    return f"{message} (got {value!r})" if not isinstance(value, (dict, list, tuple)) else message


def _known_keys(root: type, key: str) -> list[str]:
    cls: Any = root
    for part in key.split(".")[:-1]:
        fields = getattr(cls, "__pydantic_fields__", {})
        if part not in fields:
            return []
        cls = fields[part].annotation
    return sorted(getattr(cls, "__pydantic_fields__", {}))
