"""Where every file lives: the one owner of file and folder names.

The workflow's rules declare their outputs with these functions (called with wildcard patterns such as
"{run}"), kml/plan.py names each job's files with the same functions (called with values), and the commands
name what they write in a folder they are given (a run folder, `--out-dir`) with the same constants. A name
changed here changes everywhere at once. Nothing here imports torch: the reports use it too.

    data/synth/{dataset}/                                 synthetic archives + SHA256SUMS (`kml synth`)
    data/raw/{dataset}/                                   official archives (`kml download`)
    data/processed/{dataset}-{size}.h5                    prepared images (`kml prepare`)
    results/models/{run}/                                 a run folder of `kml train` (RUN_FILES); {run} is
                                                          {setting}/{method}/{shots}shot (a joint model) or
                                                          single/{family}/{mode}/{shots}shot (a Multi-*
                                                          member), with -seed{S} for each seed after the first
    results/eval/{setting}/{method}/{shots}shot.csv       a table cell (`kml evaluate`), its config beside it
    results/transference/{method}/{shots}shot/iter{N}.csv loss ratios at snapshot N (`kml transference`);
                                                          -seed{S} after {shots}shot as for the trainings
        .../step_size_sweep/iter{N}.csv                   the step-size sweep on the last snapshot
    results/variants/{variant}/{models,eval}/...          a variant's own trainings and cells
                                                          (kml/variants.py), named as above; its reports
    results/ablations/{switch}/{models,eval}/...          one switch flipped alone (config.yaml `ablations`),
                                                          {switch} its dotted key, e.g. model.kml_form
    data/processed/fc100-{size}-negative.h5               colour-negative FC100 for a variant, when the
                                                          workflow's own FC100 file is not negative
    results/{summary,per_mode,claims}.csv, results/tables/, results/figures/, results/transference/*.csv
                                                          the reports (REPORTS), written by `kml report`
"""

from __future__ import annotations

import re
from pathlib import Path

RAW_DIR = "data/raw"
PROCESSED_DIR = "data/processed"
SYNTH_DIR = "data/synth"
RESULTS_DIR = "results"
MODELS = "models"  # under results/ or a variant_dir
EVAL = "eval"
TRANSFERENCE_DIR = f"{RESULTS_DIR}/transference"
VARIANTS_DIR = f"{RESULTS_DIR}/variants"
ABLATIONS_DIR = f"{RESULTS_DIR}/ablations"
BENCH_RESULTS = "benchmarks/results.csv"  # `kml bench`, committed with the measurements of record

# ---- a run folder (`kml train --out DIR`) ------------------------------------------------------------------
# The run configuration the workflow hands to a job; `kml train` records the validated one as RECORDED_CONFIG.
RUN_YAML = "run.yaml"
RECORDED_CONFIG = "config.yaml"
LOG = "log.csv"
CHECKPOINTS = "checkpoints"
SNAPSHOTS = "snapshots"
MODEL = "model.pt"
RUN_FILES = (RECORDED_CONFIG, LOG, CHECKPOINTS, SNAPSHOTS, MODEL)


def checkpoint_name(iteration: int) -> str:
    """A checkpoint's file name, in checkpoints/ and (train.extra_checkpoints) in snapshots/ alike."""
    return f"iter{iteration:06d}.pt"


def checkpoint_iteration(file_name: str) -> int | None:
    """The iteration of a checkpoint_name; None for any other file."""
    match = re.fullmatch(r"iter(\d{6,})\.pt", file_name)
    return int(match.group(1)) if match else None


NEGATIVE = "-negative"


def processed_file(dataset: str, image_size: int | str, negative: bool = False) -> str:
    """`negative`: FC100 prepared as colour negatives for a variant (`kml prepare --fc100-negative`)."""
    return f"{PROCESSED_DIR}/{dataset}-{image_size}{NEGATIVE if negative else ''}.h5"


def is_negative_file(path: str) -> bool:
    """Whether a processed_file is a colour-negative one."""
    return Path(path).stem.endswith(NEGATIVE)


def variant_dir(variant: str) -> str:
    """A variant's folder: its own models/ and eval/ (as under results/) and its reports."""
    return f"{VARIANTS_DIR}/{variant}"


def ablation_dir(switch: str) -> str:
    """One switch's ablation folder: its own models/ and eval/ (as under results/); `switch` is its dotted key
    (kml/variants.py, SWITCHES), a safe folder name."""
    return f"{ABLATIONS_DIR}/{switch}"


def seeded(name: str, seed: int) -> str:
    """A training's (or transference analysis's) name for a seed of `train.seeds` after the first; the first
    seed's keeps the plain name, so that adding seeds moves nothing already trained."""
    return f"{name}-seed{seed}"


def training_dir(run: str, root: str = RESULTS_DIR) -> str:
    """`root`: results/, a variant_dir or an ablation_dir."""
    return f"{root}/{MODELS}/{run}"


def snapshot_file(run: str, iteration: int) -> str:
    return f"{training_dir(run)}/{SNAPSHOTS}/{checkpoint_name(iteration)}"


def cell_csv(cell: str, root: str = RESULTS_DIR) -> str:
    """`cell` is "{setting}/{method}/{shots}shot"; `root` results/, a variant_dir or an ablation_dir."""
    return f"{root}/{EVAL}/{cell}.csv"


def cell_config(cell: str, root: str = RESULTS_DIR) -> str:
    return f"{root}/{EVAL}/{cell}.yaml"


# ---- transference (`kml transference --out-dir DIR`) -------------------------------------------------------
STEP_SIZE_SWEEP_DIR = "step_size_sweep"


def ratio_csv_name(iteration: int) -> str:
    """The loss ratios of the snapshot of `iteration` (unpadded, unlike checkpoint_name)."""
    return f"iter{iteration}.csv"


def transference_dir(analysed: str, sweep: bool = False) -> str:
    """`analysed` is "{method}/{shots}shot"; the step-size sweep's folder is inside the analysis's."""
    folder = f"{TRANSFERENCE_DIR}/{analysed}"
    return f"{folder}/{STEP_SIZE_SWEEP_DIR}" if sweep else folder


# ---- the reports (`kml report ... --out-dir DIR`), relative to DIR -----------------------------------------
TRANSFERENCE_FIGURES = ("histograms", "checkpoints", "single_target", "per_target", "kml")


def _figure(name: str, key: str = "figure") -> dict[str, str]:
    """figures/{name}.pdf and .png, as {key}_pdf and {key}_png."""
    return {f"{key}_{ext}": f"figures/{name}.{ext}" for ext in ("pdf", "png")}


REPORTS: dict[str, dict[str, str]] = {
    "accuracy": {
        "summary": "summary.csv",
        "per_mode": "per_mode.csv",
        "maml_table": "tables/maml_family.tex",
        "protonet_table": "tables/protonet_family.tex",
        "reproduction_table": "tables/reproduction.tex",
        **_figure("reproduction"),
    },
    "claims": {
        "claims": "claims.csv",
        "table": "tables/claims.tex",
        **_figure("claims"),
    },
    "transference": {
        "summary": "transference/summary.csv",
        "table": "tables/transference.tex",
        "claims": "transference/claims.csv",
        "claims_table": "tables/transference_claims.tex",
        **{key: path for name in TRANSFERENCE_FIGURES
           for key, path in _figure(f"transference_{name}", name).items()},
    },
    "step_size": {
        "sweep": "transference/step_size_sweep.csv",
        **_figure("transference_step_size"),
    },
    # under a variant_dir: the variant's cells beside the default's and the paper's
    "variant": {
        "summary": "summary.csv",
        "table": "tables/variant.tex",
    },
    # every ablation (one switch flipped alone) paired with the default cells
    "ablations": {
        "summary": "ablations/summary.csv",
        "table": "tables/ablations.tex",
        **_figure("ablations"),
    },
}


def report_files(report: str, out_dir: str = RESULTS_DIR) -> dict[str, str]:
    """The files `kml report {report}` writes under out_dir, by name."""
    return {name: f"{out_dir}/{path}" for name, path in REPORTS[report].items()}


def report_path(out_dir: Path, report: str, name: str) -> Path:
    """One file of `kml report {report} --out-dir out_dir`, its folder made."""
    path = Path(out_dir) / REPORTS[report][name]
    path.parent.mkdir(parents=True, exist_ok=True)
    return path
