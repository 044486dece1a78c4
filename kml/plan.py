"""The workflow's plan: which jobs exist, where their files go and the run configuration of each.

Everything here is a pure function of the workflow configuration (`config.yaml`, after Snakemake merged any
`--configfile` overlay; validated by kml/workflow_config.py). The Snakefile only wires these answers to
rules, so the composition logic is unit-tested without Snakemake (tests/test_plan.py).

How a run configuration is composed (a `kml.config.RunConfig` as a plain dict):

1. the shared sections of config.yaml (`task`, `data`, `model`, `maml`, `protonet`, `optim`, `train`, `eval`,
   `transference`), then, deep-merged in this order, `overrides.family[<family>]`,
   `overrides.method[<method>]` and, for a Multi-* member only, `overrides.multi_member[<family>][<mode>]`;
2. what the workflow decides: `method`, `modes`, `setting`, `task.shots`, `data.files`, `train.seed` (one
   training per seed of `train.seeds` for the cells `seed_cells` picks, the first seed's under the plain
   name, the others' under layout.seeded names), and `train.extra_checkpoints` (the transference snapshots)
   for the models the transference analysis reads (every seed's);
3. only the keys that can change the job's result are kept (each key declares its readers in kml/config.py,
   `ReadBy`): a training never sees `eval` or `transference`, MAML runs never see `protonet`, unmodulated
   methods never see `model.kml_form`, and evaluation and transference (which rebuild each model from the
   configuration saved with it) see only the tasks, the image size, where to run and their own section; of
   `transference`, the analysis sees neither `sweep` nor the other family's `step_size`, the step-size sweep
   sees neither `lookahead`, `step_size`, `sources` nor `targets`.
   The dict is the job's Snakemake `params`, so editing one value in config.yaml reruns exactly the jobs
   whose result it can change (and what is built from them), and nothing else.

A variant (`variants:`, kml/variants.py) composes the same way with its switches merged last (and, for
`prepare.fc100_negative`, the negative FC100 file in `data.files`). A variant's training or cell whose
composed configuration equals the default's *is* the default job (same files, nothing trained twice); the
others live under results/variants/{variant}/. An ablation (`ablations:`) is the same with one switch: one
per switch listed, on the cells `ablations` selects, under results/ablations/{switch}/.

Every path a job reads or writes is named by kml/layout.py.
"""

from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kml import MODES, KmlError, layout
from kml.config import SECTIONS, ConfigError, read_values, run_config_from_dict
from kml.layout import processed_file
from kml.method_table import METHODS
from kml.variants import SWITCHES, Switch, variant_switches
from kml.workflow_config import SINGLE, validate_workflow_config


class PlanError(ConfigError):
    """The workflow configuration is valid key by key but asks for something impossible as a whole."""


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any] | None) -> dict[str, Any]:
    """A copy of `base` with `override` merged in: mappings recursively, every other value replaced."""
    merged = copy.deepcopy(dict(base))
    for key, value in (override or {}).items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def to_yaml(values: Mapping[str, Any]) -> str:
    """A run configuration as the one-line (flow style) YAML `kml train/evaluate/transference --config` reads.

    One line, so that the rule writing it from its params shows it in a single line of the job's command."""
    return yaml.safe_dump(dict(values), default_flow_style=True, width=float("inf"), sort_keys=False).strip()


def alternation(names: Iterable[str]) -> str:
    """A regular expression matching exactly the given names (for Snakemake wildcard constraints)."""
    names = sorted(set(names), key=lambda n: (-len(n), n))
    return "|".join(re.escape(n) for n in names) if names else "(?!)"


class _Job:
    """What every job's record shares: the run configuration it writes, and the prepared files it reads."""

    run_config: dict[str, Any]

    @property
    def data_files(self) -> list[str]:
        return list(self.run_config["data"]["files"].values())


@dataclass(frozen=True)
class Training(_Job):
    """One `kml train` run: a joint model of a setting, or a Multi-* member (one family, one mode)."""

    name: str  # "{setting}/{method}/{shots}shot" or "single/{family}/{mode}/{shots}shot"
    method: str
    modes: tuple[str, ...]
    shots: int
    run_config: dict[str, Any]
    snapshots: tuple[int, ...] = ()
    root: str = layout.RESULTS_DIR  # or a variant's or an ablation's folder

    @property
    def seed(self) -> int:
        return self.run_config["train"]["seed"]

    @property
    def directory(self) -> str:
        return layout.training_dir(self.name, self.root)

    @property
    def model(self) -> str:
        return f"{self.directory}/{layout.MODEL}"

    @property
    def snapshot_files(self) -> list[str]:
        return [layout.snapshot_file(self.name, n) for n in self.snapshots]


@dataclass(frozen=True)
class Cell(_Job):
    """One table cell: `kml evaluate` of one method in one setting at one shot count."""

    setting: str
    method: str
    shots: int
    run_config: dict[str, Any]
    # the joint model, or one member per mode of the setting; for each seed (seed by seed)
    trainings: tuple[Training, ...]
    root: str = layout.RESULTS_DIR  # or a variant's or an ablation's folder

    @property
    def name(self) -> str:
        return f"{self.setting}/{self.method}/{self.shots}shot"

    @property
    def csv(self) -> str:
        return layout.cell_csv(self.name, self.root)

    @property
    def models(self) -> list[str]:
        return [t.model for t in self.trainings]


@dataclass(frozen=True)
class TransferenceRun(_Job):
    """`kml transference` on the snapshots of one trained model: one CSV per snapshot; and, for the first
    seed's model, the step-size sweep on its last snapshot (`kml transference --sweep`, with
    sweep_run_config), which checks α once per method and shots."""

    name: str  # "{method}/{shots}shot", layout.seeded for a seed after the first
    method: str
    shots: int
    run_config: dict[str, Any]
    training: Training
    sweep_run_config: dict[str, Any]
    sweeps: bool = True

    @property
    def directory(self) -> str:
        return layout.transference_dir(self.name)

    @property
    def csvs(self) -> list[str]:
        return [f"{self.directory}/{layout.ratio_csv_name(n)}" for n in self.training.snapshots]

    @property
    def sweep_snapshot(self) -> str:
        return self.training.snapshot_files[-1]  # snapshots are sorted: the last is the latest

    @property
    def sweep_csv(self) -> str:
        last = self.training.snapshots[-1]
        return f"{layout.transference_dir(self.name, sweep=True)}/{layout.ratio_csv_name(last)}"


@dataclass(frozen=True)
class Variant:
    """A variant's (or an ablation's: `kind`) jobs: the trainings and cells its switches change (its own,
    under `root`), and every cell it covers (its own, or the default cell where the switches change
    nothing)."""

    name: str  # a variant's name, or an ablation's switch (its dotted key)
    switches: tuple[Switch, ...]
    kind: str = "variant"  # or "ablation"
    trainings: dict[str, Training] = field(default_factory=dict)
    cells: dict[str, Cell] = field(default_factory=dict)

    @property
    def root(self) -> str:
        return layout.ablation_dir(self.name) if self.kind == "ablation" else layout.variant_dir(self.name)

    @property
    def own_cells(self) -> list[Cell]:
        return [cell for cell in self.cells.values() if cell.root == self.root]

    def report_files(self) -> dict[str, str]:
        """A variant's own report (the ablations share one: Plan.report_files("ablations"))."""
        return layout.report_files("variant", self.root) if self.kind == "variant" else {}


class Plan:
    """Every job of the workflow for one configuration, built and checked once when the Snakefile loads."""

    def __init__(self, config: Mapping[str, Any], files: Sequence[str | Path] = ()):
        """`config`: the merged workflow configuration; `files`: the configuration files it was merged from,
        in that order, named in errors."""
        config = validate_workflow_config(config, files)
        self.config = config
        self.settings: dict[str, tuple[str, ...]] = {
            name: tuple(m for m in MODES if m in modes) for name, modes in config["settings"].items()
        }
        self.methods: tuple[str, ...] = tuple(config["methods"])
        self.shots: tuple[int, ...] = tuple(config["shots"])
        analysis = config["transference_runs"]
        self.transference_setting: str = analysis["setting"]
        self.transference_methods: tuple[str, ...] = tuple(analysis["methods"])
        self.transference_checkpoints: tuple[int, ...] = tuple(sorted(set(analysis["checkpoints"])))
        self._check_transference()
        self.seeds: tuple[int, ...] = tuple(config["seeds"])
        # Checked only when there are seeds to spread: a preset with fewer settings may leave it be.
        self._seeded = self._selection(config["seed_cells"], "seed_cells") if len(self.seeds) > 1 else None

        self.trainings: dict[str, Training] = {}
        self.cells: dict[str, Cell] = {}
        for setting, modes in self.settings.items():
            for method in self.methods:
                for shots in self.shots:
                    cell = self._cell(setting, modes, method, shots)
                    self.cells[cell.name] = cell
        self.transference: dict[str, TransferenceRun] = {}
        for method in self.transference_methods if self.transference_checkpoints else ():
            for shots in self.shots:
                self.transference.update((run.name, run) for run in self._transference_runs(method, shots))
        self.variant_cells: tuple[str, ...] = self._selected_cells(config["variant_cells"], "variant_cells")
        self.variants: dict[str, Variant] = {
            name: self._compose(Variant(name, variant_switches(name)), self.variant_cells)
            for name in config["variants"]}
        # Checked only when some switch is ablated: a preset with fewer settings may leave the selection be.
        self.ablation_cells: tuple[str, ...] = (
            self._selected_cells(config["ablations"], "ablations") if config["ablations"]["switches"] else ())
        self.ablations: dict[str, Variant] = {
            key: self._compose(Variant(key, (SWITCHES[key],), "ablation"), self.ablation_cells)
            for key in config["ablations"]["switches"]}

    def _compose(self, variant: Variant, cell_names: Sequence[str]) -> Variant:
        """`variant` with its cells among `cell_names` and the trainings they need."""
        for cell_name in cell_names:
            default = self.cells[cell_name]
            variant.cells[cell_name] = self._cell(default.setting, self.settings[default.setting],
                                                  default.method, default.shots, variant)
        return variant

    # ---- checks beyond the schema --------------------------------------------------------------------------
    def _check_transference(self) -> None:
        if not self.transference_checkpoints:
            return
        where = "transference_runs"
        if self.transference_setting not in self.settings:
            raise PlanError(f"{where}.setting: {self.transference_setting!r} is not one of the settings "
                            f"({', '.join(self.settings)})")
        for method in self.transference_methods:
            if method not in self.methods:
                raise PlanError(f"{where}.methods: {method!r} must be a jointly trained method listed in "
                                f"methods ({', '.join(m for m in self.methods if not METHODS[m].multi)})")
        modes = self.settings[self.transference_setting]
        for key in ("source_mode", "target_mode"):
            mode = self.config["transference"][key]
            if mode not in modes:
                raise PlanError(f"transference.{key}: {mode!r} is not a mode of setting "
                                f"{self.transference_setting} ({', '.join(modes)})")

    def _selected_cells(self, selection: Mapping[str, Any], where: str) -> tuple[str, ...]:
        """The names of the cells a selection (settings, methods, shots; None: all) picks, in plan order."""
        chosen = self._selection(selection, where)
        return tuple(name for name, cell in self.cells.items()
                     if _picks(chosen, cell.setting, cell.method, cell.shots))

    def _selection(self, selection: Mapping[str, Any], where: str) -> dict[str, tuple]:
        """A selection's settings, methods and shots, each checked against the workflow's (None: all)."""
        chosen = {}
        workflow = {"settings": tuple(self.settings), "methods": self.methods, "shots": self.shots}
        for key, known in workflow.items():
            picked = selection[key]
            if picked is None:
                chosen[key] = known
                continue
            unknown = [value for value in picked if value not in known]
            if unknown:
                raise PlanError(f"{where}.{key}: {unknown[0]!r} is not one of the workflow's {key} "
                                f"({', '.join(map(str, known))})")
            chosen[key] = tuple(picked)
        return chosen

    def cell_seeds(self, setting: str, method: str, shots: int) -> tuple[int, ...]:
        """The seeds a cell trains: every seed of `train.seeds` if `seed_cells` picks it, else the first."""
        return self.seeds if self._seeded and _picks(self._seeded, setting, method, shots) else self.seeds[:1]

    # ---- run configurations --------------------------------------------------------------------------------
    def _sections(self, method: str, member_mode: str | None = None,
                  switches: Sequence[Switch] = ()) -> dict[str, Any]:
        overrides = self.config["overrides"]
        family = METHODS[method].family
        sections = {name: dict(self.config[name]) for name in SECTIONS}
        layers = [overrides["family"].get(family), overrides["method"].get(method)]
        if member_mode is not None:
            layers.append(overrides["multi_member"].get(family, {}).get(member_mode))
        # A variant's switches last: they decide their keys whatever the overrides say.
        layers += [s.overlay() for s in switches if not s.data and s.applies(method)]
        for layer in layers:
            sections = deep_merge(sections, layer)
        return sections

    def _negative_fc100(self, method: str, switches: Sequence[Switch]) -> bool:
        """Whether a run reads the variant's colour-negative FC100 file instead of the workflow's own."""
        return (not self.config["prepare"]["fc100_negative"]
                and any(s.key == "prepare.fc100_negative" and s.applies(method) for s in switches))

    def _run_config(self, purpose: str, method: str, modes: tuple[str, ...], setting: str | None, shots: int,
                    sections: Mapping[str, Any], where: str, negative_fc100: bool = False) -> dict[str, Any]:
        sections = deep_merge(sections, {"task": {"shots": shots}})
        size = sections["model"]["image_size"]
        sections["data"]["files"] = {mode: processed_file(mode, size, mode == "fc100" and negative_fc100)
                                     for mode in modes}
        values: dict[str, Any] = {"method": method, "modes": list(modes)}
        if setting is not None:
            values["setting"] = setting
        # Only what the job reads: its Snakemake params, so a changed value reruns exactly the jobs it
        # affects.
        values = read_values({**values, **sections}, purpose)
        try:
            run_config_from_dict(values)
        except KmlError as error:
            raise PlanError(f"{where}: the composed run configuration is invalid: {error}") from None
        return values

    def _training(self, name: str, method: str, modes: tuple[str, ...], setting: str | None, shots: int,
                  seed: int, member_mode: str | None = None, variant: Variant | None = None) -> Training:
        """The training of one seed, by default or in a variant: the default's own where the variant's
        switches leave its configuration as it is. `name` is the first seed's."""
        name = self._seeded_name(name, seed)
        if variant is None and name in self.trainings:
            return self.trainings[name]
        if variant is not None and name in variant.trainings:
            return variant.trainings[name]
        snapshots = ()
        if (setting == self.transference_setting and method in self.transference_methods
                and self.transference_checkpoints):
            snapshots = self.transference_checkpoints
        switches = variant.switches if variant else ()
        sections = self._sections(method, member_mode, switches)
        sections["train"]["seed"] = seed  # in its place: the job's params read as with one seed
        negative_fc100 = self._negative_fc100(method, switches)
        if snapshots:
            iterations = sections["train"]["iterations"]
            if max(snapshots) > iterations:
                raise PlanError(f"transference_runs.checkpoints: {list(snapshots)} must not exceed the "
                                f"{iterations} training iterations of {name}; lower them or train longer")
        if variant is None:
            with_snapshots = deep_merge(sections, {"train": {"extra_checkpoints": list(snapshots)}})
            config = self._run_config("train", method, modes, setting, shots, with_snapshots,
                                      f"training {name}", negative_fc100)
            training = Training(name, method, modes, shots, config, snapshots)
            self.trainings[name] = training
            return training
        # The variant's own training publishes no snapshots: the transference analysis reads the default's.
        config = self._run_config("train", method, modes, setting, shots, sections,
                                  f"training {name} of {variant.kind} {variant.name}", negative_fc100)
        default = self.trainings[name]
        if config == _without_snapshots(default.run_config):
            return default
        training = Training(name, method, modes, shots, config, (), variant.root)
        variant.trainings[name] = training
        return training

    def _seeded_name(self, name: str, seed: int) -> str:
        """A training's or analysis's name for `seed`: the first seed's is the plain one."""
        return name if seed == self.seeds[0] else layout.seeded(name, seed)

    def _cell(self, setting: str, modes: tuple[str, ...], method: str, shots: int,
              variant: Variant | None = None) -> Cell:
        family = METHODS[method].family
        trainings: list[Training] = []
        for seed in self.cell_seeds(setting, method, shots):
            if METHODS[method].multi:
                trainings += [self._training(f"{SINGLE}/{family}/{mode}/{shots}shot", method, (mode,), None,
                                             shots, seed, mode, variant) for mode in modes]
            else:
                trainings.append(self._training(f"{setting}/{method}/{shots}shot", method, modes, setting,
                                                shots, seed, None, variant))
        name = f"{setting}/{method}/{shots}shot"
        switches = variant.switches if variant else ()
        config = self._run_config("evaluate", method, modes, setting, shots,
                                  self._sections(method, None, switches), f"cell {name}",
                                  self._negative_fc100(method, switches))
        if variant is None:
            return Cell(setting, method, shots, config, tuple(trainings))
        default = self.cells[name]
        if config == default.run_config and tuple(trainings) == default.trainings:
            return default
        return Cell(setting, method, shots, config, tuple(trainings), variant.root)

    def _transference_runs(self, method: str, shots: int) -> list[TransferenceRun]:
        """The analyses of one method and shots: one per seed's model (a joint training of the transference
        setting), all reading the same run configurations; the sweep on the first seed's."""
        setting = self.transference_setting
        configs = [self._run_config(purpose, method, self.settings[setting], setting, shots,
                                    self._sections(method), f"transference {method}/{shots}shot")
                   for purpose in ("transference", "sweep")]
        return [TransferenceRun(self._seeded_name(f"{method}/{shots}shot", training.seed), method, shots,
                                configs[0], training, configs[1], sweeps=training.seed == self.seeds[0])
                for training in self.cells[f"{setting}/{method}/{shots}shot"].trainings]

    # ---- lookups by wildcard -------------------------------------------------------------------------------
    def training(self, name: str) -> Training:
        return _lookup(self.trainings, name, "training",
                       "settings x methods x shots, and the Multi-* members")

    def cell(self, setting: str, method: str, shots: int | str) -> Cell:
        return _lookup(self.cells, f"{setting}/{method}/{int(shots)}shot", "cell",
                       "settings x methods x shots")

    def transference_run(self, name: str) -> TransferenceRun:
        """`name`: "{method}/{shots}shot", layout.seeded for a seed after the first."""
        return _lookup(self.transference, name, "transference run",
                       "transference_runs.methods x shots x the cells' seeds")

    def variant(self, name: str) -> Variant:
        return _lookup(self.variants, name, "variant", "variants")

    def ablation(self, switch: str) -> Variant:
        return _lookup(self.ablations, switch, "ablation", "ablations.switches")

    def composed(self, kind: str, name: str) -> Variant:
        """The variant `name` (kind "variant") or the ablation of switch `name` (kind "ablation")."""
        return self.variant(name) if kind == "variant" else self.ablation(name)

    def own_training(self, kind: str, name: str, run: str) -> Training:
        """A training of a variant or an ablation (`composed`) that its switches change."""
        return _lookup(self.composed(kind, name).trainings, run, f"training of {kind} {name}",
                       f"the {kind}'s trainings whose configuration its switches change")

    def own_cell(self, kind: str, name: str, setting: str, method: str, shots: int | str) -> Cell:
        """A cell of a variant or an ablation (`composed`) that its switches change."""
        cells = {cell.name: cell for cell in self.composed(kind, name).own_cells}
        selection = "variant_cells" if kind == "variant" else "ablations"
        return _lookup(cells, f"{setting}/{method}/{int(shots)}shot", f"cell of {kind} {name}",
                       f"{selection}, where the {kind}'s switches change the cell")

    # ---- data ---------------------------------------------------------------------------------------------
    @property
    def datasets(self) -> tuple[str, ...]:
        """Every mode some run reads, in canonical order."""
        used = {m for modes in self.settings.values() for m in modes}
        return tuple(m for m in MODES if m in used)

    @property
    def processed_files(self) -> list[str]:
        """Every prepared file a training reads, a variant's included."""
        files = {f for t in self._all_trainings() for f in t.data_files}
        return sorted(files)

    @property
    def negative_fc100_files(self) -> list[str]:
        """The colour-negative FC100 files of variants (rule prepare_fc100_negative)."""
        return [f for f in self.processed_files if layout.is_negative_file(f)]

    def _all_trainings(self) -> list[Training]:
        composed = [*self.variants.values(), *self.ablations.values()]
        return [*self.trainings.values(), *(t for v in composed for t in v.trainings.values())]

    @property
    def synthesize(self) -> bool:
        return bool(self.config["download"]["synthesize"])

    def download_args(self, dataset: str) -> str:
        """The options of `kml download DATASET --root data/raw` for this dataset, shell-quoted."""
        download = self.config["download"]
        args = []
        for option, value in (("--mirror", download["mirror"]), ("--checksums", download["checksums"])):
            if value:
                args += [option, str(value).format(dataset=dataset)]
        if dataset == "miniimagenet" and download["miniimagenet_variant"]:
            args += ["--variant", download["miniimagenet_variant"]]
        return shlex.join(args)

    def prepare_args(self, dataset: str, negative: bool = False) -> str:
        """The options of `kml prepare` that concern this dataset (so a change reprepares only it), quoted;
        `negative`: those of a variant's colour-negative FC100 file."""
        prepare = self.config["prepare"]
        args = []
        if dataset == "fc100" and (prepare["fc100_negative"] or negative):
            args.append("--fc100-negative")
        if dataset == "omniglot":
            args += ["--omniglot-train-classes", str(prepare["omniglot_train_classes"])]
        return shlex.join(args)

    # ---- targets ------------------------------------------------------------------------------------------
    @property
    def cell_csvs(self) -> list[str]:
        return [c.csv for c in self.cells.values()]

    @property
    def transference_csvs(self) -> list[str]:
        return [f for run in self.transference.values() for f in run.csvs]

    def report_files(self, report: str) -> dict[str, str]:
        """The files of `kml report {report}` (kml/layout.py, REPORTS) this configuration asks for."""
        if report == "variant":  # one per variant, in its own folder: Variant.report_files
            return {}
        if report == "ablations":
            return layout.report_files(report) if self.ablations else {}
        wanted = report in ("accuracy", "claims") or bool(self.transference)
        return layout.report_files(report) if wanted else {}

    @property
    def ablation_report_cells(self) -> list[str]:
        """What `kml report ablations` reads: every ablation's cells and the default cells they pair with."""
        files = [c.csv for a in self.ablations.values() for c in a.cells.values()]
        return list(dict.fromkeys([*files, *(self.cells[name].csv for name in self.ablation_cells)]))

    def ablation_report_args(self) -> str:
        """`kml report ablations`'s options: `--ablation SWITCH CELL` per ablation cell, then the defaults."""
        args = [arg for a in self.ablations.values() for cell in a.cells.values()
                for arg in ("--ablation", a.name, cell.csv)]
        return shlex.join([*args, "--default", *(self.cells[name].csv for name in self.ablation_cells)])

    @property
    def sweeping_runs(self) -> list[TransferenceRun]:
        return [run for run in self.transference.values() if run.sweeps]

    @property
    def step_size_sweep_csvs(self) -> list[str]:
        return [run.sweep_csv for run in self.sweeping_runs]

    def step_size_args(self) -> str:
        """`kml report step-size`'s --step-size options: the configured α of each analysed family, quoted."""
        sizes = {}
        for run in self.transference.values():
            sizes.update(run.run_config["transference"]["step_size"])  # each run holds its family's only
        return shlex.join([arg for family, size in sizes.items()
                           for arg in ("--step-size", f"{family}={size}")])

    def all_targets(self) -> list[str]:
        reports = [path for report in layout.REPORTS for path in self.report_files(report).values()]
        variants = [path for variant in [*self.variants.values(), *self.ablations.values()]
                    for path in [*(c.csv for c in variant.own_cells), *variant.report_files().values()]]
        return [*self.cell_csvs, *self.transference_csvs, *self.step_size_sweep_csvs, *reports, *variants]

    def gpu_trainings(self) -> list[Training]:
        """The trainings that run on a GPU when there is one (train.device "auto" or CUDA)."""
        return [t for t in self._all_trainings() if t.run_config["train"]["device"] != "cpu"]

    def job_counts(self) -> dict[str, int]:
        """Jobs per kind when nothing exists yet (the dry run of `all` reports the same numbers)."""
        joint = [t for t in self.trainings.values() if not t.name.startswith(f"{SINGLE}/")]
        negative = self.negative_fc100_files
        variants = {"prepare_fc100_negative": len(negative)} if self.variants or self.ablations else {}
        for kind, composed in (("variant", self.variants), ("ablation", self.ablations)):
            if composed:
                variants[f"train_{kind}"] = sum(len(v.trainings) for v in composed.values())
                variants[f"evaluate_{kind}"] = sum(len(v.own_cells) for v in composed.values())
        if self.variants:
            variants["report_variant"] = len(self.variants)
        if self.ablations:
            variants["report_ablations"] = 1
        return {
            "synth": len(self.datasets) if self.synthesize else 0,
            "download": len(self.datasets),
            "prepare": len(self.processed_files) - len(negative),
            "train_joint": len(joint),
            "train_member": len(self.trainings) - len(joint),
            "train_with_snapshots": sum(1 for t in self.trainings.values() if t.snapshots),
            "evaluate": len(self.cells),
            "transference": len(self.transference),
            "transference_sweep": len(self.sweeping_runs),
            **variants,
        }


def _without_snapshots(run_config: Mapping[str, Any]) -> dict[str, Any]:
    """A training's run configuration without `train.extra_checkpoints` (which only the default's have)."""
    train = {key: value for key, value in run_config["train"].items() if key != "extra_checkpoints"}
    return {**run_config, "train": train}


def _picks(chosen: Mapping[str, tuple], setting: str, method: str, shots: int) -> bool:
    """Whether a selection (`Plan._selection`) picks the cell (setting, method, shots)."""
    return setting in chosen["settings"] and method in chosen["methods"] and shots in chosen["shots"]


def _lookup(jobs: Mapping[str, Any], name: str, kind: str, made_of: str) -> Any:
    if name not in jobs:
        raise PlanError(f"no {kind} {name!r} in this configuration ({made_of} of config.yaml and any preset)")
    return jobs[name]
