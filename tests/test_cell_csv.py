"""The cell CSV: its rows, and its three intervals against hand computations on constructed accuracies."""

from __future__ import annotations

import io
import math
import statistics

import pandas as pd
import pytest

from kml.cell_csv import (
    COLUMNS,
    DECIMALS,
    MODE_BATCH_MEANS_DEFINITION,
    MODE_STRATIFIED_DEFINITION,
    cell_frame,
)
from kml.config import RunConfig, TaskConfig
from kml.stats import POOLED_DEFINITION, STRATIFIED_DEFINITION

MODES = ("fc100", "cub")
CONFIG = RunConfig(method="maml", modes=MODES, setting="2mode", task=TaskConfig(shots=5))
# 20 tasks as kml evaluates them: task t of mode MODES[t % 2], accuracy k/25 (5-way, 5 queries per class).
CORRECT = [3, 20, 5, 22, 4, 25, 9, 18, 6, 21, 11, 19, 10, 24, 8, 17, 12, 23, 7, 16]
TASK_IDS = list(range(20))
TASK_MODES = [MODES[t % 2] for t in TASK_IDS]
ACCURACIES = [k / 25 for k in CORRECT]


def rows(frame: pd.DataFrame, kind: str) -> pd.DataFrame:
    return frame[frame["kind"] == kind].set_index("mode" if kind == "mode" else "kind")


def percent(task_ids):
    return [100 * ACCURACIES[t] for t in task_ids]


def test_rows_are_tasks_in_id_order_then_modes_then_overall():
    order = [7, 0, 19, 3, *[t for t in TASK_IDS if t not in (7, 0, 19, 3)]]  # any order in, id order out
    frame = cell_frame(CONFIG, order, [TASK_MODES[t] for t in order], [ACCURACIES[t] for t in order])
    assert list(frame.columns) == COLUMNS
    assert frame["kind"].tolist() == ["task"] * 20 + ["mode", "mode", "overall"]
    assert frame["task_id"].iloc[:20].tolist() == TASK_IDS
    assert frame["accuracy_pct"].iloc[:20].tolist() == pytest.approx(percent(TASK_IDS))
    assert frame["mode"].iloc[20:22].tolist() == list(MODES)  # the setting's order
    assert set(frame.setting) == {"2mode"} and set(frame.method) == {"maml"} and set(frame.shots) == {5}


def test_intervals_equal_a_hand_computation():
    frame = cell_frame(CONFIG, TASK_IDS, TASK_MODES, ACCURACIES)
    everything = percent(TASK_IDS)
    by_mode = {mode: percent([t for t in TASK_IDS if TASK_MODES[t] == mode]) for mode in MODES}

    overall = rows(frame, "overall").loc["overall"]
    assert overall["n_tasks"] == 20
    assert overall["accuracy_pct"] == round(statistics.fmean(everything), DECIMALS)
    pooled = 1.96 * statistics.pstdev(everything) / math.sqrt(20)
    # Two strata of 10: Var(mean) = sum over modes of (10/20)² · s_m² / 10.
    stratified = 1.96 * math.sqrt(sum(0.25 * statistics.variance(values) / 10 for values in by_mode.values()))
    # Tasks 0-9 and 10-19 are the two meta-batches of 10, each 5 fc100 + 5 cub.
    batches = [statistics.fmean(everything[:10]), statistics.fmean(everything[10:])]
    batch_means = 1.96 * statistics.pstdev(batches) / math.sqrt(2)
    assert overall["ci95_pct"] == round(pooled, DECIMALS)
    assert overall["ci95_stratified_pct"] == round(stratified, DECIMALS)
    assert overall["ci95_batch_means_pct"] == round(batch_means, DECIMALS)
    assert stratified < pooled / 2  # the modes are 60 points apart: the pooled interval counts that gap
    assert overall["ci95_definition"] == POOLED_DEFINITION
    assert overall["ci95_stratified_definition"] == STRATIFIED_DEFINITION
    assert "batches of 10 consecutive tasks" in overall["ci95_batch_means_definition"]

    modes = rows(frame, "mode")
    for mode, values in by_mode.items():
        row = modes.loc[mode]
        assert (row["n_tasks"], row["accuracy_pct"]) == (10, round(statistics.fmean(values), DECIMALS))
        assert row["ci95_pct"] == round(1.96 * statistics.pstdev(values) / math.sqrt(10), DECIMALS)
        assert row["ci95_stratified_pct"] == round(1.96 * statistics.stdev(values) / math.sqrt(10), DECIMALS)
        assert math.isnan(row["ci95_batch_means_pct"])
        assert row["ci95_stratified_definition"] == MODE_STRATIFIED_DEFINITION
        assert row["ci95_batch_means_definition"] == MODE_BATCH_MEANS_DEFINITION


def test_batches_follow_task_ids_not_the_order_given():
    shuffled = TASK_IDS[::-1]
    frame = cell_frame(CONFIG, shuffled, [TASK_MODES[t] for t in shuffled], [ACCURACIES[t] for t in shuffled])
    pd.testing.assert_frame_equal(frame, cell_frame(CONFIG, TASK_IDS, TASK_MODES, ACCURACIES))


def test_intervals_are_empty_where_undefined():
    # 10 tasks are one meta-batch (no spread of batch means); a mode with one task has no sample std.
    frame = cell_frame(CONFIG, list(range(10)), [*["fc100"] * 9, "cub"], [0.4] * 5 + [0.6] * 5)
    overall = rows(frame, "overall").loc["overall"]
    assert math.isnan(overall["ci95_batch_means_pct"]) and math.isnan(overall["ci95_stratified_pct"])
    assert overall["ci95_pct"] == round(1.96 * 10 / math.sqrt(10), DECIMALS)
    assert math.isnan(rows(frame, "mode").loc["cub", "ci95_pct"])


def test_written_csv_has_whole_task_ids_and_accuracies_to_four_decimals():
    """k/75 is a repeating decimal: stored to 0.0001 points; summaries from the unrounded values."""
    accuracies = [k / 75 for k in (1, 2, 50, 74)]
    frame = cell_frame(CONFIG, [0, 1, 2, 3], ["fc100", "cub", "fc100", "cub"], accuracies)
    text = frame.to_csv(index=False)
    tasks = [line.split(",") for line in text.splitlines()[1:5]]
    column = {name: COLUMNS.index(name) for name in ("task_id", "seed", "accuracy_pct")}
    assert [fields[column["task_id"]] for fields in tasks] == ["0", "1", "2", "3"]
    assert {fields[column["seed"]] for fields in tasks} == {"0"}
    assert [fields[column["accuracy_pct"]] for fields in tasks] == ["1.3333", "2.6667", "66.6667", "98.6667"]
    written = pd.read_csv(io.StringIO(text))
    overall = written[written["kind"] == "overall"].iloc[0]
    exact = 100 * sum(accuracies) / 4
    assert overall["accuracy_pct"] == round(exact, DECIMALS)
    assert written["accuracy_pct"].map(lambda value: round(value, DECIMALS) == value).all()


# ---- several training seeds --------------------------------------------------------------------------------

def test_rows_over_seeds_hold_the_mean_and_the_seed_inclusive_intervals():
    import numpy as np

    from kml.cell_csv import seeds_cell_frame
    from kml.stats import batch_means, seeds_by_tasks

    second = [min(1.0, a + 0.08 * (t % 3)) for t, a in enumerate(ACCURACIES)]
    frames = [cell_frame(CONFIG, TASK_IDS, TASK_MODES, accuracies, seed)
              for seed, accuracies in ((0, ACCURACIES), (4, second))]
    frame = seeds_cell_frame(CONFIG, frames)
    assert list(frame.columns) == COLUMNS
    assert frame["kind"].tolist() == 2 * (["task"] * 20 + ["mode", "mode", "overall"]) + [
        "mode_over_seeds", "mode_over_seeds", "overall_over_seeds"]
    assert frame["seed"].tolist()[:46] == [0] * 23 + [4] * 23 and frame["seed"].iloc[46:].isna().all()
    values = 100 * np.array([ACCURACIES, second])
    overall = frame[frame["kind"] == "overall_over_seeds"].iloc[0]
    assert (overall["n_seeds"], overall["n_tasks"]) == (2, 20)
    assert overall["accuracy_pct"] == round(values.mean(), DECIMALS)
    assert overall["ci95_pct"] == round(seeds_by_tasks(values).ci95, DECIMALS)
    assert overall["ci95_stratified_pct"] == round(seeds_by_tasks(values, TASK_MODES).ci95, DECIMALS)
    batches = np.stack([batch_means(row, 10) for row in values])
    assert overall["ci95_batch_means_pct"] == round(seeds_by_tasks(batches).ci95, DECIMALS)
    fc100 = frame[(frame["kind"] == "mode_over_seeds") & (frame["mode"] == "fc100")].iloc[0]
    assert fc100["ci95_pct"] == round(seeds_by_tasks(values[:, ::2]).ci95, DECIMALS)
    assert seeds_cell_frame(CONFIG, frames[:1]) is frames[0]
