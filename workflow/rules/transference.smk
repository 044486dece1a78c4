# Transference (loss-ratio) analysis of the models of one setting at their training snapshots:
# results/transference/{method}/{shots}shot/iter{N}.csv (-seed{S} after {shots}shot for each training seed
# after the first), one row per (source task, target task); the run configuration beside them (run.yaml, from
# params as in train.smk). The step-size sweep on the last snapshot of each first seed's model goes to
# results/transference/{method}/{shots}shot/step_size_sweep/ (`kml transference --sweep`).


if PLAN.transference:

    rule transference:
        input:
            snapshots=transference_snapshots,
            data=transference_data,
        output:
            config=f"{layout.transference_dir(TRANSFERENCE_RUN)}/{layout.RUN_YAML}",
            csvs=transference_outputs(),
        params:
            run_config=transference_config,
            snapshots=lambda wildcards, input: repeated_option("--checkpoint", input.snapshots),
            out=lambda wildcards, output: Path(output.config).parent,
            sweep="",
        log:
            "logs/transference/{analysed}.log",
        threads: RES["transference"]["threads"]
        resources:
            mem_mb=RES["transference"]["mem_mb"],
            runtime=RES["transference"]["runtime"],
            gpu=RES["transference"]["gpu"],
        conda:
            "../../envs/train.yaml"
        shell:
            "printf '%s\\n' {params.run_config:q} > {output.config}"
            " && kml transference --config {output.config} {params.snapshots} --out-dir {params.out}"
            " {params.sweep} > {log} 2>&1"

    use rule transference as transference_sweep with:
        input:
            snapshots=sweep_snapshot,
            data=transference_data,
        output:
            config=f"{layout.transference_dir(TRANSFERENCE_RUN, sweep=True)}/{layout.RUN_YAML}",
            csvs=sweep_output(),
        params:
            run_config=sweep_config,
            snapshots=lambda wildcards, input: repeated_option("--checkpoint", input.snapshots),
            out=lambda wildcards, output: Path(output.config).parent,
            sweep="--sweep",
        wildcard_constraints:
            analysed=alternation(run.name for run in PLAN.sweeping_runs),
        log:
            "logs/transference/{analysed}_step_size_sweep.log",
