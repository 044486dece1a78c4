"""The paper's comparisons of methods, tested task by task on the evaluated cells (results/claims.csv).

Every method of a setting is evaluated on the same fixed test tasks, so two cells of one setting and shots
are compared pairwise: per task, method − baseline accuracy, then the paired t-test of those differences
(kml.stats.paired_difference); cells trained with several seeds are compared seed by seed on the seeds both
have, with the seed-inclusive test (`n_seeds`). The family of all comparisons in the file is Holm-adjusted,
and the verdict says whether the paper's own difference (from its tables) is reproduced at the adjusted 5 %
level. docs/statistics.md explains the choices and how to read the columns.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from kml import KmlError, stats
from kml.cell_csv import DECIMALS
from kml.report.paper import KEYS, SETTINGS, paper_results

# (method, baseline) in the paper's order: each modulated method against what it claims to improve on.
COMPARISONS = (
    ("mmaml_kml", "maml"),
    ("mmaml_kml", "multi_maml"),
    ("mmaml_kml", "mmaml"),
    ("mmaml", "maml"),  # FiLM modulation against none
    ("mprotonet_kml", "protonet"),
    ("mprotonet_kml", "multi_protonet"),
    ("mprotonet_kml", "mprotonet"),
    ("mprotonet", "protonet"),  # FiLM modulation against none
)
COMPARISON = ["setting", "shots", "method", "baseline"]
CLAIMS_COLUMNS = [
    *COMPARISON, "delta_pct", "ci95_pct", "p_value", "p_holm", "n_tasks", "n_seeds", "paper_delta_pct",
    "verdict",
]
PAPER_DECIMALS = 2  # the paper's tables' precision


def paper_comparisons() -> pd.DataFrame:
    """Every comparison of the paper's grid in its order (settings, shots, COMPARISONS): its method family
    and the paper's difference."""
    paper = paper_results().set_index(KEYS)
    shots = sorted(paper.index.get_level_values("shots").unique())
    rows = [
        {"setting": setting, "shots": k, "method": method, "baseline": baseline,
         "family": paper.at[(setting, method, k), "family"],
         "paper_delta_pct": round(paper.at[(setting, method, k), "accuracy"]
                                  - paper.at[(setting, baseline, k), "accuracy"], PAPER_DECIMALS)}
        for setting in SETTINGS for k in shots for method, baseline in COMPARISONS
    ]
    return pd.DataFrame(rows)


def compare(cells: pd.DataFrame) -> pd.DataFrame:
    """The claims of every comparison whose two cells are among `cells` (rows of `read_cells`)."""
    tasks = {key: frame for key, frame in cells[cells["kind"] == "task"].groupby(KEYS)}
    rows = []
    for comparison in paper_comparisons().itertuples(index=False):
        method = tasks.get((comparison.setting, comparison.method, comparison.shots))
        baseline = tasks.get((comparison.setting, comparison.baseline, comparison.shots))
        if method is None or baseline is None:
            continue
        result = stats.paired_difference(*paired_accuracies(method, baseline))
        rows.append({**comparison._asdict(), "delta_pct": round(result.mean, DECIMALS),
                     "ci95_pct": round(result.ci95, DECIMALS), "p_value": result.p_value,
                     "n_tasks": result.n, "n_seeds": result.n_seeds})
    claims = pd.DataFrame(rows, columns=[*COMPARISON, "delta_pct", "ci95_pct", "p_value", "n_tasks",
                                         "n_seeds", "paper_delta_pct"])
    claims["p_holm"] = stats.holm(claims["p_value"].to_numpy(dtype=np.float64))
    claims["verdict"] = [stats.verdict(row.delta_pct, row.p_holm, row.paper_delta_pct)
                         for row in claims.itertuples(index=False)]
    return claims[CLAIMS_COLUMNS]


def paired_accuracies(method: pd.DataFrame, baseline: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The two cells' task accuracies (task rows), seeds × tasks: the training seeds both cells have, tasks
    aligned by id, after checking that the tasks are the same. Two cells with different seeds are compared
    on the seeds they share (the first seed is every cell's)."""
    what = f"{method['file'].iloc[0]} and {baseline['file'].iloc[0]}"
    pairs = [_paired_seed(method[method["seed"] == seed], baseline[baseline["seed"] == seed])
             for seed in shared_seeds(method, baseline, what)]
    return np.stack([first for first, _ in pairs]), np.stack([second for _, second in pairs])


def shared_seeds(first: pd.DataFrame, second: pd.DataFrame, what: str) -> list[int]:
    """The training seeds (`seed` column) of both frames, in order; a KmlError naming `what` if none."""
    seeds = sorted(set(first["seed"]) & set(second["seed"]))
    if not seeds:
        raise KmlError(f"{what}: no training seed in common ({sorted(set(first['seed']))} and "
                       f"{sorted(set(second['seed']))}); train both with the same first seed of train.seeds")
    return seeds


def _paired_seed(method: pd.DataFrame, baseline: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    first, second = (frame.set_index("task_id") for frame in (method, baseline))
    only = first.index.symmetric_difference(second.index)
    shared = first.index.intersection(second.index)
    moved = (first.loc[shared, "mode"] != second.loc[shared, "mode"]).sum()
    if len(only) or moved:
        raise KmlError(
            f"{first['file'].iloc[0]} and {second['file'].iloc[0]}: not evaluated on the same test tasks "
            f"({len(first)} and {len(second)} tasks, {len(only)} task ids in one only, {moved} shared ids "
            "with another mode); evaluate both cells with the same eval.tasks_per_mode and eval.seed"
        )
    return first["accuracy_pct"].to_numpy(), second.loc[first.index, "accuracy_pct"].to_numpy()


def with_paper_grid(claims: pd.DataFrame) -> pd.DataFrame:
    """All comparisons of the paper's grid in its order, with the measured columns where they were run."""
    measured = claims.drop(columns="paper_delta_pct")
    return paper_comparisons().merge(measured, on=COMPARISON, how="left")
