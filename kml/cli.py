"""The `kml` command: argument parsing only; every subcommand calls one function of the package."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kml import MODES, Interrupted, KmlError, __version__, layout
from kml.method_table import FAMILY_LABELS

if TYPE_CHECKING:
    from kml.bench import WorkflowPlan

DATASETS = MODES
DESCRIPTION = """\
Reproduce "Revisit Multimodal Meta-Learning through the Lens of Multi-Task
Learning" (Kernel Modulation, NeurIPS 2021): fetch and prepare the five datasets,
meta-train and evaluate the eight methods, analyse transference, and write the
paper's tables and figures beside the paper's numbers.

Snakemake runs it all (`snakemake --cores 8`; see README.md). Every step also
runs by hand, in this order: download, prepare, train, evaluate, transference,
report. `kml COMMAND --help` describes each.
"""


def _download(args: argparse.Namespace) -> None:
    from kml.data.download import download_dataset

    download_dataset(args.dataset, root=args.root, mirror=args.mirror, expected_checksums=args.checksums,
                     variant=args.variant)


def _prepare(args: argparse.Namespace) -> None:
    from kml.data.prepare import prepare_dataset

    # Left out unless given, so that prepare's split rule (OMNIGLOT_TRAIN_CLASSES) stays the one default.
    given = args.omniglot_train_classes
    split = {} if given is None else {"omniglot_train_classes": given}
    prepare_dataset(args.dataset, raw=args.raw, out=args.out, image_size=args.image_size,
                    fc100_negative=args.fc100_negative, workers=args.workers, **split)


def _synth(args: argparse.Namespace) -> None:
    from kml.data.synth import CHECKSUMS_FILE, make_synthetic
    from kml.files import format_bytes

    for path in make_synthetic(args.dataset, out=args.out, seed=args.seed):
        print(f"wrote {path} ({format_bytes(path.stat().st_size)})")
    print(f"wrote their sha256 to {args.out / CHECKSUMS_FILE}; fetch them with `kml download {args.dataset} "
          f"--mirror {args.out} --checksums {args.out / CHECKSUMS_FILE}`")


def _inspect(args: argparse.Namespace) -> None:
    from kml.data.hdf5 import describe

    print(describe(args.file))


def _info(args: argparse.Namespace) -> None:
    from kml.methods.registry import describe_parameters

    print(describe_parameters(channels=tuple(args.channels), image_size=args.image_size, ways=args.ways))


def _train(args: argparse.Namespace) -> None:
    from kml.config import load_run_config
    from kml.train import train

    train(load_run_config(args.config), out=args.out, on_config_change=args.on_config_change)


def _evaluate(args: argparse.Namespace) -> None:
    from kml.config import load_run_config
    from kml.evaluate import evaluate

    evaluate(load_run_config(args.config), models=args.model, out=args.out)


def _transference(args: argparse.Namespace) -> None:
    from kml.config import load_run_config
    from kml.transference import run_transference

    run_transference(load_run_config(args.config), checkpoints=args.checkpoint, out_dir=args.out_dir,
                     sweep=args.sweep)


def _report_transference(args: argparse.Namespace) -> None:
    from kml.report import report_transference

    report_transference(args.csvs, out_dir=args.out_dir, note=args.note)


def _report_step_size(args: argparse.Namespace) -> None:
    from kml.report.step_size import report_step_size

    report_step_size(args.csvs, out_dir=args.out_dir, configured=dict(args.step_size or []), note=args.note)


def _family_step_size(text: str) -> tuple[str, float]:
    """FAMILY=ALPHA, as `kml report step-size --step-size` takes it."""
    family, _, value = text.partition("=")
    try:
        alpha = float(value)
    except ValueError:
        alpha = float("nan")
    if family not in FAMILY_LABELS or not alpha > 0:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give FAMILY=ALPHA with FAMILY {' or '.join(FAMILY_LABELS)} and ALPHA > 0, "
            "e.g. protonet=0.01")
    return family, alpha


def _report_accuracy(args: argparse.Namespace) -> None:
    from kml.report import report_accuracy

    report_accuracy(args.cells, out_dir=args.out_dir, note=args.note)


def _report_variant(args: argparse.Namespace) -> None:
    from kml.report.variant import report_variant

    report_variant(args.default, args.cells, args.variant, out_dir=args.out_dir, note=args.note)


def _report_ablations(args: argparse.Namespace) -> None:
    from kml.report.ablations import report_ablations

    report_ablations(args.ablation, args.default, out_dir=args.out_dir, note=args.note)


def _report_claims(args: argparse.Namespace) -> None:
    from kml.report import report_claims

    report_claims(args.cells, out_dir=args.out_dir, note=args.note)


def _bench(args: argparse.Namespace) -> None:
    from kml.bench import estimates_paper_preset, markdown_table, run_benchmarks

    estimates = estimates_paper_preset(args.only, args.methods, args.shots)
    run_benchmarks(args.out, only=args.only, quick=args.quick, methods=args.methods, shots=args.shots,
                   workflow=_workflow_plan(args.config) if estimates else None)
    print(markdown_table(args.out), end="")


def _workflow_plan(path: Path) -> WorkflowPlan:
    """The jobs of the workflow configuration `path`, as kml/plan.py composes them for Snakemake."""
    import yaml

    from kml.bench import BenchError, WorkflowPlan
    from kml.plan import Plan

    if not path.is_file():
        raise BenchError(f"--config {path}: no such file; the paper-preset estimate counts the jobs of the "
                         "workflow configuration: run in the checkout's root or pass --config PATH")
    return WorkflowPlan(Plan(yaml.safe_load(path.read_text()), [path]), path.name)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kml", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"kml {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("download", help="fetch a dataset's official archives, verified by checksum")
    p.add_argument("dataset", choices=DATASETS, help="which dataset")
    p.add_argument("--root", type=Path, default=Path(layout.RAW_DIR),
                   help=f"raw archive folder (default: {layout.RAW_DIR})")
    p.add_argument("--mirror", help="base URL or local directory (file://...) that replaces the origin")
    p.add_argument("--checksums", type=Path,
                   help="sha256sum-format file of expected checksums, replacing the published ones "
                        "(for synthetic archives made by `kml synth`)")
    p.add_argument("--variant", help="alternative source set where a dataset has several "
                                     "(mini-ImageNet: 'pickles', the default, or 'images')")
    p.set_defaults(handler=_download)

    p = commands.add_parser("prepare", help="turn raw archives into one HDF5 file per dataset and image size")
    p.add_argument("dataset", choices=DATASETS, help="which dataset")
    p.add_argument("--raw", type=Path, default=Path(layout.RAW_DIR),
                   help=f"raw archive folder (default: {layout.RAW_DIR})")
    p.add_argument("--out", type=Path, required=True,
                   help=f"output HDF5 file, e.g. {layout.processed_file('fc100', 84)}")
    p.add_argument("--image-size", type=int, default=84,
                   help="side of the square RGB images in pixels (default: 84, the paper's)")
    p.add_argument("--fc100-negative", action="store_true",
                   help="reproduce the colour-negative FC100 images the released code trained on")
    p.add_argument("--workers", type=int, default=None, help="decoding processes (default: all cores)")
    p.add_argument("--omniglot-train-classes", type=int, default=None,
                   help="Omniglot characters in meta-train, the rest meta-test (default: 1100, as MMAML; "
                        "synthetic archives from `kml synth`: 20)")
    p.set_defaults(handler=_prepare)

    p = commands.add_parser("synth", help="write small synthetic archives in a dataset's official format")
    p.add_argument("dataset", choices=DATASETS, help="which dataset's format")
    p.add_argument("--out", type=Path, required=True, help="folder for the archives (a file:// mirror)")
    p.add_argument("--seed", type=int, default=0,
                   help="the archives are a pure function of it, byte for byte (default: 0)")
    p.set_defaults(handler=_synth)

    p = commands.add_parser("inspect", help="print the splits, sizes and sources of a prepared HDF5 file, "
                                            "after checking it against the schema")
    p.add_argument("file", type=Path, help="a file written by `kml prepare`")
    p.set_defaults(handler=_inspect)

    p = commands.add_parser("info", help="print every method's parameter counts by part")
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128, 256],
                   help="output channels of the four convolution layers "
                        "(default: 32 64 128 256, the paper's)")
    p.add_argument("--image-size", type=int, default=84, help="image side in pixels (default: 84)")
    p.add_argument("--ways", type=int, default=5,
                   help="classes per task, the classifier's outputs (default: 5)")
    p.set_defaults(handler=_info)

    p = commands.add_parser("train", help="meta-train one method; resumes from its last checkpoint")
    p.add_argument("--config", type=Path, required=True, help="run configuration YAML")
    p.add_argument("--out", type=Path, required=True, help="run folder: checkpoints, log, final model")
    p.add_argument("--on-config-change", choices=("refuse", "set-aside"), default="refuse",
                   help="if the run folder holds a run of another training configuration: refuse (the "
                        "default) or set it aside, kept in a set-aside-* folder within it, and train afresh")
    p.set_defaults(handler=_train)

    p = commands.add_parser("evaluate", help="meta-test trained models on the setting's fixed task set")
    p.add_argument("--config", type=Path, required=True, help="run configuration YAML of the cell")
    p.add_argument("--model", type=Path, action="append", required=True,
                   help="trained model file; Multi-* methods take one per mode")
    p.add_argument("--out", type=Path, required=True, help="cell CSV: per-task accuracies and summary")
    p.set_defaults(handler=_evaluate)

    p = commands.add_parser(
        "transference",
        help="loss ratios of target tasks after one-task lookahead updates, at training snapshots")
    p.add_argument("--config", type=Path, required=True,
                   help="run configuration YAML (its transference section)")
    p.add_argument("--checkpoint", type=Path, action="append", required=True, metavar="SNAP.pt",
                   help="training snapshot (snapshots/iter*.pt); repeatable")
    p.add_argument("--out-dir", type=Path, required=True, help="writes iter{N}.csv per snapshot")
    p.add_argument("--sweep", action="store_true",
                   help="the step-size sweep instead: transference.sweep's sources x targets at every one of "
                        "its step sizes (plain gradient steps), to choose or check transference.step_size")
    p.set_defaults(handler=_transference)

    p = commands.add_parser("report", help="tables and figures from results, beside the paper's numbers")
    reports = p.add_subparsers(dest="report", required=True, metavar="REPORT")
    for name, handler, about, writes in (
        ("accuracy", _report_accuracy, "summary CSVs, the paper's two tables and the comparison figure",
         "summary.csv, per_mode.csv, tables/*.tex, figures/reproduction.{pdf,png}"),
        ("claims", _report_claims, "the paper's comparisons of methods, tested task by task (paired),",
         "claims.csv, tables/claims.tex, figures/claims.{pdf,png}"),
    ):
        r = reports.add_parser(name, help=f"{about} from evaluated cells (any subset of the 64)")
        r.add_argument("cells", type=Path, nargs="+", metavar="CELL.csv",
                       help="cell CSVs written by `kml evaluate`")
        r.add_argument("--out-dir", type=Path, required=True, help=f"writes {writes}")
        r.add_argument("--note", help="text printed in every table's caption and figure's title, "
                                      "e.g. what the numbers can and cannot show")
        r.set_defaults(handler=handler)
    r = reports.add_parser("variant", help="a variant's cells beside the default cells and the paper's, "
                                           "compared task by task")
    r.add_argument("cells", type=Path, nargs="+", metavar="CELL.csv",
                   help="the variant's cell CSVs (a default cell's own where the variant changes nothing)")
    r.add_argument("--default", type=Path, nargs="+", required=True, metavar="CELL.csv",
                   help="the default cell CSV of every variant cell")
    r.add_argument("--variant", required=True, help="the variant's name (kml/variants.py), for the outputs")
    r.add_argument("--out-dir", type=Path, required=True, help="writes summary.csv, tables/variant.tex")
    r.add_argument("--note", help="text printed in the table's caption")
    r.set_defaults(handler=_report_variant)
    r = reports.add_parser("ablations", help="each released-code switch flipped alone, paired with the "
                                             "default cells task by task")
    r.add_argument("--ablation", nargs=2, action="append", required=True, metavar=("SWITCH", "CELL.csv"),
                   help="one cell of the ablation of SWITCH (a dotted key of kml/variants.py), the default "
                        "cell's own where the switch changes nothing; repeated")
    r.add_argument("--default", type=Path, nargs="+", required=True, metavar="CELL.csv",
                   help="the default cell CSV of every ablation cell")
    r.add_argument("--out-dir", type=Path, required=True,
                   help="writes ablations/summary.csv, tables/ablations.tex, figures/ablations.{pdf,png}")
    r.add_argument("--note", help="text printed in the table's caption and the figure's title")
    r.set_defaults(handler=_report_ablations)
    r = reports.add_parser("transference",
                           help="transference summary, table and figures from `kml transference` CSVs")
    r.add_argument("csvs", type=Path, nargs="+", metavar="CSV",
                   help="iter{N}.csv files written by `kml transference`")
    r.add_argument("--out-dir", type=Path, required=True,
                   help="writes transference/{summary,claims}.csv, tables/transference{,_claims}.tex, "
                        "figures/transference_*.{pdf,png}")
    r.add_argument("--note", help="text printed in the tables' captions and under the figures' titles")
    r.set_defaults(handler=_report_transference)
    r = reports.add_parser(
        "step-size", help="the step-size sweep's summary and figure from `kml transference --sweep` CSVs")
    r.add_argument("csvs", type=Path, nargs="+", metavar="CSV", help="iter{N}.csv files written with --sweep")
    r.add_argument("--out-dir", type=Path, required=True,
                   help="writes transference/step_size_sweep.csv, figures/transference_step_size.{pdf,png}")
    r.add_argument("--step-size", type=_family_step_size, action="append", metavar="FAMILY=ALPHA",
                   help="the configured transference.step_size of a family, marked in the figure; repeatable")
    r.add_argument("--note", help="text printed under the figure's title")
    r.set_defaults(handler=_report_step_size)

    p = commands.add_parser("bench",
                            help="measure speeds; appends to a results CSV and rewrites its Markdown table")
    p.add_argument("--quick", action="store_true", help="tiny data and few repeats: proves it runs (for CI)")
    p.add_argument("--out", type=Path, default=Path(layout.BENCH_RESULTS),
                   help="results CSV to append to; the table goes beside it as .md "
                        f"(default: {layout.BENCH_RESULTS})")
    p.add_argument("--only", action="append", metavar="NAME",
                   help="run only this benchmark (repeatable): sampler, training (these two run by default), "
                        "transference, bf16")
    p.add_argument("--methods", nargs="+", metavar="METHOD",
                   help="training benchmark: only these joint methods (default: all six; the paper-preset "
                        "estimate needs all of them and both shot counts)")
    p.add_argument("--shots", nargs="+", type=int, metavar="K", help="training benchmark: only these shots")
    p.add_argument("--config", type=Path, default=Path("config.yaml"),
                   help="workflow configuration whose jobs the paper-preset estimate counts (default: "
                        "config.yaml, read only when the estimate runs)")
    p.set_defaults(handler=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.handler(args)
    except Interrupted as stop:
        print(f"kml {args.command}: {stop}", file=sys.stderr)
        return stop.exit_status
    except (KmlError, FileNotFoundError) as error:
        print(f"kml {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C where a command saves nothing (kml train saves a checkpoint itself)
        print(f"kml {args.command}: interrupted", file=sys.stderr)
        return 128 + signal.SIGINT
    return 0


if __name__ == "__main__":
    sys.exit(main())
