# kml: the whole reproduction of "Revisit Multimodal Meta-Learning through the Lens of Multi-Task Learning"
# (KML, NeurIPS 2021) and its baselines: download -> prepare -> train -> evaluate -> transference -> report.
#
#   snakemake --cores 8                                          every table cell, table, figure
#   snakemake --cores 8 results/eval/2mode/mmaml_kml/5shot.csv   one cell and only what it needs
#   snakemake --cores 2 --configfile presets/smoke.yaml          the whole DAG on synthetic data, minutes
#   snakemake --report results/report.html                       the tables and figures, with captions
#
# Which jobs exist and the run configuration of each come from kml/plan.py; the rules only wire files to
# `kml` commands. Paths: docs/ARCHITECTURE.md and kml/plan.py.

from snakemake.utils import min_version

min_version("9.0")


# Validated by kml/workflow_config.py when workflow/rules/common.smk builds the plan.
configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/transference.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        PLAN.all_targets(),
