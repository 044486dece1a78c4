# Meta-training: results/models/{setting}/{method}/{shots}shot/ (joint) and
# results/models/single/{family}/{mode}/{shots}shot/ (Multi-* members, shared between settings); a training seed
# after the first of train.seeds appends -seed{S} (kml/layout.py, seeded).
#
# The job writes its run configuration (run.yaml, composed from config.yaml by kml/plan.py) from its params,
# which hold exactly the values that can change this training: Snakemake retrains when one of them changes.
# The other declared outputs appear only when `kml train` succeeds (model.pt last); its resume state in
# checkpoints/ is never declared, so it survives a failure and a retry (or a later run) continues from it. It
# is kept after success too: if Snakemake deletes model.pt (it lost track of the job), the rerun publishes it
# again without training. When a changed value reruns the job, `--on-config-change set-aside` moves the old
# configuration's run into a set-aside-* folder inside the run folder (kept; the log says so).


rule train:
    input:
        data=training_data,
    output:
        config=f"{layout.training_dir(RUN)}/{layout.RUN_YAML}",
        model=f"{layout.training_dir(RUN)}/{layout.MODEL}",
    params:
        run_config=training_config,
        out=lambda wildcards, output: Path(output.model).parent,
    wildcard_constraints:
        run=training_names(with_snapshots=False),
    log:
        "logs/train/{run}.log",
    benchmark:
        "results/benchmarks/train/{run}.tsv"
    threads: RES["train"]["threads"]
    resources:
        mem_mb=RES["train"]["mem_mb"],
        runtime=RES["train"]["runtime"],
        gpu=RES["train"]["gpu"],
    retries: RES["train"]["retries"]
    conda:
        "../../envs/train.yaml"
    shell:
        "printf '%s\\n' {params.run_config:q} > {output.config}"
        " && kml train --config {output.config} --out {params.out} --on-config-change set-aside > {log} 2>&1"


# The models the transference analysis reads also publish snapshots/iter{N:06d}.pt.
use rule train as train_with_snapshots with:
    output:
        config=f"{layout.training_dir(RUN)}/{layout.RUN_YAML}",
        model=f"{layout.training_dir(RUN)}/{layout.MODEL}",
        snapshots=snapshot_outputs(),
    wildcard_constraints:
        run=training_names(with_snapshots=True),


# A variant's own trainings (kml/variants.py): those whose configuration its switches change, under
# results/variants/{variant}/models/{run}/; the others are the default trainings above. No snapshots.
if PLAN.variants:

    use rule train as train_variant with:
        input:
            data=own_training_data("variant"),
        output:
            config=f"{layout.training_dir(RUN, VARIANT)}/{layout.RUN_YAML}",
            model=f"{layout.training_dir(RUN, VARIANT)}/{layout.MODEL}",
        params:
            run_config=own_training_config("variant"),
            out=lambda wildcards, output: Path(output.model).parent,
        wildcard_constraints:
            run=own_training_names("variant"),
        log:
            "logs/variants/{variant}/train/{run}.log",
        benchmark:
            "results/benchmarks/variants/{variant}/train/{run}.tsv"


# An ablation's own trainings (one switch flipped alone): results/ablations/{switch}/models/{run}/.
if PLAN.ablations:

    use rule train as train_ablation with:
        input:
            data=own_training_data("ablation"),
        output:
            config=f"{layout.training_dir(RUN, ABLATION)}/{layout.RUN_YAML}",
            model=f"{layout.training_dir(RUN, ABLATION)}/{layout.MODEL}",
        params:
            run_config=own_training_config("ablation"),
            out=lambda wildcards, output: Path(output.model).parent,
        wildcard_constraints:
            run=own_training_names("ablation"),
        log:
            "logs/ablations/{switch}/train/{run}.log",
        benchmark:
            "results/benchmarks/ablations/{switch}/train/{run}.tsv"
