# Tables and figures, with the paper's numbers beside ours; every file is also part of
# `snakemake --report results/report.html` (captions: workflow/report/*.rst).


rule report_accuracy:
    input:
        cells=PLAN.cell_csvs,
    output:
        **report_outputs(
            "accuracy",
            {
                "summary": ("summary", "Accuracy"),
                "per_mode": ("per_mode", "Accuracy"),
                "maml_table": ("maml_family", "Tables"),
                "protonet_table": ("protonet_family", "Tables"),
                "reproduction_table": ("reproduction_table", "Tables"),
                "figure": ("reproduction_figure", "Figures"),
            },
        ),
    params:
        note=note_option(),
    log:
        "logs/report/accuracy.log",
    threads: RES["report"]["threads"]
    resources:
        mem_mb=RES["report"]["mem_mb"],
        runtime=RES["report"]["runtime"],
    conda:
        "../../envs/report.yaml"
    shell:
        f"kml report accuracy {{input.cells}} --out-dir {layout.RESULTS_DIR} {{params.note}} > {{log}} 2>&1"


rule report_claims:
    input:
        cells=PLAN.cell_csvs,
    output:
        **report_outputs(
            "claims",
            {
                "claims": ("claims", "Claims"),
                "table": ("claims_table", "Tables"),
                "figure": ("claims_figure", "Claims"),
            },
        ),
    params:
        note=note_option(),
    log:
        "logs/report/claims.log",
    threads: RES["report"]["threads"]
    resources:
        mem_mb=RES["report"]["mem_mb"],
        runtime=RES["report"]["runtime"],
    conda:
        "../../envs/report.yaml"
    shell:
        f"kml report claims {{input.cells}} --out-dir {layout.RESULTS_DIR} {{params.note}} > {{log}} 2>&1"


if PLAN.transference:

    rule report_transference:
        input:
            csvs=PLAN.transference_csvs,
        output:
            **report_outputs(
                "transference",
                {
                    "summary": ("transference_summary", "Transference"),
                    "table": ("transference_table", "Tables"),
                    "claims": ("transference_claims", "Transference"),
                    "claims_table": ("transference_claims_table", "Tables"),
                    **{name: (f"transference_{name}", "Transference") for name in layout.TRANSFERENCE_FIGURES},
                },
            ),
        params:
            note=note_option(),
        log:
            "logs/report/transference.log",
        threads: RES["report"]["threads"]
        resources:
            mem_mb=RES["report"]["mem_mb"],
            runtime=RES["report"]["runtime"],
        conda:
            "../../envs/report.yaml"
        shell:
            f"kml report transference {{input.csvs}} --out-dir {layout.RESULTS_DIR} {{params.note}} > {{log}} 2>&1"

    rule report_step_size:
        input:
            csvs=PLAN.step_size_sweep_csvs,
        output:
            **report_outputs(
                "step_size",
                {
                    "sweep": ("transference_step_size_sweep", "Transference"),
                    "figure": ("transference_step_size", "Transference"),
                },
            ),
        params:
            step_sizes=PLAN.step_size_args(),
            note=note_option(),
        log:
            "logs/report/step_size.log",
        threads: RES["report"]["threads"]
        resources:
            mem_mb=RES["report"]["mem_mb"],
            runtime=RES["report"]["runtime"],
        conda:
            "../../envs/report.yaml"
        shell:
            f"kml report step-size {{input.csvs}} --out-dir {layout.RESULTS_DIR} {{params.step_sizes}} {{params.note}} > {{log}} 2>&1"


# A variant's cells beside the default ones and the paper's: results/variants/{variant}/summary.csv and
# tables/variant.tex.
if PLAN.variants:

    rule report_variant:
        input:
            unpack(variant_report_inputs),
        output:
            **{
                name: report(path, caption=f"../report/variant_{name}.rst", category="Variants")
                for name, path in layout.report_files("variant", VARIANT).items()
            },
        params:
            out_dir=lambda wildcards: layout.variant_dir(wildcards.variant),
            note=note_option(),
        log:
            "logs/report/variant_{variant}.log",
        threads: RES["report"]["threads"]
        resources:
            mem_mb=RES["report"]["mem_mb"],
            runtime=RES["report"]["runtime"],
        conda:
            "../../envs/report.yaml"
        shell:
            "kml report variant {input.cells} --default {input.default} --variant {wildcards.variant}"
            " --out-dir {params.out_dir} {params.note} > {log} 2>&1"


# Every ablation's cells paired with the default cells: results/ablations/summary.csv, tables/ablations.tex,
# figures/ablations.{pdf,png}.
if PLAN.ablations:

    rule report_ablations:
        input:
            cells=PLAN.ablation_report_cells,
        output:
            **report_outputs(
                "ablations",
                {
                    "summary": ("ablations_summary", "Ablations"),
                    "table": ("ablations_table", "Ablations"),
                    "figure": ("ablations_figure", "Ablations"),
                },
            ),
        params:
            cells=PLAN.ablation_report_args(),
            note=note_option(),
        log:
            "logs/report/ablations.log",
        threads: RES["report"]["threads"]
        resources:
            mem_mb=RES["report"]["mem_mb"],
            runtime=RES["report"]["runtime"],
        conda:
            "../../envs/report.yaml"
        shell:
            f"kml report ablations {{params.cells}} --out-dir {layout.RESULTS_DIR} {{params.note}} > {{log}} 2>&1"
