"""kml.stats against hand computations, the standard library and scipy's independent routines."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from scipy import stats as scipy_stats

from kml import stats


def test_pooled_interval_is_the_released_codes_population_std_rule():
    values = [0.2, 0.4, 0.4, 0.8, 1.0]
    assert stats.pooled_ci95(values) == pytest.approx(1.96 * statistics.pstdev(values) / math.sqrt(5),
                                                      rel=1e-12)
    assert math.isnan(stats.pooled_ci95([0.5]))


def test_stratified_interval_by_hand():
    # Mode a: 1, 3 (mean 2, sample variance 2); mode b: 10, 14, 18 (mean 14, sample variance 16). N = 5.
    values = [1, 10, 3, 14, 18]
    strata = ["a", "b", "a", "b", "b"]
    variance = (2 / 5) ** 2 * 2 / 2 + (3 / 5) ** 2 * 16 / 3
    assert stats.stratified_ci95(values, strata) == pytest.approx(1.96 * math.sqrt(variance), rel=1e-12)
    # One stratum: the ordinary interval with the sample standard deviation.
    assert stats.stratified_ci95([1, 2, 4], ["m"] * 3) == pytest.approx(
        1.96 * statistics.stdev([1, 2, 4]) / math.sqrt(3), rel=1e-12)
    assert math.isnan(stats.stratified_ci95([1, 2, 3], ["a", "a", "b"]))  # a stratum of one has no variance
    with pytest.raises(ValueError):
        stats.stratified_ci95([1, 2], ["a"])


def test_stratified_interval_removes_the_between_mode_spread_and_covers():
    """Two modes 40 points apart, 1000 tasks each: the pooled interval is inflated by the gap, the
    stratified one has its nominal 95 % coverage of the true mean (checked over 2000 simulated cells)."""
    rng = np.random.default_rng(0)
    means, sd, n = np.array([0.30, 0.70]), 0.15, 1000
    strata = np.repeat([0, 1], n)
    covered, ratios = 0, []
    for _ in range(2000):
        values = rng.normal(means[strata], sd)
        half = stats.stratified_ci95(values, strata)
        covered += abs(values.mean() - means.mean()) <= half
        ratios.append(stats.pooled_ci95(values) / half)
    assert 0.93 <= covered / 2000 <= 0.97
    # Expected ratio: sqrt(sd² + 0.2²) / sd = 5/3.
    assert np.median(ratios) == pytest.approx(5 / 3, rel=0.02)


def test_batch_means_interval_by_hand():
    values = [1, 2, 3, 4, 5, 6, 7]
    np.testing.assert_allclose(stats.batch_means(values, 3), [2, 5, 7])  # the short last batch counts
    assert stats.batch_means_ci95(values, 3) == pytest.approx(
        1.96 * statistics.pstdev([2, 5, 7]) / math.sqrt(3), rel=1e-12)
    assert math.isnan(stats.batch_means_ci95(values, 7))  # one batch: no spread
    with pytest.raises(ValueError):
        stats.batch_means(values, 0)


def test_paired_difference_against_a_one_sample_t_test_of_the_differences():
    rng = np.random.default_rng(1)
    a = rng.uniform(0.3, 0.9, size=400)
    b = a - 0.02 + rng.normal(0, 0.05, size=400)
    result = stats.paired_difference(a, b)
    differences = a - b
    independent = scipy_stats.ttest_1samp(differences, 0.0)
    half = scipy_stats.t.ppf(0.975, df=399) * differences.std(ddof=1) / math.sqrt(400)
    assert result.n == 400
    assert result.mean == pytest.approx(differences.mean(), rel=1e-12)
    assert result.p_value == pytest.approx(independent.pvalue, rel=1e-9)
    assert result.ci95 == pytest.approx(half, rel=1e-9)


def test_paired_difference_degenerate_cases():
    same = stats.paired_difference([0.5, 0.6, 0.7], [0.5, 0.6, 0.7])
    assert (same.mean, same.ci95, same.p_value) == (0.0, 0.0, 1.0)
    shifted = stats.paired_difference([0.75, 0.5, 0.25], [0.5, 0.25, 0.0])  # exact binary fractions
    assert (shifted.mean, shifted.ci95, shifted.p_value) == (0.25, 0.0, 0.0)
    single = stats.paired_difference([0.6], [0.5])
    assert math.isnan(single.ci95) and math.isnan(single.p_value)
    with pytest.raises(ValueError):
        stats.paired_difference([1, 2], [1, 2, 3])


def test_holm_by_hand():
    # Sorted p: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> monotone 0.06).
    np.testing.assert_allclose(stats.holm([0.03, 0.01, 0.04, 0.02]), [0.06, 0.04, 0.06, 0.06])
    adjusted = stats.holm([0.5, float("nan"), 0.9])
    assert math.isnan(adjusted[1])
    np.testing.assert_allclose(adjusted[[0, 2]], [1.0, 1.0])  # capped at 1


@pytest.mark.parametrize("difference, p_value, paper, expected", [
    (1.5, 0.001, 2.0, stats.REPRODUCED),
    (-1.5, 0.001, -0.4, stats.REPRODUCED),
    (1.5, 0.2, 2.0, stats.NOT_SIGNIFICANT),
    (1.5, 0.05, 2.0, stats.NOT_SIGNIFICANT),  # the level itself is not significant
    (-1.5, 0.001, 2.0, stats.CONTRADICTED),
    (1.5, float("nan"), 2.0, stats.NOT_SIGNIFICANT),
    (1.5, 0.001, float("nan"), stats.NO_PAPER_DIRECTION),
    (1.5, 0.001, 0.0, stats.NO_PAPER_DIRECTION),
])
def test_verdict(difference, p_value, paper, expected):
    assert stats.verdict(difference, p_value, paper) == expected
