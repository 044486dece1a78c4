"""The workflow's configuration: `config.yaml` with any `--configfile` preset merged over it, validated once.

The run-configuration sections (`task` ... `transference`) and every override of them are checked by the very
classes `kml train/evaluate/transference --config` use (kml/config.py), so both entry points accept and reject
the same values; the workflow's own keys (settings, methods, shots, download, prepare, overrides,
transference_runs, variants, variant_cells, ablations, seed_cells, report, resources, and `train.seeds`) are
declared here. A problem is one `ConfigError` line naming the configuration file the bad value came from,
the dotted key, the value and what is wrong.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from kml import MODES
from kml.config import (
    SECTION,
    SECTIONS,
    Bool,
    ConfigError,
    Int,
    MethodName,
    Mode,
    PositiveInt,
    Text,
    describe_errors,
)
from kml.method_table import FAMILY_LABELS, JOINT_METHOD_NAMES, METHOD_NAMES
from kml.variants import SWITCHES, VARIANTS

# Keys of the run configuration that the workflow decides per job, never config.yaml.
DECIDED_BY_THE_WORKFLOW = {
    ("task", "shots"): "set by the workflow from `shots:`",
    ("data", "files"): "set by the workflow: each mode's data/processed/{dataset}-{size}.h5",
    ("train", "extra_checkpoints"): "set by the workflow from `transference_runs.checkpoints`",
    ("train", "seed"): "set by the workflow from `train.seeds`",
}
# Decided per job, but kept in the validated section at its place (a placeholder the plan replaces), so that
# a job's params, compared as text, read as they did before `train.seeds` existed.
KEPT_IN_PLACE = {("train", "seed")}
# The workflow's own key inside a run-configuration section: one training per seed listed (the first keeps
# the single-seed file names), for the cells `seed_cells` picks. Never part of a run configuration.
SEEDS = ("train", "seeds")
SINGLE = "single"  # results/models/single/...: the Multi-* members' folder, so no setting may take this name


def _unique(values: tuple) -> tuple:
    if len(set(values)) != len(values):
        raise ValueError(f"{list(values)} lists a value twice")
    return values


def _setting_name(name: str) -> str:
    if name == SINGLE:
        raise ValueError(f"this name is reserved for the Multi-* members' folder (results/models/{SINGLE}/); "
                         "rename the setting")
    return name


def _variant(name: str) -> str:
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)} (kml/variants.py)")
    return name


def _switch(name: str) -> str:
    if name not in SWITCHES:
        raise ValueError(f"unknown switch {name!r}; choose from {', '.join(SWITCHES)} (kml/variants.py)")
    return name


VariantName = Annotated[str, Strict(), AfterValidator(_variant)]
SettingName = Annotated[str, Strict(), Field(pattern=r"^[a-z0-9][a-z0-9_]*$"), AfterValidator(_setting_name)]
SwitchName = Annotated[str, Strict(), AfterValidator(_switch)]
JointMethodName = Literal[JOINT_METHOD_NAMES]
Minutes = PositiveInt


@dataclass(frozen=True, config=SECTION)
class TrainSeeds:
    """`train.seeds`: the seed of each training of a cell (the first keeps the single-seed file names)."""

    seeds: Annotated[tuple[Int, ...], Field(min_length=1), AfterValidator(_unique)] = (0,)


@dataclass(frozen=True, config=SECTION)
class DownloadConfig:
    # A base URL or local directory replacing every official origin ("{dataset}" is replaced by the name).
    mirror: Text | None = None
    # A sha256sum-format file replacing the published checksums ("{dataset}" as above).
    checksums: Text | None = None
    miniimagenet_variant: Literal["pickles", "images"] = "pickles"
    # Make the mirror's archives with `kml synth` first (tiny synthetic datasets: presets/smoke.yaml only).
    synthesize: Bool = False


@dataclass(frozen=True, config=SECTION)
class PrepareConfig:
    fc100_negative: Bool = False
    omniglot_train_classes: PositiveInt = 1100


@dataclass(frozen=True, config=SECTION)
class TransferenceRuns:
    setting: Annotated[str, Strict()] = "2mode_dagger"
    methods: Annotated[tuple[JointMethodName, ...], AfterValidator(_unique)] = ()
    # Training iterations whose snapshots are analysed; none turns the analysis off.
    checkpoints: Annotated[tuple[PositiveInt, ...], AfterValidator(_unique)] = ()


@dataclass(frozen=True, config=SECTION)
class CellSelection:
    """Some of the cells: each list a subset of `settings`, `methods` and `shots`; null means all of them."""

    settings: Annotated[tuple[Annotated[str, Strict()], ...], AfterValidator(_unique)] | None = None
    methods: Annotated[tuple[MethodName, ...], AfterValidator(_unique)] | None = None
    shots: Annotated[tuple[PositiveInt, ...], AfterValidator(_unique)] | None = None


@dataclass(frozen=True, config=SECTION)
class Ablations(CellSelection):
    """Each switch flipped alone to its released value (one ablation per switch; none: off), on the cells the
    selection picks."""

    switches: Annotated[tuple[SwitchName, ...], AfterValidator(_unique)] = ()


@dataclass(frozen=True, config=SECTION)
class ReportConfig:
    note: Annotated[str, Strict()] = ""


@dataclass(frozen=True, config=SECTION)
class Resources:
    threads: PositiveInt
    mem_mb: PositiveInt
    runtime: Minutes
    gpu: Annotated[int, Strict(), Field(ge=0)] = 0
    # Attempts after a failure; each resumes from the last checkpoint (training only).
    retries: Annotated[int, Strict(), Field(ge=0)] = 0


@dataclass(frozen=True, config=SECTION)
class ResourceGroups:
    download: Resources
    prepare: Resources
    train: Resources
    evaluate: Resources
    transference: Resources
    report: Resources


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class WorkflowKeys:
    """config.yaml's keys besides the run-configuration sections and their overrides."""

    settings: Annotated[dict[SettingName, Annotated[tuple[Mode, ...], Field(min_length=1),
                                                   AfterValidator(_unique)]], Field(min_length=1)]
    methods: Annotated[tuple[MethodName, ...], Field(min_length=1), AfterValidator(_unique)]
    shots: Annotated[tuple[PositiveInt, ...], Field(min_length=1), AfterValidator(_unique)]
    download: DownloadConfig
    prepare: PrepareConfig
    transference_runs: TransferenceRuns
    report: ReportConfig
    resources: ResourceGroups
    # Variants (kml/variants.py) built by `all` beside the default cells, and which of the cells they build.
    variants: Annotated[tuple[VariantName, ...], AfterValidator(_unique)] = ()
    variant_cells: CellSelection = CellSelection()
    # Ablations: each switch of kml/variants.py alone, on some cells, under results/ablations/{switch}/.
    ablations: Ablations = Ablations()
    # Which cells train every seed of `train.seeds` (the others its first only).
    seed_cells: CellSelection = CellSelection()


OVERRIDE_KINDS = ("family", "method", "multi_member")


class Sources:
    """Which configuration file a key's value came from, for error messages."""

    def __init__(self, files: Sequence[str | Path] = ()):
        """`files` in the order they were merged (config.yaml, then each --configfile overlay)."""
        self.files = [Path(f) for f in reversed(files)]  # the last merged decides a value
        self.contents = [_load(path) for path in self.files]

    def __call__(self, key: str) -> str:
        for path, values in zip(self.files, self.contents):
            if _has(values, key.split(".")):
                return f"{path.name}: {key}" if path.parent == Path.cwd() else f"{path}: {key}"
        return f"config: {key}" if self.files else key


def _load(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return None


def _has(values: Any, parts: list[str]) -> bool:
    for part in parts:
        if not isinstance(values, Mapping) or part not in values:
            return False
        values = values[part]
    return True


def validate_workflow_config(config: Mapping[str, Any], files: Sequence[str | Path] = ()) -> dict[str, Any]:
    """The workflow configuration with every value checked and the run sections completed by their defaults
    (plain values, as config.yaml holds them). `files`: the configuration files it was merged from, in the
    order they were merged (config.yaml, then the overlays), named in errors."""
    where = Sources(files)
    known = {*WorkflowKeys.__pydantic_fields__, *SECTIONS, "overrides"}
    unknown = sorted(set(config) - known)
    if unknown:
        raise ConfigError(f"{where(unknown[0])}: unknown key; known keys here: {', '.join(sorted(known))}")
    workflow = {key: value for key, value in config.items() if key in WorkflowKeys.__pydantic_fields__}
    adapter = TypeAdapter(WorkflowKeys)
    try:
        validated = adapter.dump_python(adapter.validate_python(workflow), mode="json")
    except ValidationError as error:
        raise ConfigError(describe_errors(error, WorkflowKeys, where)) from None
    # Copies: `train.seeds` is taken out of its section.
    sections = {name: dict(value) if isinstance(value := config.get(name), Mapping) else value
                for name in SECTIONS}
    validated["seeds"] = _seeds(sections[SEEDS[0]], where)
    for name in SECTIONS:
        validated[name] = _section(name, sections[name] or {}, name, where, shared=True)
    validated["overrides"] = _overrides(config.get("overrides") or {}, where)
    return validated


def _seeds(section: Any, where: Sources) -> list[int]:
    """`train.seeds`, taken out of its section (a run configuration has one `train.seed`)."""
    if not isinstance(section, dict) or SEEDS[1] not in section:
        return list(TrainSeeds().seeds)
    try:
        return list(TypeAdapter(TrainSeeds).validate_python({"seeds": section.pop(SEEDS[1])}).seeds)
    except ValidationError as error:
        named = describe_errors(error, TrainSeeds, lambda key: where(f"{SEEDS[0]}.{key}"))
        raise ConfigError(named) from None


def _section(name: str, values: Any, path: str, where: Sources, *, shared: bool) -> dict[str, Any]:
    """One run-configuration section (or an override of it) checked by its class: the shared sections
    completed by the defaults, an override only the keys it gives."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where(path)}: expected a mapping of {name} keys, got {values!r}")
    for key in values:
        if (name, key) == SEEDS:
            raise ConfigError(f"{where(f'{path}.{key}')}: the seeds are one list for every training; set "
                              f"{'.'.join(SEEDS)} in config.yaml's {name} section, and pick cells with "
                              "seed_cells")
        if (name, key) in DECIDED_BY_THE_WORKFLOW:
            raise ConfigError(f"{where(f'{path}.{key}')}: {DECIDED_BY_THE_WORKFLOW[name, key]}; "
                              "remove it here")
    cls = SECTIONS[name]
    try:
        section = TypeAdapter(cls).validate_python(dict(values))
    except ValidationError as error:
        raise ConfigError(describe_errors(error, cls, lambda key: where(f"{path}.{key}"))) from None
    complete = TypeAdapter(cls).dump_python(section, mode="json")
    if shared:
        return {key: value for key, value in complete.items()
                if (name, key) not in DECIDED_BY_THE_WORKFLOW or (name, key) in KEPT_IN_PLACE}
    return {key: complete[key] for key in values}


def _run_override(values: Any, path: str, where: Sources) -> dict[str, Any]:
    """Any subset of the run-configuration sections, merged over the shared values."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where(path)}: expected a mapping of run-configuration sections, got {values!r}")
    unknown = sorted(set(values) - set(SECTIONS))
    if unknown:
        raise ConfigError(f"{where(f'{path}.{unknown[0]}')}: unknown section; known sections: "
                          f"{', '.join(SECTIONS)}")
    return {name: _section(name, section or {}, f"{path}.{name}", where, shared=False)
            for name, section in values.items()}


def _overrides(values: Any, where: Sources) -> dict[str, Any]:
    _require_keys(values, "overrides", OVERRIDE_KINDS, where)
    choices = {"family": tuple(FAMILY_LABELS), "method": METHOD_NAMES}
    result: dict[str, Any] = {}
    for kind in ("family", "method"):
        layer = values.get(kind) or {}
        _require_keys(layer, f"overrides.{kind}", None, where, choices=choices[kind])
        result[kind] = {name: _run_override(override or {}, f"overrides.{kind}.{name}", where)
                        for name, override in layer.items()}
    members = values.get("multi_member") or {}
    _require_keys(members, "overrides.multi_member", None, where, choices=tuple(FAMILY_LABELS))
    result["multi_member"] = {}
    for family, by_mode in members.items():
        path = f"overrides.multi_member.{family}"
        _require_keys(by_mode or {}, path, None, where, choices=MODES)
        result["multi_member"][family] = {mode: _run_override(override or {}, f"{path}.{mode}", where)
                                          for mode, override in (by_mode or {}).items()}
    return result


def _require_keys(values: Any, path: str, known: Sequence[str] | None, where: Sources, *,
                  choices: Sequence[str] = ()) -> None:
    """`values` must be a mapping whose keys are among `known` (or `choices`)."""
    if not isinstance(values, Mapping):
        raise ConfigError(f"{where(path)}: expected a mapping, got {values!r}")
    allowed = tuple(known or choices)
    for key in values:
        if key not in allowed:
            raise ConfigError(f"{where(f'{path}.{key}')}: unknown key; known keys here: {', '.join(allowed)}")
