"""The aggregation maths of rlrun.bench.stats against values worked by hand (Agarwal et al. 2021)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from rlrun.bench import stats


def test_iqm_drops_a_quarter_of_all_runs_x_tasks_at_each_end():
    # 8 scores, sorted 1..8: drop 2 at each end, mean of 3, 4, 5, 6 = 4.5.
    assert stats.iqm([[1, 2, 3, 4], [5, 6, 7, 8]]) == 4.5
    # 6 scores, sorted 0 1 2 3 10 100: floor(6/4) = 1 dropped at each end, mean of 1, 2, 3, 10 = 4.
    assert stats.iqm([[10, 0, 3], [1, 100, 2]]) == 4.0
    # 3 scores: floor(3/4) = 0, nothing dropped.
    assert stats.iqm([[1.0, 2.0, 6.0]]) == 3.0


def test_mean_median_and_optimality_gap_by_hand():
    scores = [[0.2, 1.5], [0.8, 0.5], [1.2, 0.9]]
    assert stats.mean(scores) == pytest.approx(5.1 / 6)
    # per-task means 2.2/3 and 2.9/3; the median of two is their mean
    assert stats.median(scores) == pytest.approx((2.2 / 3 + 2.9 / 3) / 2)
    # min(score, 1): 0.2 1 0.8 0.5 1 0.9 -> mean 4.4/6; gap 1 - 4.4/6
    assert stats.optimality_gap(scores) == pytest.approx(1 - 4.4 / 6)


def test_normalise_maps_random_to_zero_and_reference_to_one():
    assert stats.normalise([22.0, 500.0, 261.0], 22.0, 500.0).tolist() == [0.0, 1.0, 0.5]
    # negative returns (Pendulum): random -1200, reference -150; -675 is halfway
    assert stats.normalise(-675.0, -1200.0, -150.0) == pytest.approx(0.5)
    with pytest.raises(ValueError):
        stats.normalise(1.0, 3.0, 3.0)


def test_bootstrap_resamples_stay_inside_their_task():
    scores = np.array([[0.0, 10.0], [1.0, 30.0], [2.0, 50.0]])
    samples = stats.bootstrap_resamples(scores, 500, np.random.default_rng(1))
    assert samples.shape == (500, 3, 2)
    assert set(np.unique(samples[:, :, 0])) == {0.0, 1.0, 2.0}
    assert set(np.unique(samples[:, :, 1])) == {10.0, 30.0, 50.0}


def test_stratified_bootstrap_matches_explicit_enumeration():
    """2 runs x 2 tasks: each task column has 2^2 = 4 equally likely resamples, so 16 in all. The exact
    bootstrap distribution of the mean, enumerated, puts 1/16 on its minimum (0+0+10+10)/4 = 5 and
    1/16 on its maximum (1+1+30+30)/4 = 15.5: more than 2.5% each, so the 95% percentile interval of
    a large bootstrap is exactly (5, 15.5); the point estimate is the plain mean 10.25."""
    scores = np.array([[0.0, 10.0], [1.0, 30.0]])
    exact = []
    for rows0, rows1 in itertools.product(itertools.product(range(2), repeat=2), repeat=2):
        exact.append(np.mean([scores[list(rows0), 0], scores[list(rows1), 1]]))
    exact = np.array(exact)
    assert exact.min() == 5.0 and exact.max() == 15.5 and np.mean(exact == 5.0) == 1 / 16

    point, low, high = stats.stratified_bootstrap_ci(scores, stats.mean, reps=4000, seed=3)
    assert (point, low, high) == (10.25, 5.0, 15.5)
    # The resample frequencies follow the enumeration: each of the 16 outcomes about 1/16.
    samples = stats.bootstrap_resamples(scores, 16000, np.random.default_rng(0))
    outcomes = [tuple(s.ravel()) for s in samples]
    counts = {o: outcomes.count(o) / len(outcomes) for o in set(outcomes)}
    assert len(counts) == 16
    assert all(abs(f - 1 / 16) < 0.01 for f in counts.values())


def test_bootstrap_interval_is_reproducible_from_its_seed():
    scores = np.random.default_rng(5).normal(size=(5, 4))
    first = stats.stratified_bootstrap_ci(scores, stats.iqm, reps=300, seed=7)
    np.random.seed(123)  # numpy's global RNG must not matter (rliable's pitfall)
    assert stats.stratified_bootstrap_ci(scores, stats.iqm, reps=300, seed=7) == first
    assert first[1] <= first[0] <= first[2]


def test_performance_profile_averages_over_tasks_the_fraction_of_runs_above_tau():
    scores = [[0.2, 1.5], [0.8, 0.5], [1.2, 0.9]]
    # tau 0: all; tau 0.5: task 0 has 0.8 and 1.2 (2/3), task 1 has 1.5 and 0.9 (0.5 is not above): 2/3;
    # tau 1: 1.2 of task 0 and 1.5 of task 1: 1/3; tau 2: none.
    profile = stats.performance_profile(scores, [0.0, 0.5, 1.0, 2.0])
    assert profile == pytest.approx([1.0, 2 / 3, 1 / 3, 0.0])
    point, low, high = stats.performance_profile_ci(scores, [0.0, 0.5, 1.0, 2.0], reps=200, seed=0)
    assert point == pytest.approx(profile)
    assert np.all(low <= point + 1e-12) and np.all(point <= high + 1e-12)


def test_probability_of_improvement_counts_pairs_and_half_ties():
    # one task: pairs (3,2) (3,1) win, (1,2) loses, (1,1) ties: (1 + 1 + 0 + 0.5) / 4 = 0.625
    assert stats.probability_of_improvement([[3.0], [1.0]], [[2.0], [1.0]]) == 0.625
    # a second task that X always loses: average over tasks (0.625 + 0) / 2
    x = [[3.0, 5.0], [1.0, 5.0]]
    y = [[2.0, 6.0], [1.0, 7.0], [1.0, 8.0]]
    # task 0 with 3 runs of Y: (3>2, 3>1, 3>1, 1<2, 1=1, 1=1) -> (3 + 0 + 1) / 6 = 2/3
    assert stats.probability_of_improvement(x, y) == pytest.approx((2 / 3 + 0) / 2)
    assert stats.probability_of_improvement(y, x) == pytest.approx(1 - (2 / 3 + 0) / 2)
    point, low, high = stats.probability_of_improvement_ci(x, y, reps=300, seed=0)
    assert point == pytest.approx(1 / 3) and low <= point <= high


def test_mean_band_resamples_whole_curves():
    curves = [[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]]
    mean, low, high = stats.mean_band(curves, reps=2000, seed=0)
    assert mean.tolist() == [1.0, 2.0, 3.0]
    # resampling whole curves: the band's extremes are the curves themselves
    assert low.tolist() == [0.0, 1.0, 2.0] and high.tolist() == [2.0, 3.0, 4.0]


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError):
        stats.iqm([1.0, 2.0])
    with pytest.raises(ValueError):
        stats.probability_of_improvement([[1.0, 2.0]], [[1.0]])
