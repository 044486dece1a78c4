"""Variants (kml/variants.py): the released code's switches, the jobs a variant adds to the plan, and its
report (no Snakemake needed; the workflow's dry run of a variant is in tests/test_workflow.py)."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from test_plan import workflow_config
from test_report import one_shot_cell as cell

from kml.cli import main
from kml.config import ConfigError, run_config_from_dict
from kml.method_table import METHODS
from kml.plan import SINGLE, Plan
from kml.report.variant import VARIANT_COLUMNS, summarize_variant
from kml.variants import NOT_REPRODUCED, SWITCHES, VARIANTS, variant_switches
from kml.workflow_config import PrepareConfig

RELEASED = {"variants": ["released"]}


@pytest.fixture(scope="module")
def paper() -> Plan:
    return Plan(workflow_config())


@pytest.fixture(scope="module")
def released() -> Plan:
    return Plan(workflow_config(RELEASED))


def changed_by_released(training) -> bool:
    """Whether the released switches change a default training, by the rules of docs/specification.md §9:
    FC100 colours every run on FC100, the transductive step and the query embedding the ProtoNet family
    (plain ProtoNet reads the former), the kernel form the KML methods."""
    method = METHODS[training.method]
    return "fc100" in training.modes or method.family == "protonet" or method.modulation == "kml"


def test_the_switches_are_declared_once_with_valid_released_values():
    assert set(SWITCHES) == {"model.kml_form", "model.query_embedding", "protonet.transductive",
                             "prepare.fc100_negative"}
    assert VARIANTS["released"] == tuple(SWITCHES)
    assert SWITCHES["model.kml_form"].methods == ("mmaml_kml", "mprotonet_kml")
    for key in ("model.query_embedding", "protonet.transductive"):
        assert SWITCHES[key].methods == ("protonet", "multi_protonet", "mprotonet", "mprotonet_kml")
    assert SWITCHES["prepare.fc100_negative"].methods == tuple(METHODS)
    for switch in SWITCHES.values():
        assert switch.source and switch.spec.startswith("§")
        if switch.data:
            PrepareConfig(**{switch.name: switch.released})
        else:
            run_config_from_dict({"method": switch.methods[0], "modes": ["fc100"], **switch.overlay()})
    assert any("file-system order" in why for why in NOT_REPRODUCED.values())


def test_no_variant_leaves_the_paper_plan_as_it_was(paper):
    assert paper.variants == {} and not paper.negative_fc100_files
    assert "prepare_fc100_negative" not in paper.job_counts()
    assert not any("variants" in target for target in paper.all_targets())


def test_released_adds_exactly_the_trainings_whose_configuration_changes(paper, released):
    variant = released.variant("released")
    expected = {name for name, training in paper.trainings.items() if changed_by_released(training)}
    assert set(variant.trainings) == expected
    # 36 joint runs on FC100, the 2Mode KML and ProtoNet-family runs, the Multi-MAML FC100 members and every
    # Multi-ProtoNet member
    assert len(expected) == 36 + 8 + 2 + 10
    assert released.job_counts() == {**paper.job_counts(), "prepare_fc100_negative": 1, "train_variant": 56,
                                     "evaluate_variant": 58, "report_variant": 1}
    # the default jobs are the paper's, unchanged
    assert {n: t.run_config for n, t in released.trainings.items()} == {
        n: t.run_config for n, t in paper.trainings.items()}


def test_an_unaffected_method_is_not_trained_again(released):
    variant = released.variant("released")
    cell = variant.cells["2mode/maml/1shot"]
    assert cell is released.cells["2mode/maml/1shot"]
    assert cell.csv == "results/eval/2mode/maml/1shot.csv"
    multi = variant.cells["2mode/multi_maml/5shot"]
    assert multi.trainings[0] is released.training(f"{SINGLE}/maml/omniglot/5shot")
    # a Multi-MAML cell with FC100 shares its Omniglot member and trains the FC100 one again
    three = variant.cells["3mode/multi_maml/1shot"]
    assert [t.root for t in three.trainings] == ["results", "results", "results/variants/released"]


def test_a_changed_training_carries_the_switches_and_lives_in_the_variants_folder(released):
    variant = released.variant("released")
    kml = variant.trainings["2mode_dagger/mprotonet_kml/5shot"]
    assert kml.directory == "results/variants/released/models/2mode_dagger/mprotonet_kml/5shot"
    assert kml.model.endswith("/5shot/model.pt") and kml.snapshots == ()
    config = kml.run_config
    assert config["model"]["kml_form"] == "released" and config["model"]["query_embedding"] == "query"
    assert config["protonet"]["transductive"] == "released"
    assert config["data"]["files"]["fc100"] == "data/processed/fc100-84-negative.h5"
    assert config["data"]["files"]["miniimagenet"] == "data/processed/miniimagenet-84.h5"
    assert "extra_checkpoints" not in config["train"]
    run_config_from_dict(config)
    mmaml = variant.trainings["2mode_dagger/mmaml/1shot"].run_config  # FC100 only: FiLM reads no switch
    assert mmaml["model"]["query_embedding"] == "support" and "kml_form" not in mmaml["model"]
    cell = variant.cells["2mode_dagger/mprotonet_kml/5shot"]
    assert cell.csv == "results/variants/released/eval/2mode_dagger/mprotonet_kml/5shot.csv"
    assert cell.models == [kml.model]
    assert cell.run_config["data"]["files"]["fc100"] == "data/processed/fc100-84-negative.h5"
    assert released.prepare_args("fc100", negative=True) == "--fc100-negative"
    assert released.prepare_args("fc100") == ""
    assert released.negative_fc100_files == ["data/processed/fc100-84-negative.h5"]
    targets = released.all_targets()
    assert cell.csv in targets and "results/variants/released/summary.csv" in targets
    assert "results/variants/released/tables/variant.tex" in targets
    assert "results/eval/2mode/maml/1shot.csv" in targets and len(set(targets)) == len(targets)


def test_a_selection_of_cells_builds_only_those(released):
    plan = Plan(workflow_config({**RELEASED, "variant_cells": {
        "settings": ["2mode"], "methods": ["maml", "mprotonet_kml"], "shots": [1]}}))
    variant = plan.variant("released")
    assert list(variant.cells) == ["2mode/maml/1shot", "2mode/mprotonet_kml/1shot"]
    assert set(variant.trainings) == {"2mode/mprotonet_kml/1shot"}
    assert [c.name for c in variant.own_cells] == ["2mode/mprotonet_kml/1shot"]
    # no FC100 in 2Mode: no negative file to prepare
    assert plan.job_counts()["prepare_fc100_negative"] == 0 and plan.job_counts()["train_variant"] == 1


def test_a_switch_already_set_by_the_configuration_changes_nothing(paper):
    negative = Plan(workflow_config({"prepare": {"fc100_negative": True}}))
    plan = Plan(workflow_config(RELEASED, {"prepare": {"fc100_negative": True}}))
    variant = plan.variant("released")
    assert not plan.negative_fc100_files and plan.job_counts()["prepare"] == negative.job_counts()["prepare"]
    # only the switches of the run configuration remain: the KML methods and the ProtoNet family
    assert set(variant.trainings) == {n for n, t in paper.trainings.items()
                                      if METHODS[t.method].family == "protonet"
                                      or METHODS[t.method].modulation == "kml"}
    assert "2mode_dagger/maml/1shot" not in variant.trainings


@pytest.mark.parametrize(("overlay", "message"), [
    ({"variants": ["relased"]}, "variants: unknown variant 'relased'; choose from released"),
    ({"variants": ["released", "released"]}, "variants: ['released', 'released'] lists a value twice"),
    ({"variant_cells": {"settings": ["4mode"]}},
     "variant_cells.settings: '4mode' is not one of the workflow's settings"),
    ({"variant_cells": {"methods": ["maml++"]}}, "variant_cells.methods: unknown method 'maml++'"),
    ({"variant_cells": {"shot": [1]}}, "variant_cells.shot: unknown key"),
])
def test_bad_variant_keys_are_rejected_naming_the_key(overlay, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Plan(workflow_config(overlay))


def test_variant_switches_are_the_declared_ones():
    assert [s.key for s in variant_switches("released")] == list(SWITCHES)


# ---- the report ----------------------------------------------------------------------------------------


def test_the_variant_report_pairs_each_cell_with_its_default_task_by_task(tmp_path):
    rng = np.random.default_rng(0)
    default_modes = {"miniimagenet": rng.uniform(30, 70, 20), "fc100": rng.uniform(30, 70, 20)}
    shifted = {mode: values + 2.0 + rng.normal(0, 1, 20) for mode, values in default_modes.items()}
    defaults = [cell(tmp_path / "eval", "2mode_dagger", "mprotonet_kml", default_modes),
                cell(tmp_path / "eval", "2mode", "maml", {"omniglot": rng.uniform(80, 99, 20)})]
    variant = [cell(tmp_path / "variant", "2mode_dagger", "mprotonet_kml", shifted), defaults[1]]
    summary = summarize_variant(defaults, variant, "released")
    assert list(summary.columns) == VARIANT_COLUMNS
    assert list(summary["setting"]) == ["2mode_dagger", "2mode"]  # the paper's order
    changed, same = summary.iloc[0], summary.iloc[1]
    differences = np.concatenate(list(shifted.values())) - np.concatenate(list(default_modes.values()))
    assert changed["delta_pct"] == pytest.approx(differences.mean(), abs=1e-4)
    assert changed["n_tasks"] == 40 and not changed["same_configuration"] and changed["p_value"] < 0.05
    assert changed["variant_accuracy"] - changed["accuracy"] == pytest.approx(differences.mean(), abs=1e-3)
    assert same["same_configuration"] and same["delta_pct"] == 0 and same["delta_ci95_pct"] == 0
    assert same["paper_accuracy"] > 0

    out = tmp_path / "results" / "variants" / "released"
    assert main(["report", "variant", *map(str, variant), "--default", *map(str, defaults),
                 "--variant", "released", "--out-dir", str(out), "--note", "smoke"]) == 0
    written = pd.read_csv(out / "summary.csv")
    assert len(written) == 2 and list(written.columns) == VARIANT_COLUMNS
    table = (out / "tables" / "variant.tex").read_text()
    assert "MProtoNet+KML" in table and "released" in table and "smoke" in table and r"$^\ast$" in table


def test_a_variant_cell_without_its_default_is_an_error_naming_it(tmp_path, capsys):
    lone = cell(tmp_path, "2mode", "maml", {"omniglot": np.full(20, 50.0)})
    other = cell(tmp_path, "2mode", "mmaml", {"omniglot": np.full(20, 50.0)})
    assert main(["report", "variant", str(lone), "--default", str(other), "--variant", "released",
                 "--out-dir", str(tmp_path / "out")]) == 2
    assert f"{lone}: no default cell for (2mode, maml, 1)" in capsys.readouterr().err


def test_the_variant_report_never_imports_torch():
    code = ("import sys, kml.variants, kml.report.variant; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]", loaded
