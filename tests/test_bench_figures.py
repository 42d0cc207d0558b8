"""The claims figures' numbers (rlrun.bench.figures) and the per-episode check (rlrun.bench.runs.final_episodes)
on hand-made runs, against values worked by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rlrun.bench import figures
from rlrun.bench.figures import Context
from rlrun.bench.runs import Run, final_episodes, read_run
from rlrun.config import ConfigError

CTX = Context(reps=500, seed=0)


def make_run(label: str, env: str, seed: int, final: float, path: Path = Path("."), workers: int | None = None,
             columns: dict | None = None, summary: dict | None = None) -> Run:
    columns = {k: np.asarray(v, dtype=float) for k, v in (columns or {}).items()}
    return Run(path=path, label=label, algo=label.split("-")[0], env=env, seed=seed, budget=1000, complete=True,
               summary={"final_eval_mean_return": final, **(summary or {})},
               config={"hardware": {"workers": workers}} if workers else {},
               eval_steps=columns.get("global_step", np.zeros(0)).astype(np.int64),
               eval_returns=columns.get("mean_return", np.zeros(0)), eval_columns=columns)


def test_normalised_scores_put_random_at_zero_and_the_best_setting_at_one():
    rows = {("A", "E"): [make_run("A", "E", 0, 50.0), make_run("A", "E", 1, 70.0)],
            ("B", "E"): [make_run("B", "E", 0, 90.0), make_run("B", "E", 1, 110.0)],
            ("A", "F"): [make_run("A", "F", 0, 5.0), make_run("A", "F", 1, 5.0)],
            ("B", "F"): [make_run("B", "F", 0, 2.0), make_run("B", "F", 1, 4.0)],
            ("A", "G"): [make_run("A", "G", 0, 1.0)]}
    ctx = Context(reps=500, seed=0, scales={"E": {"random_score": "10"}, "F": {"random_score": "0"}}, order=["B", "A"])
    data = figures.compute_normalised_scores(rows, {}, ctx)
    # E: best mean 100 (B), random 10: A scores 40/90 and 60/90, B 80/90 and 100/90.
    # F: best mean 5 (A), random 0: A scores 1 and 1, B 0.4 and 0.8.
    assert data["envs"] == ["E", "F"] and data["best"] == {"E": 100.0, "F": 5.0}
    assert [s["label"] for s in data["settings"]] == ["B", "A"]  # the suite's order
    b, a = data["settings"]
    assert a["per_env"] == pytest.approx({"E": 50 / 90, "F": 1.0})
    assert b["per_env"] == pytest.approx({"E": 1.0, "F": 0.6})
    assert a["mean"][0] == pytest.approx((40 / 90 + 60 / 90 + 1 + 1) / 4)
    assert b["mean"][0] == pytest.approx((80 / 90 + 100 / 90 + 0.4 + 0.8) / 4)
    assert a["mean"][1] <= a["mean"][0] <= a["mean"][2]
    assert data["skipped"] == ["G (no random-policy score in conf/bench/reference/normalisation.csv)"]


def test_steps_per_second_is_measured_between_the_first_and_last_evaluation():
    run = make_run("a3c", "E", 0, 0.0, columns={"global_step": [1000, 2000, 3000], "mean_return": [1, 2, 3],
                                                "elapsed": [10.0, 15.0, 20.0]})
    assert figures.steps_per_second(run) == (3000 - 1000) / (20 - 10)
    once = make_run("a3c", "E", 0, 0.0, columns={"global_step": [3000], "mean_return": [1], "elapsed": [25.0]},
                    summary={"total_steps": 3000, "wall_seconds": 30.0})
    assert figures.steps_per_second(once) == 100.0  # one evaluation: the whole run's steps over its wall time


def test_time_to_score_is_the_elapsed_time_of_the_first_evaluation_that_reaches_it():
    run = make_run("a3c", "E", 0, 20.0, columns={"global_step": [1, 2, 3], "mean_return": [5.0, 12.0, 20.0],
                                                 "elapsed": [10.0, 15.0, 20.0]})
    assert figures.time_to_score(run, 12.0) == 15.0
    assert figures.time_to_score(run, 4.0) == 10.0
    assert figures.time_to_score(run, 25.0) is None


def test_workers_speed_up_is_relative_to_the_fewest_workers():
    def run(label, seed, workers, elapsed, returns):
        return make_run(label, "E", seed, returns[-1], workers=workers,
                        columns={"global_step": [1000, 2000, 3000], "mean_return": returns, "elapsed": elapsed})
    rows = {("a3c-1w", "E"): [run("a3c-1w", 0, 1, [10, 20, 30], [1, 5, 9]), run("a3c-1w", 1, 1, [10, 30, 50], [1, 2, 9])],
            ("a3c-2w", "E"): [run("a3c-2w", 0, 2, [5, 10, 15], [1, 9, 9]), run("a3c-2w", 1, 2, [5, 15, 25], [9, 9, 9])]}
    (group,) = figures.compute_workers(rows, {"score": {"E": 9}}, CTX)["groups"]
    one, two = group["points"]
    # 1 worker: 2000 steps over 20 s and over 40 s: 100 and 50 steps/s, mean 75; 2 workers: 200 and 100, mean 150.
    assert one["steps_per_second"][0] == 75.0 and two["steps_per_second"][0] == 150.0
    assert two["speedup"] == 2.0
    # Time to 9: 30 and 50 s (mean 40) with 1 worker; 10 and 5 s (mean 7.5) with 2: 40 / 7.5 faster.
    assert one["time_to_score"][0] == 40.0 and two["time_to_score"][0] == 7.5
    assert two["time_speedup"] == pytest.approx(40 / 7.5) and two["reached"] == 2
    # Without a score: the best evaluation return every run reached (9 here too).
    assert figures.compute_workers(rows, {}, CTX)["groups"][0]["score"] == 9.0


def test_value_estimates_final_overestimation_by_hand(tmp_path):
    runs = []
    for seed, (estimate, actual, max_q) in enumerate([([1.0, 4.0], [3.0, 2.5], [0.5, 3.0]),
                                                      ([2.0, 6.0], [3.0, 3.5], [1.0, 5.0])]):
        (tmp_path / f"s{seed}").mkdir()
        (tmp_path / f"s{seed}" / "metrics.csv").write_text(
            "global_step,max_q\n250,\n500," + f"{max_q[0]}\n1000,{max_q[1]}\n")
        runs.append(make_run("dqn", "E", seed, 0.0, path=tmp_path / f"s{seed}",
                             columns={"global_step": [500, 1000], "mean_return": [1, 1], "value_estimate": estimate,
                                      "return_to_go": actual, "value_states": [10, 12]}))
    runs.append(make_run("ppo", "E", 0, 0.0, columns={"global_step": [500], "mean_return": [1]}))
    data = figures.compute_value_estimates({("dqn", "E"): runs[:2], ("ppo", "E"): runs[2:]}, {}, CTX)
    (entry,) = data["entries"]  # PPO has no value estimate
    # final: estimates 4 and 6 (mean 5), actual 2.5 and 3.5 (mean 3), overestimation 1.5 and 2.5 (mean 2)
    assert entry["final_estimate"][0] == 5.0 and entry["final_actual"][0] == 3.0
    assert entry["final_overestimation"][0] == 2.0 and entry["final_overestimation"][1:] == [1.5, 2.5]
    assert entry["final_train_max_q"][0] == 4.0 and entry["final_states"] == [12, 12]
    assert entry["estimate"]["mean"] == [1.5, 5.0] and entry["train_max_q"]["x"] == [500, 1000]


def test_band_averages_runs_where_all_have_data():
    curve = figures.band([(np.array([0, 10, 20]), np.array([0.0, 1.0, 2.0])),
                          (np.array([0, 10]), np.array([2.0, 3.0]))], reps=200, seed=0)
    assert curve["x"] == [0, 10] and curve["mean"] == [1.0, 2.0] and curve["runs"] == 2
    # Wall-clock x differs run to run: an even grid over the overlap [2, 8], each run interpolated.
    timed = figures.band([(np.array([1.0, 9.0]), np.array([0.0, 8.0])), (np.array([2.0, 8.0]), np.array([2.0, 8.0]))],
                         reps=200, seed=0, points=3)
    assert timed["x"] == [2.0, 5.0, 8.0] and timed["mean"] == pytest.approx([1.5, 4.5, 7.5])
    # A long curve (metrics.csv of a 10M-step run) is thinned to MAX_POINTS, its ends kept.
    steps = np.arange(1, 10_001) * 1000.0
    long = figures.band([(steps, steps / 1000), (steps, steps / 500)], reps=50, seed=0)
    assert len(long["x"]) == figures.MAX_POINTS and long["x"][0] == 1000.0 and long["x"][-1] == 10_000_000.0
    assert long["mean"] == pytest.approx([1.5 * x / 1000 for x in long["x"]])


@pytest.mark.parametrize("spec, message", [
    (["value_estimate"], "unknown figure 'value_estimate'; choose from: value_estimates, workers, normalised_scores"),
    ([{"workers": {"scor": 1}}], "figure workers takes the options: score"),
    ([{"workers": {"score": "high"}}], "workers.score must be a number or {env: number}"),
    ("workers", "must be a list of figure names"),
])
def test_a_bad_figures_list_is_one_line(spec, message):
    with pytest.raises(ConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        figures.parse_figures(spec)


def write_run(run_dir: Path, episodes: list[tuple[int, float]], eval_rows: list[tuple[int, float]],
              summary_final: float) -> Run:
    (run_dir / ".hydra").mkdir(parents=True)
    (run_dir / ".hydra" / "config.yaml").write_text("seed: 0\ntotal_steps: 1000\neval:\n  episodes: 2\n")
    (run_dir / "summary.json").write_text(f'{{"final_eval_mean_return": {summary_final}, "total_steps": 1000, '
                                          '"interrupted": false, "stopped_early": false, "seed": 0}')
    (run_dir / "eval.csv").write_text("global_step,mean_return\n" + "".join(f"{s},{r}\n" for s, r in eval_rows))
    (run_dir / "eval_episodes.csv").write_text("global_step,episodic_return,episodic_length,elapsed\n" +
                                               "".join(f"{s},{r},1,0.0\n" for s, r in episodes))
    return read_run(run_dir)


def test_final_episodes_are_the_last_evaluations_and_must_match_eval_csv(tmp_path):
    good = write_run(tmp_path / "good", [(500, 1.0), (500, 2.0), (1000, 3.0), (1000, 5.0)],
                     [(500, 1.5), (1000, 4.0)], 4.0)
    assert final_episodes(good).tolist() == [3.0, 5.0]
    bad_mean = write_run(tmp_path / "bad_mean", [(1000, 3.0), (1000, 6.0)], [(1000, 4.0)], 4.0)
    with pytest.raises(ConfigError, match=r"inconsistent final evaluation at step 1,000: eval_episodes.csv's "
                                          r"episodes average 4.5, eval.csv says 4"):
        final_episodes(bad_mean)
    missing = write_run(tmp_path / "missing", [(1000, 4.0)], [(1000, 4.0)], 4.0)
    with pytest.raises(ConfigError, match="eval_episodes.csv has 1 episodes there, eval.episodes is 2"):
        final_episodes(missing)
    summary = write_run(tmp_path / "summary", [(1000, 3.0), (1000, 5.0)], [(1000, 4.0)], 7.0)
    with pytest.raises(ConfigError, match="eval.csv says 4, summary.json says 7"):
        final_episodes(summary)
