"""The cell CSV: one evaluated table cell, as `kml evaluate` writes it and the reports read it.

For each training seed (`seed`; one unless `train.seeds` lists several): one row per test task (`kind`
"task"), then one per mode of the setting (`kind` "mode") and one for the whole cell (`kind` "overall").
With several seeds, rows over all of them follow (`seed` empty): one per mode ("mode_over_seeds") and one
for the cell ("overall_over_seeds"), the mean over seeds with seed-inclusive intervals
(kml.stats.seeds_by_tasks: training seeds and test tasks both vary). Accuracies are in percent. Each
summary row carries three 95 % intervals of its mean, each beside its definition (kml/stats.py computes
them; docs/statistics.md says when to use which):

    ci95_pct              pooled: 1.96 · σ / √n over tasks (the released KML code's rule)
    ci95_stratified_pct   stratified by mode (the mode-balanced design's own interval)
    ci95_batch_means_pct  over the means of consecutive groups of MMAML_EVAL_META_BATCH task ids (the released
                          MMAML code's rule, which the paper's ± values fit); overall rows only

and over seeds the same three with the seed-to-seed variation added (t quantile, seeds_by_tasks).

docs/ARCHITECTURE.md ("Cell CSV") documents the same columns. Torch-free, so the reports can import it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from kml import stats
from kml.config import RunConfig

COLUMNS = [
    "setting", "method", "shots", "seed", "kind", "task_id", "mode", "n_tasks", "n_seeds", "accuracy_pct",
    "ci95_pct", "ci95_definition",
    "ci95_stratified_pct", "ci95_stratified_definition",
    "ci95_batch_means_pct", "ci95_batch_means_definition",
]
INTERVAL_COLUMNS = ["ci95_pct", "ci95_stratified_pct", "ci95_batch_means_pct"]
KINDS = ("task", "mode", "overall", "mode_over_seeds", "overall_over_seeds")
OVER_SEEDS = {"mode": "mode_over_seeds", "overall": "overall_over_seeds"}

# The released MMAML code evaluates meta-batches of 10 tasks and reports its interval over their means. kml's
# task t has mode t mod M (kml/data/episodes.py, `evaluation_batches`), so task ids 10b .. 10b+9 hold exactly
# the mode mix of one of those meta-batches. Not eval.meta_batch_size, which only sets how many tasks run
# at once and must never change a result.
MMAML_EVAL_META_BATCH = 10

# Per-task accuracy is k / (ways · queries); 4 decimals of a percent keep it exact to 0.0001 points, and
# summaries are rounded likewise only after being computed from the unrounded values.
DECIMALS = 4

# A single mode is a single stratum; the released code has no per-mode interval over batch means.
MODE_STRATIFIED_DEFINITION = "1.96*s/sqrt(n), s the sample std of the mode's tasks (one mode is one stratum)"
MODE_BATCH_MEANS_DEFINITION = ("empty: the released MMAML code takes this interval over whole evaluation "
                               "meta-batches, which mix the modes, never over one mode")


def cell_frame(config: RunConfig, task_ids: Sequence[int], modes: Sequence[str],
               accuracies: Sequence[float], seed: int = 0) -> pd.DataFrame:
    """The cell CSV's rows of one training seed from each task's id, mode and accuracy (a fraction), in
    task-id order."""
    tasks = _tasks(task_ids, modes, accuracies)
    label = {"setting": config.setting, "method": config.method, "shots": config.task.shots, "seed": seed,
             "n_seeds": 1}
    rows = [{**label, "kind": "task", "n_tasks": 1, **task} for task in tasks.to_dict("records")]
    for mode in config.modes:
        members = tasks[tasks["mode"] == mode]
        if len(members):
            rows.append({**label, "mode": mode, **_summary("mode", members)})
    rows.append({**label, **_summary("overall", tasks)})
    return _frame(rows)


def seeds_cell_frame(config: RunConfig, frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The cell CSV of several seeds: each seed's rows (`cell_frame`, all on the same tasks), then the rows
    over all seeds. One seed's frame is returned as it is."""
    if len(frames) == 1:
        return frames[0]
    tasks = [frame[frame["kind"] == "task"].reset_index(drop=True) for frame in frames]
    if any(not part["task_id"].equals(tasks[0]["task_id"]) for part in tasks):
        raise ValueError("every seed must be evaluated on the same tasks")
    values = np.stack([part["accuracy_pct"].to_numpy(np.float64) for part in tasks])
    modes = tasks[0]["mode"].to_numpy()
    label = {"setting": config.setting, "method": config.method, "shots": config.task.shots,
             "n_seeds": len(frames)}
    rows = []
    for mode in config.modes:
        members = modes == mode
        if members.any():
            rows.append({**label, "mode": mode, **_over_seeds("mode", values[:, members], modes[members])})
    rows.append({**label, **_over_seeds("overall", values, modes)})
    return pd.concat([*frames, _frame(rows)], ignore_index=True)


def headline_rows(cells: pd.DataFrame, level: str) -> pd.DataFrame:
    """Each cell's rows of `level` ("overall" or "mode") that state its result: those over seeds where a
    cell has several seeds, else its one seed's (`cells`: rows of one or more cell CSVs)."""
    over = cells[cells["kind"] == OVER_SEEDS[level]]
    seeded = set(map(tuple, over[["setting", "method", "shots"]].to_numpy().tolist()))
    single = cells[cells["kind"] == level]
    keep = [tuple(key) not in seeded for key in single[["setting", "method", "shots"]].to_numpy().tolist()]
    return pd.concat([single[keep], over]).sort_index()


def _tasks(task_ids: Sequence[int], modes: Sequence[str], accuracies: Sequence[float]) -> pd.DataFrame:
    tasks = pd.DataFrame({"task_id": task_ids, "mode": modes,
                          "accuracy_pct": 100 * np.asarray(accuracies, dtype=np.float64)})
    # Task-id order, so that consecutive groups of MMAML_EVAL_META_BATCH tasks are the released code's
    # batches.
    return tasks.sort_values("task_id", kind="stable").reset_index(drop=True)


def _frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    rounded = ["accuracy_pct", *INTERVAL_COLUMNS]
    frame[rounded] = frame[rounded].astype(np.float64).round(DECIMALS)
    return frame.astype({"task_id": "Int64", "seed": "Int64", "n_seeds": int})


def _over_seeds(kind: str, values: np.ndarray, modes: np.ndarray) -> dict[str, object]:
    """A row over all seeds from their accuracies (seeds × tasks, task-id order): seed-inclusive intervals."""
    pooled = stats.seeds_by_tasks(values).ci95
    row = {"kind": OVER_SEEDS[kind], "n_tasks": values.shape[1], "accuracy_pct": values.mean(),
           "ci95_pct": pooled, "ci95_definition": stats.SEED_INCLUSIVE_DEFINITION}
    if kind == "mode":  # one mode is one stratum, and has no batch means (as for one seed)
        return {**row, "ci95_stratified_pct": pooled,
                "ci95_stratified_definition": f"{stats.SEED_INCLUSIVE_DEFINITION}; one mode is one stratum",
                "ci95_batch_means_pct": np.nan, "ci95_batch_means_definition": MODE_BATCH_MEANS_DEFINITION}
    batches = np.stack([stats.batch_means(seed, MMAML_EVAL_META_BATCH) for seed in values])
    return {**row, "ci95_stratified_pct": stats.seeds_by_tasks(values, modes).ci95,
            "ci95_stratified_definition": f"{stats.SEED_INCLUSIVE_DEFINITION}; tasks stratified by mode",
            "ci95_batch_means_pct": stats.seeds_by_tasks(batches).ci95,
            "ci95_batch_means_definition": (f"{stats.SEED_INCLUSIVE_DEFINITION}; over the means of batches "
                                            f"of {MMAML_EVAL_META_BATCH} consecutive tasks instead of tasks")}


def _summary(kind: str, tasks: pd.DataFrame) -> dict[str, object]:
    """A summary row's numbers from its tasks (unrounded, in task-id order)."""
    values, modes = tasks["accuracy_pct"].to_numpy(), tasks["mode"].to_numpy()
    overall = kind == "overall"
    return {
        "kind": kind, "n_tasks": len(values), "accuracy_pct": values.mean(),
        "ci95_pct": stats.pooled_ci95(values), "ci95_definition": stats.POOLED_DEFINITION,
        "ci95_stratified_pct": stats.stratified_ci95(values, modes),
        "ci95_stratified_definition": stats.STRATIFIED_DEFINITION if overall else MODE_STRATIFIED_DEFINITION,
        "ci95_batch_means_pct": stats.batch_means_ci95(values, MMAML_EVAL_META_BATCH) if overall else np.nan,
        "ci95_batch_means_definition": (stats.batch_means_definition(MMAML_EVAL_META_BATCH) if overall
                                        else MODE_BATCH_MEANS_DEFINITION),
    }
