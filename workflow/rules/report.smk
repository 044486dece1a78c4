# Tables and figures, with the paper's numbers beside ours; every file is also part of
# `snakemake --report results/report.html` (captions: workflow/report/*.rst).


rule report_accuracy:
    input:
        cells=PLAN.cell_csvs,
    output:
        summary=report("results/summary.csv", caption="../report/summary.rst", category="Accuracy"),
        per_mode=report("results/per_mode.csv", caption="../report/per_mode.rst", category="Accuracy"),
        maml_table=report(
            "results/tables/maml_family.tex", caption="../report/maml_family.rst", category="Tables"
        ),
        protonet_table=report(
            "results/tables/protonet_family.tex", caption="../report/protonet_family.rst", category="Tables"
        ),
        reproduction_table=report(
            "results/tables/reproduction.tex", caption="../report/reproduction_table.rst", category="Tables"
        ),
        figure_pdf=report(
            "results/figures/reproduction.pdf", caption="../report/reproduction_figure.rst", category="Figures"
        ),
        figure_png=report(
            "results/figures/reproduction.png", caption="../report/reproduction_figure.rst", category="Figures"
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
        "kml report accuracy {input.cells} --out-dir results {params.note} > {log} 2>&1"


rule report_claims:
    input:
        cells=PLAN.cell_csvs,
    output:
        claims=report(CLAIMS_REPORT["claims"], caption="../report/claims.rst", category="Claims"),
        table=report(CLAIMS_REPORT["table"], caption="../report/claims_table.rst", category="Tables"),
        figure_pdf=report(CLAIMS_REPORT["figure_pdf"], caption="../report/claims_figure.rst", category="Claims"),
        figure_png=report(CLAIMS_REPORT["figure_png"], caption="../report/claims_figure.rst", category="Claims"),
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
        "kml report claims {input.cells} --out-dir results {params.note} > {log} 2>&1"


if PLAN.transference:

    rule report_transference:
        input:
            csvs=PLAN.transference_csvs,
        output:
            summary=report(
                "results/transference/summary.csv",
                caption="../report/transference_summary.rst",
                category="Transference",
            ),
            table=report(
                "results/tables/transference.tex",
                caption="../report/transference_table.rst",
                category="Tables",
            ),
            claims=report(
                "results/transference/claims.csv",
                caption="../report/transference_claims.rst",
                category="Transference",
            ),
            claims_table=report(
                "results/tables/transference_claims.tex",
                caption="../report/transference_claims_table.rst",
                category="Tables",
            ),
            figures=[
                report(path, caption=f"../report/transference_{name}.rst", category="Transference")
                for name, path in transference_figures()
            ],
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
            "kml report transference {input.csvs} --out-dir results {params.note} > {log} 2>&1"

    rule report_step_size:
        input:
            csvs=PLAN.step_size_sweep_csvs,
        output:
            sweep=report(
                PLAN.step_size_report["sweep"],
                caption="../report/transference_step_size_sweep.rst",
                category="Transference",
            ),
            figure_pdf=report(
                PLAN.step_size_report["figure_pdf"],
                caption="../report/transference_step_size.rst",
                category="Transference",
            ),
            figure_png=report(
                PLAN.step_size_report["figure_png"],
                caption="../report/transference_step_size.rst",
                category="Transference",
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
            "kml report step-size {input.csvs} --out-dir results {params.step_sizes} {params.note} > {log} 2>&1"
