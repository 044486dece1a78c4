# Helpers shared by the rules: the plan (kml/plan.py) and small functions that hand its answers to rules.

import os
from pathlib import Path
import shlex
import sys

# The checkout's kml/plan.py, also when Snakemake runs from an environment without the package installed.
sys.path.insert(0, str(workflow.basedir))
from kml import KmlError, gpus, layout  # noqa: E402
from kml.plan import Plan, alternation, to_yaml  # noqa: E402

# Checks every value (naming the configuration file a bad one came from) and composes every job. A bad value
# is one line: a traceback would only bury it.
MERGED_FILES = [f for f in workflow.configfiles if f not in workflow.overwrite_configfiles]
try:
    PLAN = Plan(config, [*MERGED_FILES, *workflow.overwrite_configfiles])
except KmlError as error:
    sys.exit(f"Error in the configuration: {error}")
RES = PLAN.config["resources"]
# GPU-sized work started here on a machine without a GPU (a cluster executor's jobs run elsewhere).
if workflow.local_exec and not workflow.remote_exec and not gpus.gpu_visible():
    _on_gpu = PLAN.gpu_trainings()
    _iterations = sum(t.run_config["train"]["iterations"] for t in _on_gpu)
    if _iterations >= gpus.GPU_SCALE_ITERATIONS:
        print(gpus.no_gpu_warning(_iterations, len(_on_gpu), Path(workflow.basedir) / layout.BENCH_RESULTS),
              file=sys.stderr)
# envs/*.yaml install this checkout into each conda environment (`--sdm conda`): pip expands ${KML_ROOT}.
os.environ.setdefault("KML_ROOT", str(workflow.basedir))


wildcard_constraints:
    setting=alternation(PLAN.settings),
    method=alternation(PLAN.methods),
    shots=r"\d+",
    dataset=alternation(PLAN.datasets),
    size=r"\d+",
    variant=alternation(PLAN.variants),
    switch=alternation(PLAN.ablations),
    analysed=alternation(PLAN.transference),


# The wildcard patterns of a run folder, a table cell and a transference analysis (kml/layout.py names them).
RUN = "{run}"
CELL = "{setting}/{method}/{shots}shot"
TRANSFERENCE_RUN = "{analysed}"  # {method}/{shots}shot, -seed{S} for a seed after the first
VARIANT = layout.variant_dir("{variant}")  # a variant's folder: its own models/ and eval/
ABLATION = layout.ablation_dir("{switch}")  # an ablation's folder (one switch flipped alone), the same


# ---- run configurations: a job writes its own from its params, so a changed value reruns exactly it -------


def training_config(wildcards):
    return to_yaml(PLAN.training(wildcards.run).run_config)


def cell_config(wildcards):
    return to_yaml(PLAN.cell(wildcards.setting, wildcards.method, wildcards.shots).run_config)


def transference_config(wildcards):
    return to_yaml(PLAN.transference_run(wildcards.analysed).run_config)


def sweep_config(wildcards):
    return to_yaml(PLAN.transference_run(wildcards.analysed).sweep_run_config)


def own_training_config(kind):
    """A variant's or an ablation's own training's run configuration (`kind` as in own_training)."""
    return lambda wildcards: to_yaml(own_training(kind, wildcards).run_config)


def own_cell_config(kind):
    return lambda wildcards: to_yaml(own_cell(kind, wildcards).run_config)


# ---- inputs and outputs ------------------------------------------------------------------------------------


def training_names(with_snapshots):
    """Regex of the trainings that publish transference snapshots (True) or do not (False)."""
    return alternation(n for n, t in PLAN.trainings.items() if bool(t.snapshots) == with_snapshots)


def snapshot_outputs():
    return [layout.snapshot_file("{run}", n) for n in PLAN.transference_checkpoints]


def training_data(wildcards):
    return PLAN.training(wildcards.run).data_files


def cell_models(wildcards):
    return PLAN.cell(wildcards.setting, wildcards.method, wildcards.shots).models


def cell_data(wildcards):
    return PLAN.cell(wildcards.setting, wildcards.method, wildcards.shots).data_files


def transference_outputs():
    folder = layout.transference_dir(TRANSFERENCE_RUN)
    return [f"{folder}/{layout.ratio_csv_name(n)}" for n in PLAN.transference_checkpoints]


def transference_snapshots(wildcards):
    return PLAN.transference_run(wildcards.analysed).training.snapshot_files


def sweep_output():
    last = max(PLAN.transference_checkpoints)
    return f"{layout.transference_dir(TRANSFERENCE_RUN, sweep=True)}/{layout.ratio_csv_name(last)}"


def sweep_snapshot(wildcards):
    return [PLAN.transference_run(wildcards.analysed).sweep_snapshot]


def transference_data(wildcards):
    return PLAN.transference_run(wildcards.analysed).data_files


# A variant's or an ablation's own jobs (kml/plan.py, Plan.composed): `kind` "variant" names it by the
# {variant} wildcard, "ablation" by {switch}.
COMPOSED_WILDCARD = {"variant": "variant", "ablation": "switch"}


def own_training(kind, wildcards):
    return PLAN.own_training(kind, wildcards[COMPOSED_WILDCARD[kind]], wildcards.run)


def own_cell(kind, wildcards):
    name = wildcards[COMPOSED_WILDCARD[kind]]
    return PLAN.own_cell(kind, name, wildcards.setting, wildcards.method, wildcards.shots)


def own_training_names(kind):
    """Regex of every variant's (or ablation's) own trainings (the rule's wildcard says whose)."""
    composed = PLAN.variants if kind == "variant" else PLAN.ablations
    return alternation(n for v in composed.values() for n in v.trainings)


def own_training_data(kind):
    return lambda wildcards: own_training(kind, wildcards).data_files


def own_cell_models(kind):
    return lambda wildcards: own_cell(kind, wildcards).models


def own_cell_data(kind):
    return lambda wildcards: own_cell(kind, wildcards).data_files


def variant_report_inputs(wildcards):
    """A variant's cells (its own, or the default one where it changes nothing) and their default cells."""
    variant = PLAN.variant(wildcards.variant)
    return {"cells": [c.csv for c in variant.cells.values()],
            "default": [PLAN.cells[name].csv for name in variant.cells]}


def report_outputs(name, captions):
    """The files of `kml report {name}` (kml/layout.py), each with its caption and category in the HTML report;
    `captions` maps an output's name (a figure's without _pdf/_png) to (caption file stem, category)."""
    outputs = {}
    for key, path in PLAN.report_files(name).items():
        caption, category = captions[key.removesuffix("_pdf").removesuffix("_png")]
        outputs[key] = report(path, caption=f"../report/{caption}.rst", category=category)
    return outputs


# ---- command-line options ----------------------------------------------------------------------------------


def repeated_option(option, paths):
    """`--model a --model b`: one option per path, shell-quoted."""
    return " ".join(f"{option} {shlex.quote(str(path))}" for path in paths)


def note_option():
    note = PLAN.config["report"]["note"]
    return shlex.join(["--note", note]) if note else ""
