"""The Snakemake workflow: dry runs of the paper, one cell, schema errors, lint, and the smoke preset
end to end.

Every test runs Snakemake in a fresh copy of the workflow (Snakefile, config, rules, presets, profiles, envs
and the kml package that workflow/rules/common.smk imports), so results in the checkout never interfere, and
in a virtual environment with only kml's declared dependencies, so the README's commands are tested as a
user who followed its install command would run them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
import yaml
from declared import declared_only_venv

from kml.gpus import gpu_visible

REPO = Path(__file__).resolve().parents[1]
WORKFLOW_FILES = ("Snakefile", "config.yaml", "workflow", "presets", "profiles", "envs", "kml",
                  "pyproject.toml", "benchmarks")
SMOKE = ("--configfile", "presets/smoke.yaml")
# The smoke run below takes the GPU's code path on the CPU: every training runs its tasks under vmap, and the
# evaluations and transference analyses follow (batched transference), so every rule exercises it end to end.
# (The CPU's task loop is what the unit tests and the byte-identity check run.)
VMAP = {"train": {"task_batching": "vmap"}}
# And it runs the 1-shot half of the preset's cells: the 5-shot half repeats every rule with another number
# (the dry runs above schedule it, the unit tests compute it) and would take half the run's minutes.
SMOKE_SHOTS = (1,)
SMOKE_RUN = {**VMAP, "shots": list(SMOKE_SHOTS)}
SMOKE_RUN_ARGS = (*SMOKE, "smoke_run.yaml")
METHODS = ("maml", "multi_maml", "mmaml", "mmaml_kml", "protonet", "multi_protonet", "mprotonet",
           "mprotonet_kml")
# `snakemake -n` of the paper (config.yaml), by rule; tests/test_plan.py checks the same numbers on the plan.
PAPER_JOBS = {
    "download": 5, "prepare": 5,
    "train": 56, "train_with_snapshots": 12,  # 48 joint + 20 Multi-* members
    "evaluate": 64,
    "transference": 12, "transference_sweep": 12,
    "report_accuracy": 1, "report_claims": 1, "report_transference": 1, "report_step_size": 1, "all": 1,
}
# Beyond the paper's jobs, the smoke preset trains a second seed on 2Mode† 1-shot Multi-MAML (its two
# members) and MProtoNet+KML (a transference model: one more analysis, no sweep), and builds the released
# variant and two ablations on a few cells (a variant's and an ablation's trainings follow the seeds too).
SMOKE_EXTRA_JOBS = {
    "synth": 5, "train": PAPER_JOBS["train"] + 2,
    "train_with_snapshots": PAPER_JOBS["train_with_snapshots"] + 1,
    "transference": PAPER_JOBS["transference"] + 1,
    "prepare_fc100_negative": 1, "train_variant": 4, "evaluate_variant": 3, "report_variant": 1,
    "train_ablation": 5, "evaluate_ablation": 3, "report_ablations": 1,
}


def copy_workflow(destination: Path) -> Path:
    destination.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, destination / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, destination / name)
    return destination


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """Snakemake, and the `kml` of its jobs, with only kml's declared dependencies, as after the README's
    `pip install -e .` (tests/declared.py)."""
    python, env = declared_only_venv(workdir / ".venv-declared")
    result = subprocess.run([python, "-m", "snakemake", *args], cwd=workdir, capture_output=True, check=False,
                            text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    return result


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of a Snakemake run or dry run, without its total."""
    table = output[output.index("Job stats:"):]
    table = table[:table.index("\ntotal")]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)}


def dry_run(workdir: Path, *args: str) -> tuple[dict[str, int], list[str]]:
    """Job counts and every output file of the jobs a dry run schedules."""
    result = snakemake(workdir, "--dry-run", *args)
    text = result.stdout + result.stderr
    outputs = [f for line in re.findall(r"^\s+output: (.*)$", text, re.MULTILINE) for f in line.split(", ")]
    return job_counts(text), outputs


@pytest.fixture(scope="module")
def workflow(tmp_path_factory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("workflow"))


def test_paper_dry_run_schedules_every_job(workflow):
    counts, outputs = dry_run(workflow)
    assert counts == PAPER_JOBS, counts
    assert sum(counts.values()) == 171
    cells = {f for f in outputs if f.startswith("results/eval/") and f.endswith(".csv")}
    assert len(cells) == 64
    assert "results/models/single/maml/omniglot/1shot/model.pt" in outputs
    assert "results/models/2mode_dagger/mmaml_kml/5shot/snapshots/iter020000.pt" in outputs


@pytest.mark.skipif(gpu_visible(), reason="this machine has a GPU: the warning is for machines without one")
def test_the_paper_preset_without_a_gpu_warns_with_the_estimate_and_the_cpu_preset(workflow):
    paper = snakemake(workflow, "--dry-run")
    warning = paper.stderr[paper.stderr.index("kml: warning: no GPU"):]
    assert "68 models for 3,220,000 iterations" in warning and "hours" in warning, warning
    assert "--configfile presets/cpu.yaml" in warning
    for preset in ("presets/smoke.yaml", "presets/cpu.yaml"):
        quiet = snakemake(workflow, "--dry-run", "--configfile", preset)
        assert "no GPU" not in quiet.stdout + quiet.stderr


def test_one_cell_builds_only_its_own_chain(workflow):
    counts, outputs = dry_run(workflow, "results/eval/2mode/mmaml_kml/5shot.csv")
    assert counts == {"download": 2, "prepare": 2, "train": 1, "evaluate": 1}
    assert [f for f in outputs if f.startswith("results/eval/")] == [
        "results/eval/2mode/mmaml_kml/5shot.yaml", "results/eval/2mode/mmaml_kml/5shot.csv"]
    assert [f for f in outputs if f.endswith("model.pt")] == ["results/models/2mode/mmaml_kml/5shot/model.pt"]
    assert {f for f in outputs if f.startswith("data/processed/")} == {
        "data/processed/omniglot-84.h5", "data/processed/miniimagenet-84.h5"}


def test_a_multi_cell_builds_one_member_per_mode_of_its_setting(workflow):
    counts, outputs = dry_run(workflow, "results/eval/3mode/multi_maml/1shot.csv")
    assert counts["train"] == 3 and counts["evaluate"] == 1
    assert sorted(f for f in outputs if f.endswith("model.pt")) == [
        f"results/models/single/maml/{mode}/1shot/model.pt" for mode in ("fc100", "miniimagenet", "omniglot")]


def test_two_seeds_double_exactly_the_trainings_and_transference_analyses(workflow, tmp_path):
    overlay = tmp_path / "seeds.yaml"
    overlay.write_text(yaml.safe_dump({"train": {"seeds": [0, 1]}}))
    counts, outputs = dry_run(workflow, "--configfile", str(overlay))
    doubled = ("train", "train_with_snapshots", "transference")
    assert counts == {**PAPER_JOBS, **{rule: 2 * PAPER_JOBS[rule] for rule in doubled}}
    assert "results/models/single/maml/omniglot/1shot-seed1/model.pt" in outputs
    assert "results/transference/mmaml_kml/5shot-seed1/iter20000.csv" in outputs


def test_smoke_preset_dry_run_adds_the_mirror_a_seed_a_variant_and_ablations(workflow):
    counts, outputs = dry_run(workflow, *SMOKE)
    assert counts == {**PAPER_JOBS, **SMOKE_EXTRA_JOBS}
    for path in ("results/models/2mode_dagger/mprotonet_kml/1shot-seed1/snapshots/iter000006.pt",
                 "results/models/single/maml/fc100/1shot-seed1/model.pt",
                 "results/transference/mprotonet_kml/1shot-seed1/iter6.csv",
                 "results/variants/released/models/2mode_dagger/mprotonet_kml/1shot-seed1/model.pt",
                 "results/ablations/model.kml_form/models/2mode_dagger/mprotonet_kml/1shot-seed1/model.pt",
                 "results/ablations/prepare.fc100_negative/models/2mode_dagger/protonet/1shot/model.pt",
                 "results/ablations/model.kml_form/eval/2mode_dagger/mprotonet_kml/1shot.csv",
                 "results/ablations/summary.csv", "results/tables/ablations.tex",
                 "results/figures/ablations.png", "results/variants/released/summary.csv",
                 "data/processed/fc100-16-negative.h5"):
        assert path in outputs, path
    assert not any(f.startswith("results/ablations/model.kml_form/models/2mode_dagger/protonet/")
                   for f in outputs)
    assert not any("step_size_sweep" in f and "-seed1" in f for f in outputs)


def test_released_variant_dry_run_adds_only_the_jobs_its_switches_change(workflow, tmp_path):
    overlay = tmp_path / "released.yaml"
    overlay.write_text(yaml.safe_dump({"variants": ["released"]}))
    result = snakemake(workflow, "--dry-run", "--printshellcmds", "--configfile", str(overlay))
    text = result.stdout + result.stderr
    # 56 trainings (every run on FC100, the KML methods, the ProtoNet family), 58 cells (2Mode's MAML,
    # Multi-MAML and MMAML cells are the default ones), one prepare job for the colour-negative FC100
    assert job_counts(text) == {**PAPER_JOBS, "prepare_fc100_negative": 1, "train_variant": 56,
                                "evaluate_variant": 58, "report_variant": 1}
    outputs = [f for line in re.findall(r"^\s+output: (.*)$", text, re.MULTILINE) for f in line.split(", ")]
    assert "results/variants/released/models/2mode_dagger/maml/5shot/model.pt" in outputs
    assert "results/variants/released/eval/2mode/mprotonet_kml/1shot.csv" in outputs
    assert not any(f.startswith("results/variants/released/models/2mode/maml/") for f in outputs)
    assert "results/variants/released/summary.csv" in outputs
    negative = [line for line in text.splitlines() if "kml prepare" in line and "--fc100-negative" in line]
    assert len(negative) == 1 and "--out data/processed/fc100-84-negative.h5" in negative[0]


# More cases, without Snakemake:
# tests/test_plan.py::test_bad_values_are_rejected_naming_the_key_and_the_value.
@pytest.mark.parametrize(("overlay", "named"), [
    ({"train": {"iteratons": 5}}, "bad.yaml: train.iteratons: unknown key; known keys here: amp_bf16"),
    ({"overrides": {"multi_member": {"maml": {"omniglot": {"train": {"iterations": "10"}}}}}},
     "bad.yaml: overrides.multi_member.maml.omniglot.train.iterations: expected an integer, got '10'"),
    ({"variants": ["releast"]}, "bad.yaml: variants: unknown variant 'releast'; choose from released"),
    ({"ablations": {"switches": ["kml_form"]}},
     "bad.yaml: ablations.switches: unknown switch 'kml_form'; choose from model.kml_form"),
])
def test_snakemake_rejects_a_misspelt_key_or_wrong_type_naming_it(workflow, tmp_path, overlay, named):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(overlay))
    result = snakemake(workflow, "--dry-run", "--configfile", str(bad), check=False)
    text = result.stdout + result.stderr
    assert result.returncode != 0
    assert "Error in the configuration" in text and named in text, text[-3000:]
    assert "Traceback" not in text and 'File "' not in text, text[-3000:]  # one line, no stack to dig through


def test_impossible_plan_is_rejected_before_any_job(workflow, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"transference_runs": {"checkpoints": [40000]}}))
    result = snakemake(workflow, "--dry-run", "--configfile", str(bad), check=False)
    assert (result.returncode != 0
            and "must not exceed the 30000 training iterations" in result.stdout + result.stderr)


@pytest.mark.parametrize("caption", sorted((REPO / "workflow" / "report").glob("*.rst")),
                         ids=lambda p: p.name)
def test_report_captions_render_without_a_docutils_error(caption):
    """As `snakemake --report` renders them (kml's config and the smoke preset): Jinja, then docutils, whose
    complaints (a bare |...| is a substitution reference) would show as an error box in the report."""
    import jinja2
    from docutils.core import publish_parts
    from snakemake.utils import update_config

    config = yaml.safe_load((REPO / "config.yaml").read_text())
    update_config(config, PRESET)
    text = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(caption.read_text()).render(
        snakemake=SimpleNamespace(config=config))
    body = publish_parts(text, writer="html", settings_overrides={"warning_stream": False})["body"]
    assert "system-message" not in body, body


def test_lint_is_clean(workflow):
    result = snakemake(workflow, "--lint")
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr


# ---- the smoke preset, end to end --------------------------------------------------------------------------

PRESET = yaml.safe_load((REPO / "presets" / "smoke.yaml").read_text())


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> Path:
    """The smoke preset's `all` target (its 1-shot cells), run once in a fresh copy with 2 cores."""
    workdir = copy_workflow(tmp_path_factory.mktemp("smoke"))
    (workdir / "smoke_run.yaml").write_text(yaml.safe_dump(SMOKE_RUN))
    snakemake(workdir, "--cores", "2", *SMOKE_RUN_ARGS)
    return workdir


@pytest.mark.slow
def test_smoke_writes_every_cell_and_table(smoke):
    summary = pd.read_csv(smoke / "results" / "summary.csv")
    assert len(summary) == 32
    assert set(map(tuple, summary[["setting", "method", "shots"]].values.tolist())) == {
        (s, m, k) for s in ("2mode_dagger", "2mode", "3mode", "5mode") for m in METHODS for k in SMOKE_SHOTS}
    assert summary["accuracy"].between(0, 100).all()
    assert (smoke / "results" / "per_mode.csv").stat().st_size > 0
    labels = {"maml_family": ("MAML", "Multi-MAML", "MMAML", "MMAML+KML"),
              "protonet_family": ("ProtoNet", "Multi-ProtoNet", "MProtoNet", "MProtoNet+KML")}
    for table, methods in labels.items():
        tex = (smoke / "results" / "tables" / f"{table}.tex").read_text()
        assert all(method in tex for method in methods), (table, tex)
        assert "plumbing" in tex  # the preset's note: these numbers prove nothing about the methods
    assert "plumbing" in (smoke / "results" / "tables" / "reproduction.tex").read_text()
    for figure in ("reproduction.pdf", "reproduction.png"):
        assert (smoke / "results" / "figures" / figure).stat().st_size > 1000
    cell = pd.read_csv(smoke / "results" / "eval" / "3mode" / "multi_maml" / "1shot.csv")
    assert (cell["kind"] == "task").sum() == 3 * PRESET["eval"]["tasks_per_mode"]
    # The preset evaluates at least two meta-batches of 10 per cell, so every interval is defined.
    assert summary[["ci95", "ci95_stratified", "ci95_pooled", "delta_ci95"]].notna().all().all()


@pytest.mark.slow
def test_smoke_writes_the_paired_claims(smoke):
    claims = pd.read_csv(smoke / "results" / "claims.csv")
    assert len(claims) == 8 * 4 * len(SMOKE_SHOTS)  # comparisons x settings x shots
    assert list(claims.columns[:4]) == ["setting", "shots", "method", "baseline"]
    assert set(claims["verdict"]) <= {"reproduced", "not significant", "contradicted", "no paper direction"}
    assert claims["p_holm"].between(0, 1).all() and (claims["p_holm"] >= claims["p_value"]).all()
    assert "plumbing" in (smoke / "results" / "tables" / "claims.tex").read_text()
    for figure in ("claims.pdf", "claims.png"):
        assert (smoke / "results" / "figures" / figure).stat().st_size > 1000


@pytest.mark.slow
def test_smoke_writes_every_transference_output(smoke):
    for method in ("maml", "mmaml", "mmaml_kml", "protonet", "mprotonet", "mprotonet_kml"):
        for shots in SMOKE_SHOTS:
            for iteration in PRESET["transference_runs"]["checkpoints"]:
                ratios = pd.read_csv(smoke / "results" / "transference" / method / f"{shots}shot"
                                     / f"iter{iteration}.csv")
                # one row per (source, target) pair, plus each target's self-transference
                sources, targets = PRESET["transference"]["sources"], PRESET["transference"]["targets"]
                assert len(ratios) == (sources + 1) * targets and ratios["self"].sum() == targets
            # the step-size sweep on the last snapshot: its first sources x targets, plus self rows, per α
            sweep = PRESET["transference"]["sweep"]
            last = max(PRESET["transference_runs"]["checkpoints"])
            ratios = pd.read_csv(smoke / "results" / "transference" / method / f"{shots}shot"
                                 / "step_size_sweep" / f"iter{last}.csv")
            assert len(ratios) == len(sweep["step_sizes"]) * (sweep["sources"] + 1) * sweep["targets"]
    summary = pd.read_csv(smoke / "results" / "transference" / "summary.csv")
    assert (summary[["positive_pct", "neutral_pct", "negative_pct"]].sum(axis=1) == 100).all()
    assert (summary["lookahead"] == "sgd").all()
    claims = pd.read_csv(smoke / "results" / "transference" / "claims.csv")
    # pairs x shots x snapshots x outcomes
    assert len(claims) == 4 * len(SMOKE_SHOTS) * len(PRESET["transference_runs"]["checkpoints"]) * 2
    sweep = pd.read_csv(smoke / "results" / "transference" / "step_size_sweep.csv")
    assert len(sweep) == 6 * len(SMOKE_SHOTS) * len(PRESET["transference"]["sweep"]["step_sizes"])
    for table in ("transference.tex", "transference_claims.tex"):
        assert "plumbing" in (smoke / "results" / "tables" / table).read_text()
    figures = list((smoke / "results" / "figures").glob("transference_*"))
    assert {f.stem for f in figures} == {f"transference_{name}" for name in (
        "histograms", "checkpoints", "single_target", "per_target", "kml", "step_size")}
    assert all(f.stat().st_size > 1000 for f in figures) and {f.suffix for f in figures} == {".pdf", ".png"}


@pytest.mark.slow
def test_smoke_writes_the_released_variant_beside_the_default_cells(smoke):
    variant = smoke / "results" / "variants" / "released"
    summary = pd.read_csv(variant / "summary.csv")
    assert set(map(tuple, summary[["setting", "method", "shots"]].values.tolist())) == {
        (s, m, 1) for s in ("2mode_dagger", "2mode") for m in ("maml", "mprotonet_kml")}
    # 2Mode MAML reads no switch: the default cell itself, difference 0 by construction
    same = summary.set_index(["setting", "method"])["same_configuration"]
    assert same.to_dict() == {("2mode_dagger", "maml"): False, ("2mode_dagger", "mprotonet_kml"): False,
                              ("2mode", "maml"): True, ("2mode", "mprotonet_kml"): False}
    assert (summary.loc[summary["same_configuration"], "delta_pct"] == 0).all()
    assert summary["variant_accuracy"].between(0, 100).all() and summary["paper_accuracy"].notna().all()
    assert "plumbing" in (variant / "tables" / "variant.tex").read_text()
    recorded = yaml.safe_load((variant / "models" / "2mode_dagger" / "mprotonet_kml" / "1shot"
                               / "config.yaml").read_text())
    assert recorded["model"]["kml_form"] == "released" and recorded["protonet"]["transductive"] == "released"
    assert recorded["data"]["files"]["fc100"] == "data/processed/fc100-16-negative.h5"
    assert not (variant / "models" / "2mode").joinpath("maml").exists()
    assert (smoke / "data" / "processed" / "fc100-16-negative.h5").exists()


@pytest.mark.slow
def test_smoke_writes_the_second_seed_beside_the_first(smoke):
    cell = pd.read_csv(smoke / "results" / "eval" / "2mode_dagger" / "mprotonet_kml" / "1shot.csv")
    tasks = cell[cell["kind"] == "task"]
    assert tasks.groupby("seed").size().to_dict() == {0: 20, 1: 20}
    assert set(cell["kind"]) == {"task", "mode", "overall", "mode_over_seeds", "overall_over_seeds"}
    summary = pd.read_csv(smoke / "results" / "summary.csv").set_index(["setting", "method", "shots"])
    seeded = summary[summary["n_seeds"] == 2]
    assert set(seeded.index) == {("2mode_dagger", "multi_maml", 1), ("2mode_dagger", "mprotonet_kml", 1)}
    assert seeded["ci95_definition"].str.contains("seed-inclusive").all() and seeded["seed_sd"].notna().all()
    assert summary["seed_sd"].isna().sum() == len(summary) - 2
    claims = pd.read_csv(smoke / "results" / "claims.csv")
    claims = claims.set_index(["setting", "shots", "method", "baseline"])["n_seeds"]
    assert claims[("2mode_dagger", 1, "mprotonet_kml", "protonet")] == 1  # the one seed both have
    transference = pd.read_csv(smoke / "results" / "transference" / "summary.csv")
    kml = transference[(transference["method"] == "mprotonet_kml") & (transference["shots"] == 1)]
    assert (kml["n_seeds"] == 2).all() and (transference["n_seeds"] >= 1).all()


@pytest.mark.slow
def test_smoke_writes_the_ablations(smoke):
    summary = pd.read_csv(smoke / "results" / "ablations" / "summary.csv")
    assert set(map(tuple, summary[["switch", "method"]].values.tolist())) == {
        ("model.kml_form", "protonet"), ("model.kml_form", "mprotonet_kml"),
        ("prepare.fc100_negative", "protonet"), ("prepare.fc100_negative", "mprotonet_kml")}
    same = summary.set_index(["switch", "method"])["same_configuration"]
    assert same[("model.kml_form", "protonet")] and not same[("model.kml_form", "mprotonet_kml")]
    assert (summary.loc[summary["same_configuration"], "delta_pct"] == 0).all()
    assert summary.set_index(["switch", "method"]).loc[("model.kml_form", "mprotonet_kml"), "n_seeds"] == 2
    table = (smoke / "results" / "tables" / "ablations.tex").read_text()
    assert "plumbing" in table and r"\textsuperscript{2}" in table  # the cells over two seeds
    assert (smoke / "results" / "figures" / "ablations.png").stat().st_size > 1000


@pytest.mark.slow
def test_smoke_run_is_complete_and_reports(smoke):
    # nothing left to do: every output is there and its params and code unchanged
    again = snakemake(smoke, "--dry-run", *SMOKE_RUN_ARGS)
    assert "Nothing to be done" in again.stdout + again.stderr
    rendered = snakemake(smoke, "--report", "results/report.html", *SMOKE_RUN_ARGS)
    assert "ERROR" not in rendered.stdout + rendered.stderr  # docutils reports a broken caption so
    html = (smoke / "results" / "report.html").read_text(errors="replace")
    assert (len(html) > 100_000 and "reproduction.png" in html and "summary.csv" in html
            and "claims.csv" in html)
    assert "transference_step_size.png" in html
    # every model was trained, and so evaluated and analysed, on the GPU's code path
    recorded = [yaml.safe_load(path.read_text())
                for path in (smoke / "results" / "models").rglob("config.yaml")]
    assert len(recorded) == 34 + 3  # the 1-shot half of the 68, and the second seed's three
    assert {config["train"]["task_batching"] for config in recorded} == {"vmap"}


@pytest.mark.slow
def test_smoke_one_changed_value_reruns_exactly_the_affected_jobs(smoke, tmp_path):
    overlay = tmp_path / "change.yaml"
    # one Multi-MAML member's inner lr: that member (both seeds), the multi_maml cells of the 3 settings with
    # FC100, and the accuracy and claims reports
    overlay.write_text(yaml.safe_dump(
        {"overrides": {"multi_member": {"maml": {"fc100": {"maml": {"inner_lr": 0.02}}}}}}))
    counts, outputs = dry_run(smoke, *SMOKE_RUN_ARGS, str(overlay))
    assert counts == {"train": 2, "evaluate": 3, "report_accuracy": 1, "report_claims": 1, "all": 1}, counts
    assert {f for f in outputs if f.endswith(".csv") and "/eval/" in f} == {
        f"results/eval/{s}/multi_maml/{k}shot.csv"
        for s in ("2mode_dagger", "3mode", "5mode") for k in SMOKE_SHOTS}


@pytest.mark.slow
def test_smoke_failed_training_leaves_nothing_trusted_and_resumes(smoke, tmp_path):
    """A training killed after its first checkpoint: no model.pt, the job is still due, and the next run
    continues from the checkpoint instead of starting over. In a copy, so the other tests' run stays as it
    is."""
    smoke = shutil.copytree(smoke, tmp_path / "copy", symlinks=True)
    run = "results/models/single/protonet/cub/1shot"
    overlay = tmp_path / "longer.yaml"
    longer = {"overrides": {"multi_member": {"protonet": {"cub": {"train": {"iterations": 400}}}}}}
    overlay.write_text(yaml.safe_dump(longer))
    args = (f"{run}/model.pt", "--cores", "1", *SMOKE_RUN_ARGS, str(overlay))
    process = subprocess.Popen([sys.executable, "-m", "snakemake", *args], cwd=smoke,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        # The finished 6-iteration run is set aside first (its final checkpoint is kept), then training
        # starts.
        checkpoints = smoke / run / "checkpoints"

        def started() -> bool:
            return any((smoke / run).glob("set-aside-*/checkpoints")) and any(checkpoints.glob("iter*.pt"))

        deadline = time.monotonic() + 300
        while not started() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started(), "the training never wrote its first checkpoint"
        # kill `kml train` itself, as an out-of-memory kill would: Snakemake sees its job fail
        trainers = [pid for pid in descendants(process.pid) if "kml train" in command_line(pid)]
        assert trainers
        for pid in trainers:
            os.kill(pid, signal.SIGKILL)
        assert process.wait(timeout=120) != 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert not (smoke / run / "model.pt").exists()
    assert any((smoke / run / "checkpoints").glob("iter*.pt"))
    counts, _ = dry_run(smoke, f"{run}/model.pt", *SMOKE_RUN_ARGS, str(overlay))
    assert counts == {"train": 1}
    snakemake(smoke, f"{run}/model.pt", "--cores", "1", *SMOKE_RUN_ARGS, str(overlay))
    log = (smoke / "logs" / "train" / "single" / "protonet" / "cub" / "1shot.log").read_text()
    assert f"resuming {run} from iteration" in log, log[-2000:]
    resumed_at = re.search(r"\|\s*(\d+)/400 \[", log)
    assert resumed_at and int(resumed_at.group(1)) >= PRESET["train"]["checkpoint_every"], log[-2000:]
    assert (smoke / run / "model.pt").exists()


def command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), so that the test only ever signals processes it started."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(child)
            queue.append(child)
    return found
