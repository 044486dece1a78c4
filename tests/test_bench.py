"""`kml bench`: the quick run writes its CSV rows and Markdown table (timings are not asserted)."""

from __future__ import annotations

import csv

from kml.bench.output import CSV_COLUMNS
from kml.cli import main


def test_quick_sampler_bench_writes_csv_and_table(tmp_path):
    out = tmp_path / "results.csv"
    for _ in range(2):  # the second run appends to the first
        assert main(["bench", "--quick", "--only", "sampler", "--out", str(out)]) == 0
    with out.open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CSV_COLUMNS
    required = {"date", "device", "method", "shots", "seconds_per_iteration", "meta_batches_per_second"}
    assert required <= set(CSV_COLUMNS)
    assert [(r["method"], r["shots"]) for r in rows] == [("sampler", "1"), ("sampler", "5")] * 2
    assert all(float(r["seconds_per_iteration"]) > 0 for r in rows)
    table = out.with_suffix(".md").read_text()
    assert table.count("| sampler |") == 2  # the latest row per shots only


def test_unknown_benchmark_is_a_user_error(tmp_path, capsys):
    assert main(["bench", "--quick", "--only", "nonsense", "--out", str(tmp_path / "r.csv")]) == 2
    assert "choose from sampler" in capsys.readouterr().err


def test_quick_transference_bench_times_an_analysis_against_training(tmp_path, capsys):
    out = tmp_path / "results.csv"
    assert main(["bench", "--quick", "--only", "transference", "--methods", "protonet", "mmaml_kml",
                 "--shots", "1", "--out", str(out)]) == 0
    with out.open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["shots"]) for r in rows] == [("transference protonet", "1"),
                                                         ("transference mmaml_kml", "1")]
    for r in rows:
        assert float(r["seconds_per_iteration"]) > 0
        assert "analysis / training:" in r["notes"]
    assert "kml bench transference: transference protonet 1-shot" in capsys.readouterr().out


def test_the_default_run_leaves_out_the_opt_in_benchmarks(tmp_path, monkeypatch):
    from kml import bench

    ran = []
    for name in bench.BENCHMARKS:
        monkeypatch.setitem(bench.BENCHMARKS, name, lambda settings, name=name: ran.append(name) or [])
    bench.run_benchmarks(tmp_path / "results.csv", quick=True)
    assert ran == [name for name in bench.BENCHMARKS if name not in bench.OPT_IN] == ["sampler", "training"]


def test_the_estimate_counts_every_seed_and_the_first_seeds_sweeps_only():
    """One second per iteration and per test task for every configuration: the estimate's parts are then
    counts, which two seeds double except the step-size sweeps."""
    from types import SimpleNamespace

    from test_plan import workflow_config

    from kml.bench.estimate import preset_estimate
    from kml.plan import Plan

    class EverySecond(dict):
        def __missing__(self, key):
            return SimpleNamespace(timing=SimpleNamespace(seconds=[1.0]), eval_seconds_per_task=1.0)

    one = preset_estimate(Plan(workflow_config()), EverySecond())
    two = preset_estimate(Plan(workflow_config({"train": {"seeds": [0, 1]}})), EverySecond())
    assert one["evaluation"][0] == 1000 * (2 + 2 + 3 + 5) * 8 * 2  # tasks_per_mode x modes x methods x shots
    assert two["training"][0] == 2 * one["training"][0] and two["evaluation"][0] == 2 * one["evaluation"][0]
    assert one["transference"][0] < two["transference"][0] < 2 * one["transference"][0]
    assert "24 runs" in two["transference"][1] and "12 step-size sweeps" in two["transference"][1]
