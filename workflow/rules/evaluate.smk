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
