"""Aggregate statistics of a benchmark, after Agarwal et al. (NeurIPS 2021), "Deep RL at the edge of the
statistical precipice" (the rliable library).

Every metric is a pure function of a score matrix of shape (runs, tasks): one row per seed, one column
per environment, scores already normalised (`normalise`). Interval estimates come from one helper,
`stratified_bootstrap_ci`, that takes any such metric: runs are resampled with replacement within each
task (the "stratified" bootstrap of section 4), so every resample keeps every task.

rliable itself is not used: version 1.2.0 fails to import with pandas 3 and draws its bootstrap indices
from numpy's global RNG (its `random_state` does not make intervals reproducible; ECOSYSTEM.md). Here
every random draw comes from a `numpy.random.Generator` built from an explicit seed, so the same inputs
give the same report.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Metric = Callable[[np.ndarray], float]


def normalise(scores, random_score: float, reference_score: float) -> np.ndarray:
    """(score - random) / (reference - random): 0 is the random policy, 1 the reference (the
    human-normalised score of Mnih et al. 2015, with a published result as the reference)."""
    if reference_score == random_score:
        raise ValueError(f"reference score {reference_score} equals the random score: cannot normalise")
    return (np.asarray(scores, dtype=float) - random_score) / (reference_score - random_score)


def _matrix(scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=float)
    if scores.ndim != 2 or scores.size == 0:
        raise ValueError(f"expected a non-empty (runs, tasks) score matrix, got shape {scores.shape}")
    return scores


def mean(scores) -> float:
    return float(np.mean(_matrix(scores)))


def median(scores) -> float:
    """Median over tasks of the per-task mean score (the aggregate that Agarwal et al. criticise, kept
    for comparison with older papers)."""
    return float(np.median(np.mean(_matrix(scores), axis=0)))


def iqm(scores) -> float:
    """Interquartile mean of all runs x tasks scores: the mean of the middle 50%, after dropping
    floor(n/4) scores at each end (scipy.stats.trim_mean(x, 0.25, axis=None), which rliable uses)."""
    flat = np.sort(_matrix(scores), axis=None)
    cut = int(0.25 * flat.size)
    return float(np.mean(flat[cut:flat.size - cut]))


def optimality_gap(scores, gamma: float = 1.0) -> float:
    """Mean shortfall below `gamma` (scores above it count as gamma): lower is better."""
    return float(gamma - np.mean(np.minimum(_matrix(scores), gamma)))


def bootstrap_resamples(scores, reps: int, rng: np.random.Generator) -> np.ndarray:
    """`reps` stratified resamples of a (runs, tasks) matrix, shape (reps, runs, tasks): in each task
    column, `runs` rows drawn with replacement from that column only."""
    scores = _matrix(scores)
    runs, tasks = scores.shape
    rows = rng.integers(0, runs, size=(reps, runs, tasks))
    return scores[rows, np.arange(tasks)]


def stratified_bootstrap_ci(scores, metric: Metric, reps: int = 2000, confidence: float = 0.95,
                            seed: int = 0) -> tuple[float, float, float]:
    """(point estimate, lower, upper): the metric on the scores, and the percentile interval of the
    metric over `reps` stratified bootstrap resamples (rliable's default method, "percentile")."""
    scores = _matrix(scores)
    rng = np.random.default_rng(seed)
    values = np.array([metric(sample) for sample in bootstrap_resamples(scores, reps, rng)])
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return metric(scores), float(low), float(high)


def performance_profile(scores, thresholds) -> np.ndarray:
    """Score distribution (Agarwal et al. eq. 4): for each threshold tau, the fraction of runs whose
    score exceeds tau, averaged over tasks (each task weighs the same whatever its number of runs)."""
    scores = _matrix(scores)
    thresholds = np.asarray(thresholds, dtype=float)
    above = scores[None, :, :] > thresholds[:, None, None]
    return above.mean(axis=1).mean(axis=1)


def performance_profile_ci(scores, thresholds, reps: int = 2000, confidence: float = 0.95,
                           seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Profile and its pointwise percentile band over stratified bootstrap resamples."""
    scores = _matrix(scores)
    rng = np.random.default_rng(seed)
    curves = np.array([performance_profile(sample, thresholds) for sample in bootstrap_resamples(scores, reps, rng)])
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(curves, [tail, 100 - tail], axis=0)
    return performance_profile(scores, thresholds), low, high


def probability_of_improvement(x, y) -> float:
    """P(X > Y) of Agarwal et al. section 4.3: for each task, the Mann-Whitney U statistic over all
    pairs of a run of X and a run of Y (a tie counts one half) divided by the number of pairs, then
    averaged over tasks. `x` and `y` are (runs, tasks) matrices over the same tasks, in the same order;
    their numbers of runs may differ."""
    x, y = _matrix(x), _matrix(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"x and y must cover the same tasks (got {x.shape[1]} and {y.shape[1]} columns)")
    greater = (x[:, None, :] > y[None, :, :]).mean(axis=(0, 1))
    ties = (x[:, None, :] == y[None, :, :]).mean(axis=(0, 1))
    return float(np.mean(greater + 0.5 * ties))


def probability_of_improvement_ci(x, y, reps: int = 2000, confidence: float = 0.95,
                                  seed: int = 0) -> tuple[float, float, float]:
    """P(X > Y) with a percentile interval: X and Y each resampled by the stratified bootstrap, from
    one generator (first X's draws, then Y's, per replicate)."""
    x, y = _matrix(x), _matrix(y)
    rng = np.random.default_rng(seed)
    values = [probability_of_improvement(bootstrap_resamples(x, 1, rng)[0], bootstrap_resamples(y, 1, rng)[0])
              for _ in range(reps)]
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(values, [tail, 100 - tail])
    return probability_of_improvement(x, y), float(low), float(high)


def mean_band(curves, reps: int = 2000, confidence: float = 0.95, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Learning curves (runs, points): their mean at each point and a percentile bootstrap band of that
    mean, resampling whole runs (a curve keeps its seed's shape)."""
    curves = _matrix(curves)
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, curves.shape[0], size=(reps, curves.shape[0]))
    means = curves[rows].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    low, high = np.percentile(means, [tail, 100 - tail], axis=0)
    return curves.mean(axis=0), low, high
