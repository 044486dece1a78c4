#!/usr/bin/env bash
# The step-size study behind transference.step_size (docs/transference.md, "How α was chosen").
#
#   benchmarks/transference_step_size.sh [MINIIMAGENET_DIR] [OUT]
#
# MINIIMAGENET_DIR: a folder with the Ravi & Larochelle CSVs (train.csv, val.csv, test.csv) and an images/
# folder holding any subset of their JPEGs, at least 20 per class (5-shot tasks with 15 queries); the CSVs are
# cut to the images present. Without it, `kml synth` makes a synthetic mini-ImageNet. FC100 (the target
# mode) is always `kml synth`'s synthetic CIFAR-100. OUT defaults to build/step_size_study.
#
# 1. Trains on 2Mode-dagger (mini-ImageNet + FC100) at 32 px with the paper's networks (channels
#    32-64-128-256, second-order MAML) for 300 iterations: the ProtoNet family 1- and 5-shot, the MAML family
#    1-shot (second-order MAML costs about ten times as much on a CPU).
# 2. Runs the step-size sweep (`kml transference --sweep`) on each model's last snapshot and its report:
#    OUT/results/transference/step_size_sweep.csv, OUT/results/figures/transference_step_size.{pdf,png}.
# 3. Runs the analysis under the old Adam lookahead and under the default, on the last 1-shot snapshots of
#    ProtoNet and MProtoNet+KML: OUT/results/lookahead_{adam,sgd}/transference/summary.csv.
#
# Each step is skipped when its output exists, so an interrupted run continues. CPU only: about 3 hours on
# 2 cores.
set -euo pipefail

MINI=${1:-}
OUT=${2:-build/step_size_study}
RUNS="protonet:1 mprotonet:1 mprotonet_kml:1 protonet:5 mprotonet:5 mprotonet_kml:5 maml:1 mmaml:1 mmaml_kml:1"
ITERATIONS=300
SIZE=32
# Smaller than transference.sweep's defaults (50 x 5 at 9 step sizes), for CPU time.
SWEEP="sweep: {sources: 20, targets: 5, step_sizes: [1.0e-5, 1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2]}"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}

mkdir -p "$OUT/raw" "$OUT/processed" "$OUT/configs"
OUT=$(cd "$OUT" && pwd)
MINI_H5=$OUT/processed/miniimagenet-$SIZE.h5
FC100_H5=$OUT/processed/fc100-$SIZE.h5

# ---- data ------------------------------------------------------------------------------------------------
if [[ ! -f $MINI_H5 ]]; then
    rm -rf "$OUT/raw/miniimagenet"
    if [[ -n $MINI ]]; then
        mkdir -p "$OUT/raw/miniimagenet"
        ls "$MINI/images" > "$OUT/raw/present.txt"
        for split in train val test; do  # prepare rejects a CSV row whose image is missing
            { head -n 1 "$MINI/$split.csv"; grep -F -f "$OUT/raw/present.txt" "$MINI/$split.csv"; } \
                > "$OUT/raw/miniimagenet/$split.csv"
        done
        ln -s "$(cd "$MINI/images" && pwd)" "$OUT/raw/miniimagenet/images"
    else
        kml synth miniimagenet --out "$OUT/raw/miniimagenet"
    fi
    kml prepare miniimagenet --raw "$OUT/raw" --out "$MINI_H5" --image-size $SIZE --workers 2
fi
if [[ ! -f $FC100_H5 ]]; then
    kml synth fc100 --out "$OUT/raw/fc100"
    kml prepare fc100 --raw "$OUT/raw" --out "$FC100_H5" --image-size $SIZE --workers 2
fi

config() {  # config METHOD SHOTS [TRANSFERENCE]: one model's run configuration (kml/config.py)
    cat <<EOF
method: $1
modes: [miniimagenet, fc100]
setting: 2mode_dagger
task: {ways: 5, shots: $2, queries: 15}
data: {files: {miniimagenet: $MINI_H5, fc100: $FC100_H5}}
model: {channels: [32, 64, 128, 256], image_size: $SIZE, embedding_dim: 128}
train: {iterations: $ITERATIONS, meta_batch_size: 10, seed: 0, device: cpu, checkpoint_every: 100,
        log_every: 50, extra_checkpoints: [100, $ITERATIONS]}
transference: {${3:-}}
EOF
}
snapshot() {  # snapshot METHOD SHOTS: the model's last snapshot
    printf '%s/models/%s/%sshot/snapshots/iter%06d.pt' "$OUT" "$1" "$2" $ITERATIONS
}

# ---- 1. training -------------------------------------------------------------------------------------------
for run in $RUNS; do
    method=${run%:*} shots=${run#*:}
    config "$method" "$shots" > "$OUT/configs/$method-${shots}shot.yaml"
    [[ -f $OUT/models/$method/${shots}shot/model.pt ]] ||
        kml train --config "$OUT/configs/$method-${shots}shot.yaml" --out "$OUT/models/$method/${shots}shot"
done

# ---- 2. the step-size sweep ----------------------------------------------------------------------------------
sweeps=()
for run in $RUNS; do
    method=${run%:*} shots=${run#*:}
    out=$OUT/sweep/$method/${shots}shot
    config "$method" "$shots" "$SWEEP" > "$OUT/configs/$method-${shots}shot-sweep.yaml"
    [[ -f $out/iter$ITERATIONS.csv ]] || kml transference --config "$OUT/configs/$method-${shots}shot-sweep.yaml" \
        --checkpoint "$(snapshot "$method" "$shots")" --out-dir "$out" --sweep
    sweeps+=("$out/iter$ITERATIONS.csv")
done
defaults=$(python -c 'from kml.config import FamilyStepSizes as F; print(f"maml={F().maml} protonet={F().protonet}")')
kml report step-size "${sweeps[@]}" --out-dir "$OUT/results" $(printf -- '--step-size %s ' $defaults)

# ---- 3. the old Adam lookahead against the default -----------------------------------------------------------
for lookahead in adam sgd; do
    csvs=()
    for method in protonet mprotonet_kml; do
        out=$OUT/lookahead/$lookahead/$method
        config "$method" 1 "sources: 100, targets: 5, lookahead: $lookahead" > "$OUT/configs/$method-$lookahead.yaml"
        [[ -f $out/iter$ITERATIONS.csv ]] || kml transference --config "$OUT/configs/$method-$lookahead.yaml" \
            --checkpoint "$(snapshot "$method" 1)" --out-dir "$out"
        csvs+=("$out/iter$ITERATIONS.csv")
    done
    kml report transference "${csvs[@]}" --out-dir "$OUT/results/lookahead_$lookahead"
done
