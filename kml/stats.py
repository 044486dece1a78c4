"""The statistics kml reports: 95 % intervals of a mean, paired comparisons and their verdicts.

Pure functions of numbers (numpy and scipy.stats; no torch), shared by evaluation, the reports and the
claims, so that each interval rule is written once. docs/statistics.md explains, for a reader of the
results, which interval each output shows and why.

Three intervals of a cell's mean accuracy over its fixed test tasks (all half-widths of a 95 % interval):

- `pooled_ci95`: 1.96 · σ / √n over all tasks, σ the population standard deviation. The released KML code
  computes this. Over a mixed-mode cell σ includes the spread *between* the modes' accuracies, which the
  mode-balanced design holds fixed, so this interval is too wide for the cell's mean (about twice the
  paper's ± values).
- `stratified_ci95`: the interval of a stratified mean, each mode a stratum of fixed size by design:
  1.96 · √(Σ_m (n_m/N)² s_m² / n_m), s_m the sample standard deviation within mode m. Only the modes'
  own sampling variance enters: the right interval for a mode-balanced task set.
- `batch_means_ci95`: the released MMAML code's interval, 1.96 · σ_b / √B over the means of B consecutive
  evaluation meta-batches (σ_b their population standard deviation). The paper's ± values fit this one.
  With mode-balanced (round-robin) batches every batch holds the same mode mix, so it approximates the
  stratified interval.

Paired comparisons (`paired_difference`): every method of a setting is evaluated on the same fixed tasks,
so two methods' accuracies can be compared task by task: the mean of the per-task differences with the
t interval and the two-sided p-value of the paired t-test (scipy.stats.ttest_rel). With hundreds to
thousands of tasks the t-test's normal approximation of the mean difference is sound although per-task
accuracies are bounded and discrete.

Several training seeds (`train.seeds`): a cell trained with S seeds is evaluated S times on the same T
fixed tasks, a crossed seeds × tasks design (`seeds_by_tasks`): value[s, t] = μ + seed_s + task_t + residual
with all three random. Its 95 % interval counts both sources of variation, the trainings' and the test
tasks': Var(mean) = σ²_seed/S + σ²_task/T + σ²_residual/(S·T), each component estimated from the two-way
ANOVA mean squares (truncated at zero), t quantile with Satterthwaite's degrees of freedom. With one seed it
is the one-sample t interval over tasks, so `paired_difference` of one seed is the paired t-test exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

Z95 = 1.96  # the normal quantile the released code and the paper use for "95 %"
SIGNIFICANCE = 0.05  # two-sided level of the verdicts

# The verdicts of a comparison against the paper's claim (`verdict`).
REPRODUCED = "reproduced"  # significant, in the paper's direction
NOT_SIGNIFICANT = "not significant"
CONTRADICTED = "contradicted"  # significant, against the paper's direction
NO_PAPER_DIRECTION = "no paper direction"  # the paper gives no number, or no difference
VERDICTS = (REPRODUCED, NOT_SIGNIFICANT, CONTRADICTED, NO_PAPER_DIRECTION)

POOLED_DEFINITION = "1.96*std/sqrt(n) over tasks, population std (the released KML code's interval)"
STRATIFIED_DEFINITION = ("1.96*sqrt(sum over modes of (n_m/n)^2*s_m^2/n_m), s_m the sample std of mode m's "
                         "tasks (stratified by mode: the mode-balanced design's interval)")


def batch_means_definition(batch_size: int) -> str:
    return (f"1.96*std/sqrt(b) over the means of b batches of {batch_size} consecutive tasks, population std "
            "(the released MMAML code's interval, which the paper's values fit)")


def _array(values: Sequence[float]) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1 or len(array) == 0:
        raise ValueError(f"expected a non-empty sequence of numbers, got shape {array.shape}")
    return array


def pooled_ci95(values: Sequence[float]) -> float:
    """1.96 · population std / √n; NaN for a single value (no spread to estimate)."""
    values = _array(values)
    if len(values) < 2:
        return float("nan")
    return float(Z95 * values.std() / np.sqrt(len(values)))


def stratified_ci95(values: Sequence[float], strata: Sequence[object]) -> float:
    """The 95 % half-width of the mean of `values` when each stratum's size is fixed by design.

    Var(mean) = Σ_h (n_h/N)² s_h² / n_h with s_h² the sample variance (ddof 1) within stratum h; NaN when a
    stratum has a single value. With one stratum it is the ordinary interval with the sample std.
    """
    values = _array(values)
    strata = np.asarray(strata, dtype=object)
    if strata.shape != values.shape:
        raise ValueError(f"{len(strata)} strata labels for {len(values)} values")
    variance = 0.0
    for label in dict.fromkeys(strata.tolist()):
        members = values[strata == label]
        if len(members) < 2:
            return float("nan")
        variance += (len(members) / len(values)) ** 2 * members.var(ddof=1) / len(members)
    return float(Z95 * np.sqrt(variance))


def batch_means(values: Sequence[float], batch_size: int) -> np.ndarray:
    """Means of consecutive groups of `batch_size` values; a shorter last group is a batch of its own."""
    values = _array(values)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    return np.array([chunk.mean()
                     for chunk in np.array_split(values, range(batch_size, len(values), batch_size))])


def batch_means_ci95(values: Sequence[float], batch_size: int) -> float:
    """The released MMAML code's interval: `pooled_ci95` of the batch means."""
    return pooled_ci95(batch_means(values, batch_size))


@dataclass(frozen=True)
class PairedDifference:
    """mean(a − b) over pairs, its 95 % t-interval half-width and the paired t-test's two-sided p-value;
    `n` units (tasks), each measured `n_seeds` times."""

    mean: float
    ci95: float
    p_value: float
    n: int
    n_seeds: int = 1


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> PairedDifference:
    """Paired comparison of two measurements of the same units (tasks, or targets), a − b.

    Two seeds × tasks matrices (row s of each from the trainings of one seed) are compared seed by seed and
    task by task, with the seed-inclusive interval and test of `seeds_by_tasks`; one row is the paired t-test.
    """
    matrices = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if matrices[0].shape != matrices[1].shape:
        raise ValueError(f"paired samples differ in shape: {matrices[0].shape} and {matrices[1].shape}")
    if matrices[0].ndim == 2 and len(matrices[0]) > 1:
        result = seeds_by_tasks(matrices[0] - matrices[1])
        return PairedDifference(result.mean, result.ci95, result.p_value, result.n_tasks, result.n_seeds)
    a, b = (_array(matrix.reshape(-1)) for matrix in matrices)
    differences = a - b
    n = len(differences)
    if n < 2:
        return PairedDifference(float(differences.mean()), float("nan"), float("nan"), n)
    if np.all(differences == differences[0]):
        # No spread: the t statistic is undefined (scipy returns NaN). A constant difference of zero is no
        # evidence of a difference; a constant non-zero one (on >= 2 units) is as certain as data can be.
        p_value = 1.0 if differences[0] == 0 else 0.0
        return PairedDifference(float(differences[0]), 0.0, p_value, n)
    from scipy import stats  # here: every `kml evaluate` imports this module, and scipy.stats takes a second

    result = stats.ttest_rel(a, b)
    low, high = result.confidence_interval(0.95)
    return PairedDifference(float(differences.mean()), float((high - low) / 2), float(result.pvalue), n)


@dataclass(frozen=True)
class SeedsByTasks:
    """The mean of a seeds × tasks matrix, its seed-inclusive 95 % t half-width (`ci95`), the two-sided
    p-value of "the mean is 0", the degrees of freedom, and the variance components behind them (the
    squared standard error = seed_part + task_part + residual_part)."""

    mean: float
    ci95: float
    p_value: float
    df: float
    n_seeds: int
    n_tasks: int
    seed_part: float
    task_part: float
    residual_part: float


SEED_INCLUSIVE_DEFINITION = (
    "t(0.975, Satterthwaite df) * sqrt(var_seed/S + var_task/T + var_residual/(S*T)) over S seeds x T tasks, "
    "variance components from the two-way ANOVA mean squares truncated at 0 (seed-inclusive)")


class _Term(NamedTuple):
    """A mean square of the two-way ANOVA, its degrees of freedom and its coefficient in S·T·SE²."""

    mean_square: float
    df: int
    coefficient: float


def seeds_by_tasks(values: np.ndarray, strata: Sequence[object] | None = None) -> SeedsByTasks:
    """The seed-inclusive interval of the mean of `values[s, t]` (S seeds × T tasks, every seed evaluated on
    the same tasks), as a crossed random-effects design.

    Mean squares: seeds MS_s = T Σ_s (ā_s − m)² / (S−1); tasks MS_t = S Σ_t (b̄_t − c̄_t)² / (T−H), c̄_t the
    mean of task t's stratum (H strata; without `strata` one, c̄_t = m), so that with modes as strata only
    the within-mode spread of tasks counts, as in `stratified_ci95` (modes are equal in size by design);
    residual MS_e = Σ (y − ā_s − b̄_t + m)² / ((S−1)(T−1)). Components σ²_seed = max(MS_s − MS_e, 0)/T,
    σ²_task = max(MS_t − MS_e, 0)/S, σ²_residual = MS_e, so S·T·SE² is a sum of ±mean squares, whose
    degrees of freedom Satterthwaite's rule combines. With one seed, SE² = MS_t / T.
    """
    y = np.asarray(values, dtype=np.float64)
    if y.ndim != 2 or 0 in y.shape:
        raise ValueError(f"expected a non-empty seeds x tasks matrix, got shape {y.shape}")
    n_seeds, n_tasks = y.shape
    labels = np.zeros(n_tasks, dtype=object) if strata is None else np.asarray(strata, dtype=object)
    if labels.shape != (n_tasks,):
        raise ValueError(f"{len(labels)} strata labels for {n_tasks} tasks")
    mean = float(y.mean())
    seed_means, task_means = y.mean(axis=1), y.mean(axis=0)
    stratum_means = np.empty(n_tasks)
    for label in set(labels.tolist()):
        stratum_means[labels == label] = task_means[labels == label].mean()
    task_df = n_tasks - len(set(labels.tolist()))
    cells = n_seeds * n_tasks
    task_ms = n_seeds * ((task_means - stratum_means) ** 2).sum() / task_df if task_df else 0.0
    task, seed, residual = _Term(task_ms, task_df, 1.0), _Term(0.0, 0, 0.0), _Term(0.0, 0, 0.0)
    if n_seeds > 1:
        residual_df = (n_seeds - 1) * (n_tasks - 1)
        residuals = y - seed_means[:, None] - task_means[None, :] + mean
        residual_ms = (residuals ** 2).sum() / max(residual_df, 1)
        seed_ms = n_tasks * ((seed_means - mean) ** 2).sum() / (n_seeds - 1)
        # A component whose estimate would be negative is zero: its mean square then enters no more.
        seed = _Term(seed_ms, n_seeds - 1, float(seed_ms >= residual_ms))
        task = task._replace(coefficient=float(task_df > 0 and task_ms >= residual_ms))
        residual = _Term(residual_ms, residual_df, 1.0 - seed.coefficient - task.coefficient)
    # Each component's own share of SE²: the residual's mean square is part of the seeds' and the tasks'.
    seed_part = seed.coefficient * (seed.mean_square - residual.mean_square) / cells
    task_part = task.coefficient * (task.mean_square - residual.mean_square) / cells
    residual_part = residual.mean_square / cells
    variance = seed_part + task_part + residual_part
    terms = [(term.coefficient * term.mean_square / cells, term.df) for term in (seed, task, residual)
             if term.df and term.coefficient]
    if not (task_df or n_seeds > 1):
        return SeedsByTasks(mean, float("nan"), float("nan"), float("nan"), n_seeds, n_tasks, 0.0, 0.0, 0.0)
    if variance <= 0:
        # No spread (all values equal): as paired_difference says of a constant difference.
        return SeedsByTasks(mean, 0.0, 1.0 if mean == 0 else 0.0, float("nan"), n_seeds, n_tasks,
                            seed_part, task_part, residual_part)
    from scipy import stats  # as in paired_difference

    df = variance ** 2 / sum(part ** 2 / df for part, df in terms)
    error = np.sqrt(variance)
    return SeedsByTasks(mean, float(stats.t.ppf(0.975, df) * error),
                        float(2 * stats.t.sf(abs(mean) / error, df)), float(df), n_seeds, n_tasks,
                        seed_part, task_part, residual_part)


def holm(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (controls the family-wise error rate).

    NaN p-values are left NaN and do not count towards the family's size.
    """
    p = np.asarray(p_values, dtype=np.float64)
    adjusted = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted


def verdict(difference: float, p_value: float, paper_difference: float, level: float = SIGNIFICANCE) -> str:
    """Whether a measured difference reproduces the direction of the paper's difference.

    `reproduced`: significant at `level` and of the paper's sign; `contradicted`: significant and of the
    opposite sign; `not significant` otherwise; `no paper direction` when the paper's difference is missing
    or zero (there is no direction to reproduce).
    """
    if np.isnan(paper_difference) or paper_difference == 0:
        return NO_PAPER_DIRECTION
    if np.isnan(p_value) or p_value >= level or difference == 0:
        return NOT_SIGNIFICANT
    return REPRODUCED if np.sign(difference) == np.sign(paper_difference) else CONTRADICTED
