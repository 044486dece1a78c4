# Meta-test evaluation: one table cell, results/eval/{setting}/{method}/{shots}shot.csv, per-task accuracies
# and their mean ± 95% CI per mode and overall; its run configuration beside it (.yaml, from params as in
# train.smk). Multi-* cells take one member model per mode of the setting.


rule evaluate:
    input:
        models=cell_models,
        data=cell_data,
    output:
        config=layout.cell_config(CELL),
        csv=layout.cell_csv(CELL),
    params:
        run_config=cell_config,
        models=lambda wildcards, input: repeated_option("--model", input.models),
    log:
        "logs/evaluate/{setting}/{method}/{shots}shot.log",
    threads: RES["evaluate"]["threads"]
    resources:
        mem_mb=RES["evaluate"]["mem_mb"],
        runtime=RES["evaluate"]["runtime"],
        gpu=RES["evaluate"]["gpu"],
    conda:
        "../../envs/train.yaml"
    shell:
        "printf '%s\\n' {params.run_config:q} > {output.config}"
        " && kml evaluate --config {output.config} {params.models} --out {output.csv} > {log} 2>&1"


# A variant's own cells, results/variants/{variant}/eval/...: on the same fixed test tasks as the default's.
if PLAN.variants:

    use rule evaluate as evaluate_variant with:
        input:
            models=own_cell_models("variant"),
            data=own_cell_data("variant"),
        output:
            config=layout.cell_config(CELL, VARIANT),
            csv=layout.cell_csv(CELL, VARIANT),
        params:
            run_config=own_cell_config("variant"),
            models=lambda wildcards, input: repeated_option("--model", input.models),
        log:
            "logs/variants/{variant}/evaluate/{setting}/{method}/{shots}shot.log",


# An ablation's own cells, results/ablations/{switch}/eval/...
if PLAN.ablations:

    use rule evaluate as evaluate_ablation with:
        input:
            models=own_cell_models("ablation"),
            data=own_cell_data("ablation"),
        output:
            config=layout.cell_config(CELL, ABLATION),
            csv=layout.cell_csv(CELL, ABLATION),
        params:
            run_config=own_cell_config("ablation"),
            models=lambda wildcards, input: repeated_option("--model", input.models),
        log:
            "logs/ablations/{switch}/evaluate/{setting}/{method}/{shots}shot.log",
