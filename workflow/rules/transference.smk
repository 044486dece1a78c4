# Transference (loss-ratio) analysis of the models of one setting at their training snapshots:
# results/transference/{method}/{shots}shot/iter{N}.csv, one row per (source task, target task); the run
# configuration beside them (run.yaml, from params as in train.smk).


if PLAN.transference:

    rule transference:
        input:
            snapshots=transference_snapshots,
            data=transference_data,
        output:
            config="results/transference/{method}/{shots}shot/run.yaml",
            csvs=transference_outputs(),
        params:
            run_config=transference_config,
            snapshots=lambda wildcards, input: repeated_option("--checkpoint", input.snapshots),
            out=lambda wildcards, output: Path(output.config).parent,
        log:
            "logs/transference/{method}/{shots}shot.log",
        threads: RES["transference"]["threads"]
        resources:
            mem_mb=RES["transference"]["mem_mb"],
            runtime=RES["transference"]["runtime"],
            gpu=RES["transference"]["gpu"],
        conda:
            "../../envs/train.yaml"
        shell:
            "printf '%s\\n' {params.run_config:q} > {output.config}"
            " && kml transference --config {output.config} {params.snapshots} --out-dir {params.out} > {log} 2>&1"
