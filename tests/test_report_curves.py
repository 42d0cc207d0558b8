"""Learning curves of a report row (rlrun.bench.report.curve_matrix) on hand-made runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from rlrun.bench.report import curve_matrix
from rlrun.bench.runs import Run


def run(seed: int, steps: list[int], returns: list[float]) -> Run:
    return Run(path=Path("."), label="a3c", algo="a3c", env="CartPole", seed=seed, budget=5000, complete=True,
               eval_steps=np.array(steps), eval_returns=np.array(returns, dtype=float))


def test_curves_share_the_first_seeds_steps_up_to_the_shortest_run():
    grid, matrix = curve_matrix([run(0, [100, 200, 300], [1, 2, 3]), run(1, [110, 210], [10, 20])])
    assert grid.tolist() == [100, 200]
    # seed 1 interpolated at 100 (before its first evaluation: its first value) and 200 (between 110 and 210)
    assert matrix.tolist() == [[1.0, 2.0], [10.0, 19.0]]


def test_runs_evaluated_once_at_different_steps_still_give_a_curve():
    # A3C's workers overshoot the budget by different amounts: one evaluation each, at 5216, 5120, 5088.
    grid, matrix = curve_matrix([run(0, [5216], [30.0]), run(1, [5120], [40.0]), run(2, [5088], [50.0])])
    assert grid.tolist() == [5088]
    assert matrix.tolist() == [[30.0], [40.0], [50.0]]
