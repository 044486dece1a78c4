# Official archives -> data/raw/{dataset}/ (verified by checksum) -> data/processed/{dataset}-{size}.h5.


if PLAN.synthesize:

    # Testing only (presets/smoke.yaml): tiny archives in each dataset's official format, plus their
    # SHA256SUMS, as a local mirror for the real download rule.
    rule synth:
        output:
            checksums=f"{layout.SYNTH_DIR}/{{dataset}}/SHA256SUMS",
        params:
            out=lambda wildcards, output: Path(output.checksums).parent,
        log:
            "logs/synth/{dataset}.log",
        threads: 1
        resources:
            mem_mb=RES["download"]["mem_mb"],
            runtime=RES["download"]["runtime"],
        conda:
            "../../envs/data.yaml"
        shell:
            "kml synth {wildcards.dataset} --out {params.out} > {log} 2>&1"


# The flag appears only after every file is in place and verified. Files stay where they are when the job
# fails (a rerun resumes and verifies them), which declaring the archives themselves would not allow.
rule download:
    input:
        f"{layout.SYNTH_DIR}/{{dataset}}/SHA256SUMS" if PLAN.synthesize else [],
    output:
        touch(f"{layout.RAW_DIR}/{{dataset}}/download.done"),
    params:
        options=lambda wildcards: PLAN.download_args(wildcards.dataset),
    log:
        "logs/download/{dataset}.log",
    threads: RES["download"]["threads"]
    resources:
        mem_mb=RES["download"]["mem_mb"],
        runtime=RES["download"]["runtime"],
    conda:
        "../../envs/data.yaml"
    shell:
        f"kml download {{wildcards.dataset}} --root {layout.RAW_DIR} {{params.options}} > {{log}} 2>&1"


rule prepare:
    input:
        # The archives are identified by their checksums: downloading again (another mirror) changes nothing.
        ancient(f"{layout.RAW_DIR}/{{dataset}}/download.done"),
    output:
        layout.processed_file("{dataset}", "{size}"),
    params:
        options=lambda wildcards: PLAN.prepare_args(wildcards.dataset),
    log:
        "logs/prepare/{dataset}-{size}.log",
    threads: RES["prepare"]["threads"]
    resources:
        mem_mb=RES["prepare"]["mem_mb"],
        runtime=RES["prepare"]["runtime"],
    conda:
        "../../envs/data.yaml"
    shell:
        f"kml prepare {{wildcards.dataset}} --raw {layout.RAW_DIR} --out {{output}} --image-size {{wildcards.size}}"
        f" --workers {{threads}} {{params.options}} > {{log}} 2>&1"


# A variant's colour-negative FC100 (prepare.fc100_negative), when the workflow's own FC100 file is not.
if PLAN.negative_fc100_files:

    use rule prepare as prepare_fc100_negative with:
        output:
            layout.processed_file("{dataset}", "{size}", negative=True),
        params:
            options=lambda wildcards: PLAN.prepare_args(wildcards.dataset, negative=True),
        wildcard_constraints:
            dataset="fc100",
        log:
            "logs/prepare/{dataset}-{size}-negative.log",
