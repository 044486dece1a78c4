"""kml/plan.py: which jobs the workflow runs and the run configuration of each (no Snakemake needed)."""

from __future__ import annotations

import copy
import re
from pathlib import Path

import pytest
import yaml
from snakemake.utils import update_config

from kml import MODES
from kml.config import ConfigError, run_config_from_dict
from kml.method_table import METHODS
from kml.plan import SINGLE, Cell, Plan, deep_merge, to_yaml

REPO = Path(__file__).resolve().parents[1]
SETTINGS = {
    "2mode_dagger": ("miniimagenet", "fc100"),
    "2mode": ("omniglot", "miniimagenet"),
    "3mode": ("omniglot", "miniimagenet", "fc100"),
    "5mode": MODES,
}
JOINT_METHODS = ("maml", "mmaml", "mmaml_kml", "protonet", "mprotonet", "mprotonet_kml")


def workflow_config(*overlays: dict | str) -> dict:
    """config.yaml with presets (file names under presets/) or dicts merged on top, as Snakemake merges
    --configfile overlays (the Plan validates it)."""
    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for overlay in overlays:
        if isinstance(overlay, str):
            overlay = yaml.safe_load((REPO / "presets" / overlay).read_text())
        update_config(config, copy.deepcopy(overlay))
    return config


@pytest.fixture(scope="module")
def paper() -> Plan:
    return Plan(workflow_config())


def test_the_paper_has_48_joint_trainings_20_members_64_cells_and_12_transference_runs(paper):
    joint = {n for n in paper.trainings if not n.startswith(f"{SINGLE}/")}
    members = set(paper.trainings) - joint
    assert joint == {f"{s}/{m}/{k}shot" for s in SETTINGS for m in JOINT_METHODS for k in (1, 5)}
    assert members == {f"{SINGLE}/{f}/{mode}/{k}shot" for f in ("maml", "protonet") for mode in MODES
                       for k in (1, 5)}
    assert len(joint) == 48 and len(members) == 20
    assert len(paper.cells) == 64
    assert {(c.setting, c.method, c.shots) for c in paper.cells.values()} == {
        (s, m, k) for s in SETTINGS for m in paper.methods for k in (1, 5)}
    assert set(paper.transference) == {f"{m}/{k}shot" for m in JOINT_METHODS for k in (1, 5)}
    assert paper.job_counts() == {"synth": 0, "download": 5, "prepare": 5, "train_joint": 48,
                                  "train_member": 20, "train_with_snapshots": 12, "evaluate": 64,
                                  "transference": 12, "transference_sweep": 12}


def test_settings_modes_and_cells_use_the_canonical_mode_order(paper):
    assert paper.settings == SETTINGS
    for cell in paper.cells.values():
        assert tuple(cell.run_config["modes"]) == SETTINGS[cell.setting]
        assert cell.run_config["setting"] == cell.setting and cell.run_config["task"]["shots"] == cell.shots


def test_joint_cells_use_their_own_setting_model(paper):
    cell = paper.cell("2mode", "mmaml_kml", 5)
    assert cell.csv == "results/eval/2mode/mmaml_kml/5shot.csv"
    assert cell.models == ["results/models/2mode/mmaml_kml/5shot/model.pt"]
    assert cell.trainings[0].run_config["modes"] == ["omniglot", "miniimagenet"]


def test_multi_cells_take_one_member_per_mode_shared_between_settings(paper):
    for family in ("maml", "protonet"):
        for shots in (1, 5):
            cells = {s: paper.cell(s, f"multi_{family}", shots) for s in SETTINGS}
            for setting, cell in cells.items():
                assert [t.modes for t in cell.trainings] == [(m,) for m in SETTINGS[setting]]
                assert cell.models == [f"results/models/{SINGLE}/{family}/{m}/{shots}shot/model.pt"
                                       for m in SETTINGS[setting]]
            # the very same member object (one training job) wherever its mode occurs
            omniglot = {id(t) for c in cells.values() for t in c.trainings if t.modes == ("omniglot",)}
            assert len(omniglot) == 1
            member = paper.training(f"{SINGLE}/{family}/fc100/{shots}shot")
            assert (member.run_config["method"] == f"multi_{family}"
                    and member.run_config["modes"] == ["fc100"])
            assert "setting" not in member.run_config


def test_multi_maml_members_use_the_mmaml_readme_per_mode_hyperparameters(paper):
    for shots in (1, 5):
        omniglot = paper.training(f"{SINGLE}/maml/omniglot/{shots}shot").run_config
        assert (omniglot["maml"]["inner_steps"], omniglot["maml"]["inner_lr"]) == (1, 0.4)
        assert (omniglot["train"]["meta_batch_size"], omniglot["train"]["iterations"]) == (10, 60000)
        for mode in MODES[1:]:
            other = paper.training(f"{SINGLE}/maml/{mode}/{shots}shot").run_config
            assert (other["maml"]["inner_steps"], other["maml"]["inner_lr"]) == (5, 0.01)
            assert (other["train"]["meta_batch_size"], other["train"]["iterations"]) == (4, 80000)


def test_joint_runs_and_multi_protonet_members_use_their_familys_hyperparameters(paper):
    maml = paper.training("3mode/mmaml/1shot").run_config
    assert ((maml["maml"]["inner_steps"], maml["maml"]["inner_lr"], maml["maml"]["grad_clamp"])
            == (5, 0.05, 20.0))
    assert (maml["train"]["iterations"], maml["train"]["meta_batch_size"]) == (60000, 10)
    assert maml["optim"]["lr_decay_every"] is None and "protonet" not in maml
    protonet = paper.training("3mode/mprotonet_kml/5shot").run_config
    assert (protonet["train"]["iterations"], protonet["optim"]["lr_decay_every"]) == (30000, 10000)
    assert protonet["optim"]["lr_decay_factor"] == 0.5 and "maml" not in protonet
    member = paper.training(f"{SINGLE}/protonet/cub/5shot").run_config
    joint = paper.training("5mode/protonet/5shot").run_config
    for section in ("task", "model", "protonet", "optim"):
        assert member[section] == joint[section]
    assert member["train"] == joint["train"]


def test_only_the_transference_models_publish_snapshots(paper):
    with_snapshots = {n for n, t in paper.trainings.items() if t.snapshots}
    assert with_snapshots == {f"2mode_dagger/{m}/{k}shot" for m in JOINT_METHODS for k in (1, 5)}
    training = paper.training("2mode_dagger/mprotonet/1shot")
    assert training.run_config["train"]["extra_checkpoints"] == [5000, 10000, 15000, 20000]
    assert training.snapshot_files[0] == "results/models/2mode_dagger/mprotonet/1shot/snapshots/iter005000.pt"
    run = paper.transference_run("mprotonet/1shot")
    assert run.training is training
    assert run.csvs == [f"results/transference/mprotonet/1shot/iter{n}.csv"
                        for n in (5000, 10000, 15000, 20000)]


@pytest.mark.parametrize("preset", [None, "smoke.yaml", "cpu.yaml"])
def test_every_composed_run_config_is_a_valid_run_config_with_only_its_sections(preset):
    plan = Plan(workflow_config(*([preset] if preset else [])))
    for training in plan.trainings.values():
        config = run_config_from_dict(training.run_config)
        assert not {"eval", "transference"} & training.run_config.keys()
        assert set(config.data.files) == set(config.modes)
        assert config.train.extra_checkpoints == training.snapshots
        assert all(n <= config.train.iterations for n in training.snapshots)
    for job in [*plan.cells.values(), *plan.transference.values()]:
        config = run_config_from_dict(job.run_config)
        own = "eval" if isinstance(job, Cell) else "transference"
        # evaluation and transference rebuild each model from the configuration saved with it
        assert set(job.run_config) <= {"method", "modes", "setting", "task", "data", "model", "train", own}
        assert own in job.run_config
        assert set(job.run_config["train"]) == {"device"} and set(job.run_config["model"]) == {"image_size"}
        trained = [run_config_from_dict(t.run_config) for t in
                   (job.trainings if isinstance(job, Cell) else (job.training,))]
        assert all(t.model.image_size == config.model.image_size and t.task == config.task for t in trained)
        if isinstance(job, Cell):
            seeds = {t.train.seed for t in trained}
            assert seeds == set(plan.cell_seeds(config.setting, job.method, config.task.shots))
        first = [t for t in trained if t.train.seed == plan.seeds[0]]
        assert config.modes == tuple(m for t in first for m in t.modes) or not METHODS[job.method].multi
    for run in plan.transference.values():
        assert run.run_config["modes"] == run.training.run_config["modes"]
        # each job sees its own part of the transference section: the analysis its family's step size
        family = "protonet" if "protonet" in run.method else "maml"
        assert set(run.run_config["transference"]["step_size"]) == {family}
        assert "sweep" not in run.run_config["transference"]
        sweep = run.sweep_run_config["transference"]
        assert "sweep" in sweep and not {"lookahead", "step_size", "sources", "targets"} & set(sweep)
        run_config_from_dict(run.sweep_run_config)
        outside = [{k: v for k, v in values.items() if k != "transference"}
                   for values in (run.run_config, run.sweep_run_config)]
        assert outside[0] == outside[1]
        assert run.sweep_snapshot == run.training.snapshot_files[-1]
        assert run.sweep_csv.endswith(f"/step_size_sweep/iter{max(run.training.snapshots)}.csv")


def test_smoke_preset_is_small_offline_and_complete():
    plan = Plan(workflow_config("smoke.yaml"))
    # the paper's 68 trainings and 12 analyses, and a second seed of two cells: 3 trainings, 1 analysis
    assert len(plan.cells) == 64 and len(plan.trainings) == 68 + 3 and len(plan.transference) == 12 + 1
    assert plan.synthesize and plan.download_args("cub") == (
        "--mirror data/synth/cub --checksums data/synth/cub/SHA256SUMS")
    for training in plan.trainings.values():
        assert training.run_config["train"]["iterations"] <= 10
        assert training.run_config["model"]["image_size"] <= 28
    assert all(c.run_config["eval"]["tasks_per_mode"] <= 20 for c in plan.cells.values())
    assert "plumbing" in plan.config["report"]["note"]


def affected(before: Plan, after: Plan) -> dict[str, set[str]]:
    """The jobs whose params differ between two plans of the same job set."""
    changed = {}
    for kind in ("trainings", "cells", "transference"):
        old, new = getattr(before, kind), getattr(after, kind)
        assert old.keys() == new.keys()
        changed[kind] = {name for name in old if old[name].run_config != new[name].run_config}
    changed["sweeps"] = {name for name, run in before.transference.items()
                         if run.sweep_run_config != after.transference[name].sweep_run_config}
    changed["prepare"] = {d for d in before.datasets if before.prepare_args(d) != after.prepare_args(d)}
    changed["download"] = {d for d in before.datasets if before.download_args(d) != after.download_args(d)}
    return changed


MAML_JOINT = {f"{s}/{m}/{k}shot" for s in SETTINGS for m in ("maml", "mmaml", "mmaml_kml") for k in (1, 5)}
ALL_CELLS = {f"{s}/{m}/{k}shot" for s in SETTINGS for m in (*JOINT_METHODS, "multi_maml", "multi_protonet")
             for k in (1, 5)}
ALL_TRAININGS = {f"{s}/{m}/{k}shot" for s in SETTINGS for m in JOINT_METHODS for k in (1, 5)} | {
    f"{SINGLE}/{f}/{mode}/{k}shot" for f in ("maml", "protonet") for mode in MODES for k in (1, 5)}
ALL_TRANSFERENCE = {f"{m}/{k}shot" for m in JOINT_METHODS for k in (1, 5)}
KML_JOINT = {f"{s}/{m}/{k}shot" for s in SETTINGS for m in ("mmaml_kml", "mprotonet_kml") for k in (1, 5)}


@pytest.mark.parametrize(("overlay", "trainings", "cells", "transference", "sweeps", "prepare"), [
    # the shared MAML inner lr: joint MAML-family trainings only (the Multi-MAML members set their own);
    # their cells and transference runs follow through the model files, not through their own params
    ({"maml": {"inner_lr": 0.1}}, MAML_JOINT, set(), set(), set(), set()),
    # the KML kernel form: the two KML methods only
    ({"model": {"kml_form": "released"}}, KML_JOINT, set(), set(), set(), set()),
    # the image size: every job, and the prepared files they read (new names: data/processed/*-64.h5)
    ({"model": {"image_size": 64}}, ALL_TRAININGS, ALL_CELLS, ALL_TRANSFERENCE, ALL_TRANSFERENCE, set()),
    # one Multi-MAML member's inner lr: that member at both shots; the cells follow through its model file
    ({"overrides": {"multi_member": {"maml": {"fc100": {"maml": {"inner_lr": 0.02}}}}}},
     {f"{SINGLE}/maml/fc100/1shot", f"{SINGLE}/maml/fc100/5shot"}, set(), set(), set(), set()),
    # evaluation tasks: every cell, no training
    ({"eval": {"tasks_per_mode": 600}}, set(), ALL_CELLS, set(), set(), set()),
    # the transference analysis's sources: its runs only, not the step-size sweeps
    ({"transference": {"sources": 100}}, set(), set(), ALL_TRANSFERENCE, set(), set()),
    # one family's step size: that family's analyses only
    ({"transference": {"step_size": {"maml": 0.5}}}, set(), set(),
     {f"{m}/{k}shot" for m in ("maml", "mmaml", "mmaml_kml") for k in (1, 5)}, set(), set()),
    # the sweep's grid: the sweeps only
    ({"transference": {"sweep": {"step_sizes": [0.1, 1.0]}}}, set(), set(), set(), ALL_TRANSFERENCE, set()),
    # what both read
    ({"transference": {"neutral_band": 0.02}}, set(), set(), ALL_TRANSFERENCE, ALL_TRANSFERENCE, set()),
    # which snapshots: the 12 models that publish them (the analysis gets new snapshot and CSV files)
    ({"transference_runs": {"checkpoints": [1000, 2000]}},
     {f"2mode_dagger/{m}/{k}shot" for m in JOINT_METHODS for k in (1, 5)}, set(), set(), set(), set()),
    # a data option: that dataset's preparation only
    ({"prepare": {"fc100_negative": True}}, set(), set(), set(), set(), {"fc100"}),
    # the ProtoNet family's schedule: its joint runs and the Multi-ProtoNet members
    ({"overrides": {"family": {"protonet": {"train": {"iterations": 20000}}}}},
     {f"{s}/{m}/{k}shot" for s in SETTINGS for m in ("protonet", "mprotonet", "mprotonet_kml")
      for k in (1, 5)}
     | {f"{SINGLE}/protonet/{mode}/{k}shot" for mode in MODES for k in (1, 5)}, set(), set(), set(), set()),
])
def test_changing_one_value_changes_the_params_of_exactly_the_jobs_it_affects(
        paper, overlay, trainings, cells, transference, sweeps, prepare):
    changed = affected(paper, Plan(workflow_config(overlay)))
    assert changed == {"trainings": trainings, "cells": cells, "transference": transference, "sweeps": sweeps,
                       "prepare": prepare, "download": set()}


def test_report_and_scheduling_settings_change_no_jobs_params(paper):
    overlay = {"report": {"note": "x"}, "resources": {"train": {"threads": 2, "gpu": 0}}}
    assert not any(affected(paper, Plan(workflow_config(overlay))).values())


@pytest.mark.parametrize(("overlay", "message"), [
    ({"transference_runs": {"checkpoints": [5000, 40000]}},
     r"checkpoints: \[5000, 40000\] must not exceed the 30000 training iterations of 2mode_dagger/protonet"),
    ({"settings": {SINGLE: ["fc100"]}}, "settings.single: this name is reserved"),
    ({"transference_runs": {"setting": "4mode"}}, "transference_runs.setting: '4mode' is not one of"),
    ({"methods": ["maml", "multi_maml"]},
     r"transference_runs.methods: 'mmaml' must be a jointly trained method"),
    ({"transference": {"target_mode": "cub"}}, "transference.target_mode: 'cub' is not a mode of setting"),
    ({"train": {"seeds": [0, 1]}, "seed_cells": {"settings": ["4mode"]}},
     "seed_cells.settings: '4mode' is not one of the workflow's settings"),
])
def test_impossible_requests_are_rejected_naming_the_key(overlay, message):
    with pytest.raises(ConfigError, match=message):
        Plan(workflow_config(overlay))


@pytest.mark.parametrize(("overlay", "named"), [
    ({"train": {"iteratons": 5}}, "train.iteratons: unknown key; known keys here: amp_bf16, channels_last"),
    ({"tranference": {}}, "tranference: unknown key"),
    ({"maml": {"inner_lr": "fast"}}, "maml.inner_lr: expected a number, got 'fast'"),
    ({"eval": {"tasks_per_mode": 0}}, "eval.tasks_per_mode: must be greater than or equal to 1 (got 0)"),
    ({"optim": {"lr": -1e-3}}, "optim.lr: must be greater than 0 (got -0.001)"),
    ({"optim": {"lr": 1e39}}, "optim.lr: must be a finite number within the float32 range"),
    ({"overrides": {"method": {"mmaml_kmll": {}}}}, "overrides.method.mmaml_kmll: unknown key"),
    ({"overrides": {"family": {"protonet": {"optim": {"lr_decay_evry": 5}}}}},
     "overrides.family.protonet.optim.lr_decay_evry: unknown key"),
    ({"settings": {"2mode": ["omniglot", "imagenet"]}}, "settings.2mode: unknown mode 'imagenet'"),
    ({"shots": [1, "5"]}, "shots: expected an integer, got '5'"),
    ({"model": {"kml_form": "J+M"}}, "model.kml_form: 'J+M' is not one of 'residual' or 'released'"),
    ({"task": {"shots": 5}}, "task.shots: set by the workflow from `shots:`; remove it here"),
    ({"transference": {"step_size": {"protonett": 0.1}}}, "transference.step_size.protonett: unknown key"),
    ({"transference": {"step_size": {"maml": 0}}},
     "transference.step_size.maml: must be greater than 0 (got 0)"),
    ({"transference": {"sweep": {"step_size": [0.1]}}}, "transference.sweep.step_size: unknown key"),
    ({"transference": {"sgd_lr": 0.001}}, "transference.sgd_lr: unknown key"),
    ({"train": {"seed": 3}}, "train.seed: set by the workflow from `train.seeds`; remove it here"),
    ({"train": {"seeds": [0, 0]}}, "train.seeds: [0, 0] lists a value twice"),
    ({"train": {"seeds": []}}, "train.seeds: give at least 1"),
    ({"train": {"seeds": [0, "1"]}}, "train.seeds: expected an integer, got '1'"),
    ({"overrides": {"family": {"maml": {"train": {"seeds": [0, 1]}}}}},
     "overrides.family.maml.train.seeds: the seeds are one list for every training"),
    ({"train": {"seeds": [0, 1]}, "seed_cells": {"methods": ["mmaml_kmll"]}},
     "seed_cells.methods: unknown method 'mmaml_kmll'"),
])
def test_bad_values_are_rejected_naming_the_key_and_the_value(overlay, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        Plan(workflow_config(overlay))


def test_a_bad_value_is_traced_to_the_configuration_file_it_came_from(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "preset.yaml").write_text("optim:\n  lr: 0\n")
    config = workflow_config({"optim": {"lr": 0}})
    with pytest.raises(ConfigError, match=re.escape("preset.yaml: optim.lr: must be greater than 0 (got 0)")):
        Plan(config, [REPO / "config.yaml", tmp_path / "preset.yaml"])


def test_yaml_numbers_without_a_dot_are_read_as_numbers():
    """PyYAML reads 1e-3 as text (YAML 1.1); the workflow, like `kml train --config`, takes it as the
    number."""
    config = workflow_config()
    config["optim"]["lr"] = "1e-3"
    assert Plan(config).training("2mode/maml/1shot").run_config["optim"]["lr"] == 0.001


def test_an_empty_checkpoint_list_turns_the_transference_analysis_off():
    plan = Plan(workflow_config({"transference_runs": {"checkpoints": []}}))
    assert (not plan.transference and not plan.report_files("transference")
            and not plan.report_files("step_size"))
    assert not any(t.snapshots for t in plan.trainings.values())
    assert all("transference" not in target for target in plan.all_targets())


def test_deep_merge_copies_and_leaves_its_inputs_alone():
    base = {"a": {"b": 1, "c": [1]}, "d": 2}
    override = {"a": {"b": 3}, "e": {"f": 4}}
    merged = deep_merge(base, override)
    assert merged == {"a": {"b": 3, "c": [1]}, "d": 2, "e": {"f": 4}}
    merged["a"]["c"].append(2)
    merged["e"]["f"] = 5
    assert base == {"a": {"b": 1, "c": [1]}, "d": 2} and override == {"a": {"b": 3}, "e": {"f": 4}}


def test_paper_targets_are_the_documented_paths(paper):
    targets = paper.all_targets()
    assert len(set(targets)) == len(targets)
    assert "results/eval/2mode_dagger/multi_protonet/1shot.csv" in targets
    for path in ("results/summary.csv", "results/per_mode.csv", "results/tables/maml_family.tex",
                 "results/tables/protonet_family.tex", "results/tables/reproduction.tex",
                 "results/figures/reproduction.pdf", "results/figures/reproduction.png",
                 "results/claims.csv", "results/tables/claims.tex", "results/figures/claims.pdf",
                 "results/figures/claims.png",
                 "results/transference/summary.csv", "results/tables/transference.tex",
                 "results/transference/claims.csv", "results/tables/transference_claims.tex",
                 "results/figures/transference_single_target.png",
                 "results/figures/transference_per_target.pdf",
                 "results/transference/step_size_sweep.csv", "results/figures/transference_step_size.png",
                 "results/transference/mmaml_kml/5shot/step_size_sweep/iter20000.csv",
                 "results/transference/mmaml_kml/5shot/iter20000.csv"):
        assert path in targets
    assert paper.processed_files == [f"data/processed/{m}-84.h5" for m in sorted(MODES)]
    assert paper.prepare_args("omniglot") == "--omniglot-train-classes 1100"
    assert paper.download_args("miniimagenet") == "--variant pickles" and paper.download_args("cub") == ""


def test_config_yaml_writes_down_every_run_config_default():
    """Every RunConfig key the workflow does not set itself is given in config.yaml with its value in
    kml/config.py, so the paper preset's values are visible there and cannot drift from the code's."""
    from pydantic import TypeAdapter

    from kml.config import SECTIONS
    from kml.workflow_config import DECIDED_BY_THE_WORKFLOW, SEEDS, TrainSeeds

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    for name, cls in SECTIONS.items():
        defaults = TypeAdapter(cls).dump_python(cls(), mode="json")
        for section, key in DECIDED_BY_THE_WORKFLOW:
            if section == name:
                del defaults[key]
        if name == SEEDS[0]:  # the workflow's own key in the section, with its default
            defaults[SEEDS[1]] = list(TrainSeeds().seeds)
        assert config[name] == defaults, name


def reversed_mappings(value):
    """The same configuration with every mapping's keys in reverse order."""
    if isinstance(value, dict):
        return {key: reversed_mappings(value[key]) for key in reversed(list(value))}
    return value


def test_the_order_of_keys_in_config_yaml_changes_no_job(paper):
    """A job's params are its run configuration as one line of YAML: reordering config.yaml must rerun
    nothing."""
    shuffled = Plan(reversed_mappings(workflow_config()))
    for jobs, again in ((paper.trainings, shuffled.trainings), (paper.cells, shuffled.cells),
                        (paper.transference, shuffled.transference)):
        assert jobs.keys() == again.keys()
        for name, job in jobs.items():
            assert to_yaml(job.run_config) == to_yaml(again[name].run_config), name


# ---- training seeds ----------------------------------------------------------------------------------------

def test_two_seeds_double_exactly_the_trainings_and_keep_the_first_seeds_jobs(paper):
    seeded = Plan(workflow_config({"train": {"seeds": [0, 7]}}))
    assert set(seeded.trainings) == set(paper.trainings) | {f"{name}-seed7" for name in paper.trainings}
    for name, training in paper.trainings.items():
        assert seeded.trainings[name].run_config == training.run_config  # nothing already trained reruns
        second = seeded.trainings[f"{name}-seed7"]
        assert second.directory == f"results/models/{name}-seed7"
        assert second.snapshots == training.snapshots  # the transference models' snapshots, every seed's
        differs = {section for section, values in second.run_config.items()
                   if values != training.run_config[section]}
        assert differs == {"train"} and second.run_config["train"] == {**training.run_config["train"],
                                                                       "seed": 7}
    counts, before = seeded.job_counts(), paper.job_counts()
    for kind in ("train_joint", "train_member", "train_with_snapshots", "transference"):
        assert counts[kind] == 2 * before[kind], kind
    for kind in ("evaluate", "transference_sweep", "prepare", "download"):
        assert counts[kind] == before[kind], kind
    cell = seeded.cell("3mode", "multi_maml", 5)
    assert cell.run_config == paper.cell("3mode", "multi_maml", 5).run_config
    assert [(t.name, t.seed) for t in cell.trainings] == [
        *((f"{SINGLE}/maml/{mode}/5shot", 0) for mode in ("omniglot", "miniimagenet", "fc100")),
        *((f"{SINGLE}/maml/{mode}/5shot-seed7", 7) for mode in ("omniglot", "miniimagenet", "fc100"))]
    run = seeded.transference_run("mmaml_kml/1shot-seed7")
    assert run.training is seeded.training("2mode_dagger/mmaml_kml/1shot-seed7") and not run.sweeps
    assert run.run_config == seeded.transference_run("mmaml_kml/1shot").run_config
    assert run.directory == "results/transference/mmaml_kml/1shot-seed7"


def test_seed_cells_spread_the_seeds_over_the_cells_they_pick_only(paper):
    seeded = Plan(workflow_config({"train": {"seeds": [0, 1, 2]}, "seed_cells": {
        "settings": ["2mode_dagger"], "methods": ["mmaml_kml", "multi_maml"], "shots": [1]}}))
    added = set(seeded.trainings) - set(paper.trainings)
    assert added == {f"{name}-seed{s}" for s in (1, 2) for name in (
        "2mode_dagger/mmaml_kml/1shot", f"{SINGLE}/maml/miniimagenet/1shot", f"{SINGLE}/maml/fc100/1shot")}
    assert len(seeded.cell("2mode_dagger", "mmaml_kml", 1).trainings) == 3
    assert len(seeded.cell("2mode", "multi_maml", 1).trainings) == 2  # its members, the first seed only
    assert set(seeded.transference) - set(paper.transference) == {"mmaml_kml/1shot-seed1",
                                                                   "mmaml_kml/1shot-seed2"}


def test_a_variant_trains_the_seeds_of_its_cells():
    overlay = {"train": {"seeds": [0, 1]}, "variants": ["released"],
               "variant_cells": {"settings": ["2mode"], "methods": ["mmaml_kml"], "shots": [1]}}
    variant = Plan(workflow_config(overlay)).variant("released")
    assert set(variant.trainings) == {"2mode/mmaml_kml/1shot", "2mode/mmaml_kml/1shot-seed1"}
    assert [t.seed for t in variant.cells["2mode/mmaml_kml/1shot"].trainings] == [0, 1]
