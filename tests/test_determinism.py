"""Two CPU runs with the same seed produce the same metrics, step for step."""

from __future__ import annotations

import csv

TIMING_COLUMNS = {"sps", "elapsed"}


def metrics_without_timing(path):
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in csv.DictReader(f)]


def test_same_seed_gives_identical_metrics(rlrun, tmp_path):
    runs = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        # 4 envs x 512 steps: two iterations, two metrics rows (conf/tuned/ppo_Pendulum.yaml's are 4 x 1024).
        result = rlrun("env=Pendulum", "seed=7", "total_steps=4096", "eval.every_steps=2048", "eval.episodes=2",
                       "algo.num_steps=512", "logger=csv", "hardware=cpu", cwd=tmp_path, run_dir=run_dir)
        assert result.returncode == 0, result.describe()
        runs.append(run_dir)
    first, second = (metrics_without_timing(run / "metrics.csv") for run in runs)
    assert len(first) == 2 and first == second
    # eval.csv's elapsed (wall-clock seconds at each evaluation) is a timing column too.
    first, second = (metrics_without_timing(run / "eval.csv") for run in runs)
    assert len(first) == 2 and first == second


def test_different_seeds_give_different_metrics(rlrun, tmp_path):
    rows = []
    for seed in (1, 2):
        run_dir = tmp_path / f"s{seed}"
        result = rlrun("env=Pendulum", f"seed={seed}", "total_steps=2048", "eval.episodes=1", "logger=csv",
                       "hardware=cpu", cwd=tmp_path, run_dir=run_dir)
        assert result.returncode == 0, result.describe()
        rows.append(metrics_without_timing(run_dir / "metrics.csv"))
    assert rows[0] != rows[1]
