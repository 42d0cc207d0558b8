"""Aggregate statistics of a benchmark, after Agarwal et al. (NeurIPS 2021), "Deep RL at the edge of the
statistical precipice" (the rliable library).

Every metric is a pure function of a score matrix of shape (runs, tasks): one row per seed, one column
per environment, scores already normalised (`normalise`). Interval estimates come from one helper,
`stratified_bootstrap_ci`, that takes any such metric: runs are resampled with replacement within each
task (the "stratified" bootstrap of section 4), so every resample keeps every task.

The metrics here also take a stack of matrices, shape (..., runs, tasks), and return one value per
matrix: the bootstrap evaluates all its resamples in a few numpy operations instead of one Python call
per resample, which is what makes rliable's default of 50,000 resamples affordable (a report's
intervals settle to the exact bootstrap distribution's percentiles; 2,000 left some endpoints a whole
atom away from them). A metric of your own that takes one matrix only works too, one call per resample.

rliable itself is not used: version 1.2.0 fails to import with pandas 3 and draws its bootstrap indices
from numpy's global RNG (its `random_state` does not make intervals reproducible; ECOSYSTEM.md). Here
every random draw comes from a `numpy.random.Generator` built from an explicit seed, so the same inputs
give the same report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

Metric = Callable[[np.ndarray], float]

REPS = 50_000          # bootstrap resamples: rliable's default
CHUNK_VALUES = 2 ** 22  # resampled values held at once (a few tens of MB), whatever reps x runs x tasks


def normalise(scores, random_score: float, reference_score: float) -> np.ndarray:
    """(score - random) / (reference - random): 0 is the random policy, 1 the reference (the
    human-normalised score of Mnih et al. 2015, with a published result as the reference)."""
    if reference_score == random_score:
        raise ValueError(f"reference score {reference_score} equals the random score: cannot normalise")
    return (np.asarray(scores, dtype=float) - random_score) / (reference_score - random_score)


def _matrix(scores) -> np.ndarray:
    """A (runs, tasks) matrix, or a stack of them (..., runs, tasks)."""
    scores = np.asarray(scores, dtype=float)
    if scores.ndim < 2 or scores.size == 0:
        raise ValueError(f"expected a non-empty (runs, tasks) score matrix, got shape {scores.shape}")
    return scores


def _value(result: np.ndarray):
    """A float for one matrix, an array for a stack."""
    return float(result) if np.ndim(result) == 0 else result


def mean(scores):
    return _value(np.mean(_matrix(scores), axis=(-2, -1)))


def median(scores):
    """Median over tasks of the per-task mean score (the aggregate that Agarwal et al. criticise, kept
    for comparison with older papers)."""
    return _value(np.median(np.mean(_matrix(scores), axis=-2), axis=-1))


def iqm(scores):
    """Interquartile mean of all runs x tasks scores: the mean of the middle 50%, after dropping
    floor(n/4) scores at each end (scipy.stats.trim_mean(x, 0.25, axis=None), which rliable uses)."""
    scores = _matrix(scores)
    flat = np.sort(scores.reshape(*scores.shape[:-2], -1), axis=-1)
    cut = int(0.25 * flat.shape[-1])
    return _value(np.mean(flat[..., cut:flat.shape[-1] - cut], axis=-1))


def optimality_gap(scores, gamma: float = 1.0):
    """Mean shortfall below `gamma` (scores above it count as gamma): lower is better."""
    return _value(gamma - np.mean(np.minimum(_matrix(scores), gamma), axis=(-2, -1)))


def bootstrap_resamples(scores, reps: int, rng: np.random.Generator) -> np.ndarray:
    """`reps` stratified resamples of a (runs, tasks) matrix, shape (reps, runs, tasks): in each task
    column, `runs` rows drawn with replacement from that column only."""
    scores = _matrix(scores)
    runs, tasks = scores.shape
    rows = rng.integers(0, runs, size=(reps, runs, tasks))
    return scores[rows, np.arange(tasks)]


def _chunks(reps: int, per_resample: int) -> Iterator[int]:
    """Sizes of the batches of resamples drawn at once: all of them, unless that would hold more than
    CHUNK_VALUES numbers. The sizes depend on the shapes only, so the draws (and the intervals) are the
    same on every machine."""
    step = max(1, CHUNK_VALUES // max(1, per_resample))
    for start in range(0, reps, step):
        yield min(step, reps - start)


def _apply(metric: Metric, samples: np.ndarray) -> np.ndarray:
    """The metric of each resample of a stack (n, runs, tasks): in one call where the metric takes
    stacks (every metric of this module), else one call per resample."""
    try:
        values = np.asarray(metric(samples), dtype=float)
    except (ValueError, TypeError, IndexError):
        values = None
    if values is None or values.shape != samples.shape[:1]:
        values = np.array([metric(sample) for sample in samples], dtype=float)
    return values


def _percentile_interval(values: np.ndarray, confidence: float, axis: int = 0):
    tail = 100 * (1 - confidence) / 2
    return np.percentile(values, [tail, 100 - tail], axis=axis)


def stratified_bootstrap_ci(scores, metric: Metric, reps: int = REPS, confidence: float = 0.95,
                            seed: int = 0) -> tuple[float, float, float]:
    """(point estimate, lower, upper): the metric on the scores, and the percentile interval of the
    metric over `reps` stratified bootstrap resamples (rliable's default method, "percentile")."""
    scores = _matrix(scores)
    rng = np.random.default_rng(seed)
    values = np.concatenate([_apply(metric, bootstrap_resamples(scores, n, rng))
                             for n in _chunks(reps, scores.size)])
    low, high = _percentile_interval(values, confidence)
    return float(metric(scores)), float(low), float(high)


def performance_profile(scores, thresholds) -> np.ndarray:
    """Score distribution (Agarwal et al. eq. 4): for each threshold tau, the fraction of runs whose
    score exceeds tau, averaged over tasks (each task weighs the same whatever its number of runs).
    For a stack (..., runs, tasks): shape (..., thresholds)."""
    scores = _matrix(scores)
    thresholds = np.asarray(thresholds, dtype=float)
    above = scores[..., None, :, :] > thresholds[:, None, None]
    return above.mean(axis=(-2, -1))


def performance_profile_ci(scores, thresholds, reps: int = REPS, confidence: float = 0.95,
                           seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Profile and its pointwise percentile band over stratified bootstrap resamples. A resample's profile
    depends only on how often it drew each run: with those counts (resamples, runs, tasks) and which runs
    are above each threshold (runs, tasks, thresholds), every profile is one matrix product, the same
    numbers as `performance_profile` of each resample, at a fraction of the memory and time."""
    scores = _matrix(scores)
    thresholds = np.asarray(thresholds, dtype=float)
    runs, tasks = scores.shape
    above = (scores[:, :, None] > thresholds).astype(float)
    rng = np.random.default_rng(seed)
    curves = []
    for n in _chunks(reps, runs * tasks * max(runs, len(thresholds))):
        rows = rng.integers(0, runs, size=(n, runs, tasks))  # the draws of bootstrap_resamples
        counts = (rows[:, :, :, None] == np.arange(runs)).sum(axis=1).transpose(0, 2, 1)  # (n, runs, tasks)
        curves.append(np.einsum("nrt,rtk->nk", counts.astype(float), above) / (runs * tasks))
    low, high = _percentile_interval(np.concatenate(curves), confidence)
    return performance_profile(scores, thresholds), low, high


def probability_of_improvement(x, y):
    """P(X > Y) of Agarwal et al. section 4.3: for each task, the Mann-Whitney U statistic over all
    pairs of a run of X and a run of Y (a tie counts one half) divided by the number of pairs, then
    averaged over tasks. `x` and `y` are (runs, tasks) matrices over the same tasks, in the same order;
    their numbers of runs may differ. Stacks (n, runs, tasks) of the same n give n values."""
    x, y = _matrix(x), _matrix(y)
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"x and y must cover the same tasks (got {x.shape[-1]} and {y.shape[-1]} columns)")
    pairs_x, pairs_y = x[..., :, None, :], y[..., None, :, :]  # (..., runs of x, runs of y, tasks)
    wins = (pairs_x > pairs_y).mean(axis=(-3, -2)) + 0.5 * (pairs_x == pairs_y).mean(axis=(-3, -2))
    return _value(wins.mean(axis=-1))


def probability_of_improvement_ci(x, y, reps: int = REPS, confidence: float = 0.95,
                                  seed: int = 0) -> tuple[float, float, float]:
    """P(X > Y) with a percentile interval: X and Y each resampled by the stratified bootstrap
    (independently: they are different runs), from one generator, a batch of X's resamples then the
    same number of Y's."""
    x, y = _matrix(x), _matrix(y)
    rng = np.random.default_rng(seed)
    values = []
    for n in _chunks(reps, x.shape[0] * y.shape[0] * x.shape[1]):
        x_samples = bootstrap_resamples(x, n, rng)
        values.append(probability_of_improvement(x_samples, bootstrap_resamples(y, n, rng)))
    low, high = _percentile_interval(np.concatenate(values), confidence)
    return probability_of_improvement(x, y), float(low), float(high)


def mean_band(curves, reps: int = REPS, confidence: float = 0.95, seed: int = 0
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Learning curves (runs, points): their mean at each point and a percentile bootstrap band of that
    mean, resampling whole runs (a curve keeps its seed's shape)."""
    curves = _matrix(curves)
    if curves.ndim != 2:
        raise ValueError(f"expected (runs, points) curves, got shape {curves.shape}")
    rng = np.random.default_rng(seed)
    means = []
    for n in _chunks(reps, curves.size):
        rows = rng.integers(0, curves.shape[0], size=(n, curves.shape[0]))
        means.append(curves[rows].mean(axis=1))
    low, high = _percentile_interval(np.concatenate(means), confidence)
    return curves.mean(axis=0), low, high
