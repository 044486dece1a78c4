"""Ablations (config.yaml `ablations`): each released-code switch of kml/variants.py flipped alone, the jobs
it adds to the plan, and its report (no Snakemake needed; the workflow's dry run of the smoke ablations is in
tests/test_workflow.py)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats
from test_plan import workflow_config
from test_report import one_shot_cell as cell

from kml import KmlError
from kml.cli import main
from kml.config import ConfigError
from kml.method_table import METHODS
from kml.plan import Plan
from kml.report.ablations import ABLATION_COLUMNS, summarize_ablations
from kml.variants import SWITCHES


def ablate(*switches: str, **cells) -> Plan:
    return Plan(workflow_config({"ablations": {"switches": list(switches), **cells}}))


@pytest.fixture(scope="module")
def paper() -> Plan:
    return Plan(workflow_config())


def added(plan: Plan, paper: Plan) -> dict[str, int]:
    """The jobs an ablation adds to the paper's plan (its own rules, and any default count it changes)."""
    before = paper.job_counts()
    return {kind: n for kind, n in plan.job_counts().items() if before.get(kind) != n}


def test_no_ablation_leaves_the_paper_plan_as_it_was(paper):
    assert paper.ablations == {} and paper.ablation_cells == ()
    assert not any("ablation" in kind for kind in paper.job_counts())
    assert not any("ablations" in target for target in paper.all_targets())
    assert paper.report_files("ablations") == {}


def test_ablating_fc100_negative_adds_one_prepare_job_and_only_the_trainings_that_read_fc100(paper):
    plan = ablate("prepare.fc100_negative")
    ablation = plan.ablation("prepare.fc100_negative")
    # the configured cells: 2Mode-dagger and 2Mode x ProtoNet, MProtoNet+KML, MMAML, MMAML+KML x 1, 5 shots
    assert len(plan.ablation_cells) == 16 and len(ablation.cells) == 16
    reading_fc100 = {name for name in plan.ablation_cells if "fc100" in paper.cells[name].trainings[0].modes}
    assert set(ablation.trainings) == reading_fc100 and len(reading_fc100) == 8
    assert all(name.startswith("2mode_dagger/") for name in ablation.trainings)
    assert added(plan, paper) == {"prepare_fc100_negative": 1, "train_ablation": 8, "evaluate_ablation": 8,
                                  "report_ablations": 1}
    assert plan.negative_fc100_files == ["data/processed/fc100-84-negative.h5"]
    training = ablation.trainings["2mode_dagger/mmaml/1shot"]
    assert training.directory == "results/ablations/prepare.fc100_negative/models/2mode_dagger/mmaml/1shot"
    assert training.run_config["data"]["files"]["fc100"] == "data/processed/fc100-84-negative.h5"
    # a 2Mode cell reads no FC100: the default cell itself
    assert ablation.cells["2mode/mmaml/1shot"] is plan.cells["2mode/mmaml/1shot"]
    # the default jobs are the paper's, unchanged
    assert {n: t.run_config for n, t in plan.trainings.items()} == {
        n: t.run_config for n, t in paper.trainings.items()}


def test_ablating_the_kernel_form_adds_trainings_only_for_the_kml_methods(paper):
    plan = ablate("model.kml_form")
    ablation = plan.ablation("model.kml_form")
    assert {METHODS[t.method].modulation for t in ablation.trainings.values()} == {"kml"}
    assert len(ablation.trainings) == 8  # two KML methods x two settings x two shot counts
    assert added(plan, paper) == {"prepare_fc100_negative": 0, "train_ablation": 8, "evaluate_ablation": 8,
                                  "report_ablations": 1}
    config = ablation.trainings["2mode/mmaml_kml/5shot"].run_config
    assert config["model"]["kml_form"] == "released"
    assert config["data"]["files"]["omniglot"] == "data/processed/omniglot-84.h5"
    assert ablation.cells["2mode/protonet/5shot"] is plan.cells["2mode/protonet/5shot"]
    cell = ablation.cells["2mode/mmaml_kml/5shot"]
    assert cell.csv == "results/ablations/model.kml_form/eval/2mode/mmaml_kml/5shot.csv"


def test_each_ablation_flips_its_one_switch_and_no_other():
    plan = ablate(*SWITCHES)
    assert list(plan.ablations) == list(SWITCHES)
    for key, ablation in plan.ablations.items():
        for training in ablation.trainings.values():
            config = training.run_config
            for other in SWITCHES.values():
                if other.key == key or other.data or other.section not in config:
                    continue
                assert config[other.section].get(other.name) != other.released, (key, training.name)
    # one negative FC100 file, whoever reads it
    assert plan.job_counts()["prepare_fc100_negative"] == 1
    targets = plan.all_targets()
    assert len(set(targets)) == len(targets)
    for path in ("results/ablations/summary.csv", "results/tables/ablations.tex",
                 "results/figures/ablations.pdf", "results/figures/ablations.png"):
        assert path in targets
    args = plan.ablation_report_args()
    assert "--ablation model.kml_form results/eval/2mode/protonet/1shot.csv" in args  # a shared cell
    assert args.count("--ablation") == 4 * 16 and args.count(" --default ") == 1


def test_a_variant_and_an_ablation_share_their_default_jobs():
    plan = Plan(workflow_config({"variants": ["released"], "ablations": {"switches": ["model.kml_form"]}}))
    counts = plan.job_counts()
    assert counts["train_variant"] == 56 and counts["train_ablation"] == 8 and counts["report_variant"] == 1
    assert counts["prepare_fc100_negative"] == 1


@pytest.mark.parametrize(("overlay", "message"), [
    ({"switches": ["model.kml_from"]},
     ("ablations.switches: unknown switch 'model.kml_from'; choose from model.kml_form, "
      "model.query_embedding, protonet.transductive, prepare.fc100_negative")),
    ({"switches": ["model.kml_form", "model.kml_form"]}, "lists a value twice"),
    ({"switches": ["model.kml_form"], "settings": ["4mode"]},
     "ablations.settings: '4mode' is not one of the workflow's settings"),
    ({"switches": ["model.kml_form"], "methods": ["maml++"]}, "ablations.methods: unknown method 'maml++'"),
    ({"switch": ["model.kml_form"]}, "ablations.switch: unknown key"),
])
def test_bad_ablation_keys_are_rejected_in_one_line(overlay, message):
    with pytest.raises(ConfigError, match=re.escape(message)) as error:
        Plan(workflow_config({"ablations": overlay}))
    assert "\n" not in str(error.value)


# ---- the report ----------------------------------------------------------------------------------------


@pytest.fixture
def cells(tmp_path):
    """Two default cells; the kernel-form ablation changes the KML one, the fc100 one changes neither."""
    rng = np.random.default_rng(3)
    kml = {"miniimagenet": rng.uniform(30, 70, 25), "fc100": rng.uniform(30, 70, 25)}
    ablated = {mode: values - 1.5 + rng.normal(0, 2, 25) for mode, values in kml.items()}
    defaults = [cell(tmp_path / "eval", "2mode_dagger", "mprotonet_kml", kml),
                cell(tmp_path / "eval", "2mode", "protonet", {"omniglot": rng.uniform(80, 99, 30)})]
    own = cell(tmp_path / "ablations" / "model.kml_form" / "eval", "2mode_dagger", "mprotonet_kml", ablated)
    ablations = [("model.kml_form", own), ("model.kml_form", defaults[1]),
                 ("prepare.fc100_negative", defaults[1])]
    return ablations, defaults, kml, ablated


def test_the_ablation_report_pairs_each_cell_with_its_default_as_scipy_does(cells, tmp_path):
    ablations, defaults, kml, ablated = cells
    summary = summarize_ablations(ablations, defaults)
    assert list(summary.columns) == ABLATION_COLUMNS
    assert list(summary["switch"]) == ["model.kml_form", "model.kml_form", "prepare.fc100_negative"]
    assert list(summary["setting"]) == ["2mode_dagger", "2mode", "2mode"]  # the paper's order in a switch
    changed = summary.iloc[0]
    a, b = np.concatenate(list(ablated.values())), np.concatenate(list(kml.values()))
    expected = scipy_stats.ttest_rel(a, b)
    low, high = expected.confidence_interval(0.95)
    assert changed["delta_pct"] == pytest.approx((a - b).mean(), abs=1e-4)
    assert changed["ci95_pct"] == pytest.approx((high - low) / 2, abs=1e-4)
    assert changed["p_value"] == pytest.approx(expected.pvalue, rel=1e-6)
    assert changed["n_tasks"] == 50 and not changed["same_configuration"]
    assert changed["value"] == "released" and summary.iloc[2]["value"] == "True"
    for _, shared in summary.iloc[1:].iterrows():  # the default cell itself: 0 exactly
        assert shared["same_configuration"] and shared["delta_pct"] == 0 and shared["ci95_pct"] == 0
        assert shared["p_value"] == 1 and shared["accuracy_pct"] == shared["default_accuracy_pct"]

    args = [arg for switch, path in ablations for arg in ("--ablation", switch, str(path))]
    out = tmp_path / "results"
    assert main(["report", "ablations", *args, "--default", *map(str, defaults), "--out-dir", str(out),
                 "--note", "smoke"]) == 0
    written = pd.read_csv(out / "ablations" / "summary.csv")
    assert len(written) == 3 and list(written.columns) == ABLATION_COLUMNS
    table = (out / "tables" / "ablations.tex").read_text()
    assert r"\texttt{model.kml\_form}" in table and "smoke" in table and r"$^\ast$" in table
    figures = out / "figures"
    assert (figures / "ablations.png").stat().st_size > 0 and (figures / "ablations.pdf").exists()


def test_an_ablation_cell_without_its_default_or_an_unknown_switch_is_an_error(cells, capsys):
    ablations, defaults, *_ = cells
    with pytest.raises(KmlError, match="no default cell for"):
        summarize_ablations(ablations, defaults[1:])
    assert main(["report", "ablations", "--ablation", "model.kml", str(defaults[0]), "--default",
                 str(defaults[0]), "--out-dir", "unused"]) == 2
    assert "unknown switch 'model.kml'" in capsys.readouterr().err
