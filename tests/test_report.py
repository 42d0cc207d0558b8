"""rlrun-report on tiny real runs: four very short PPO runs on CartPole (two clip values x two seeds); and the
claims figures on two tiny suites (DQN and Double DQN: value estimates, normalised scores; A3C with 1 and 2
workers: speed and time to a score)."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from rlrun.bench import report as report_module
from rlrun.bench.runs import group, read_runs
from rlrun.config import ConfigError

REPORT = str(Path(sys.executable).parent / "rlrun-report")


@pytest.fixture(scope="module")
def sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sweep")
    cmd = [sys.executable, "-m", "rlrun.cli", "-m", "algo=ppo", "env=CartPole", "seed=0,1", "algo.clip_coef=0.2,0.1",
           "total_steps=512", "eval.every_steps=256", "eval.episodes=2", "logger=csv", "hardware=cpu",
           f"hydra.sweep.dir={root / 'multirun'}"]
    done = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return root / "multirun"


def test_report_aggregates_a_real_multirun(sweep, tmp_path):
    out = tmp_path / "report"
    done = subprocess.run([REPORT, str(sweep), "--out", str(out)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "report.json").read_text())
    labels = sorted(row["label"] for row in data["rows"])
    assert labels == ["ppo[algo.clip_coef=0.1]", "ppo[algo.clip_coef=0.2]"]
    for row in data["rows"]:
        summaries = [json.loads(p.read_text()) for p in sorted(sweep.glob("*/summary.json"))
                     if f"clip_coef={row['label'][-4:-1]}" in (p.parent / ".hydra" / "overrides.yaml").read_text()]
        assert sorted(row["final_returns"]) == sorted(s["final_eval_mean_return"] for s in summaries)
        assert row["seeds"] == [0, 1] and row["budget"] == 512
        # normalised with CartPole's random score 23.68 and reference 500 (conf/bench/reference)
        assert row["normalised_mean"] == pytest.approx((row["mean"] - 23.68) / (500 - 23.68))
        assert any(p["source"].startswith("RL Baselines3 Zoo") for p in row["published"])
    for label, agg in data["aggregates"].items():
        assert agg["envs"] == ["CartPole"] and len(agg["scores"]) == 2
        point, low, high = agg["iqm"]
        assert low <= point <= high
    (improvement,) = data["improvements"]
    x, y = ({r["label"]: r["final_returns"] for r in data["rows"]}[k] for k in (improvement["x"], improvement["y"]))
    pairs = [(a, b) for a in x for b in y]
    by_hand = sum(1.0 if a > b else 0.5 if a == b else 0.0 for a, b in pairs) / len(pairs)
    assert improvement["x"] == "ppo[algo.clip_coef=0.1]" and improvement["p"] == pytest.approx(by_hand)
    text = (out / "report.md").read_text()
    for needle in ("IQM [95% CI]", "P(X > Y)", "learning_curves.png", "## Speed", "Commit(s):", "torch"):
        assert needle in text
    assert (out / "learning_curves.png").stat().st_size > 0 and (out / "performance_profiles.png").stat().st_size > 0
    assert len(data["speed"]) == 4 and all(s["steps_per_second"] > 0 for s in data["speed"])


def test_rlrun_report_figures_draws_claims_figures_for_a_plain_multirun(sweep, tmp_path):
    out = tmp_path / "report"
    done = subprocess.run([REPORT, str(sweep), "--out", str(out), "--figures", "normalised_scores"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    data = json.loads((out / "report.json").read_text())
    assert [s["label"] for s in data["figures"]["normalised_scores"]["settings"]] == sorted(
        row["label"] for row in data["rows"])
    assert (out / "normalised_scores.png").stat().st_size > 0
    bad = subprocess.run([REPORT, str(sweep), "--out", str(tmp_path / "bad"), "--figures", "speedup"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and not (tmp_path / "bad").exists()
    assert bad.stderr.strip().splitlines() == [
        "rlrun-report: error: --figures: unknown figure 'speedup'; choose from: value_estimates, workers, "
        "normalised_scores"]


def test_same_runs_give_the_same_report(sweep, tmp_path):
    first = report_module.write_report([sweep], tmp_path / "a")
    second = report_module.write_report([sweep], tmp_path / "b")
    assert first.read_text() == second.read_text()
    assert (tmp_path / "a" / "report.json").read_bytes() == (tmp_path / "b" / "report.json").read_bytes()


def _copy_run(sweep: Path, dest: Path, seed: int) -> Path:
    source = next(p.parent for p in sorted(sweep.glob("*/summary.json")))
    run = dest / f"copy_seed{seed}"
    shutil.copytree(source, run)
    return run


def test_runs_with_different_budgets_in_one_row_are_refused_in_one_line(sweep, tmp_path):
    mixed = tmp_path / "mixed"
    shutil.copytree(sweep, mixed / "multirun")
    run = _copy_run(sweep, mixed, seed=7)
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text())
    config["total_steps"], config["seed"] = 256, 7
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    summary = json.loads((run / "summary.json").read_text()) | {"seed": 7}
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ConfigError, match="different budgets"):
        group(read_runs([mixed]))
    done = subprocess.run([REPORT, str(mixed), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    assert len(done.stderr.strip().splitlines()) == 1 and "different budgets (total_steps 256" in done.stderr
    assert not (tmp_path / "out").exists()


def test_an_empty_directory_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    done = subprocess.run([REPORT, str(tmp_path / "empty")], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [f"rlrun-report: error: {tmp_path / 'empty'}: no run directories there "
                                                "(a run directory holds .hydra/config.yaml and summary.json, written by rlrun)"]


def test_incomplete_runs_are_left_out_and_listed(sweep, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(sweep, partial)
    summary_path = next(sorted(partial.glob("*/summary.json")).__iter__())
    summary = json.loads(summary_path.read_text()) | {"interrupted": True, "total_steps": 256}
    summary_path.write_text(json.dumps(summary))
    data, _ = report_module.build([partial])
    assert data["incomplete"] == [summary_path.parent.name]
    assert sum(len(row["seeds"]) for row in data["rows"]) == 3


def test_a_run_directory_without_results_is_one_line(tmp_path):
    """A run that died before its first evaluation: .hydra/config.yaml and nothing else."""
    run = tmp_path / "crashed" / "run0"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "total_steps": 512}))
    done = subprocess.run([REPORT, str(tmp_path / "crashed"), "--out", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        f"rlrun-report: error: no complete runs under {tmp_path / 'crashed'} (1 incomplete: interrupted or short of "
        "their budget); finish them with rlrun resume=<run dir>"]


def test_final_episodes_that_disagree_with_eval_csv_are_one_line(sweep, tmp_path):
    damaged = tmp_path / "damaged"
    shutil.copytree(sweep, damaged)
    run = next(p.parent for p in sorted(damaged.glob("*/summary.json")))
    lines = (run / "eval_episodes.csv").read_text().splitlines()
    fields = lines[-1].split(",")
    fields[1] = str(float(fields[1]) + 1)  # one episode of the final evaluation, one point more
    (run / "eval_episodes.csv").write_text("\n".join(lines[:-1] + [",".join(fields)]) + "\n")
    done = subprocess.run([REPORT, str(damaged), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"rlrun-report: error: {run}: inconsistent final evaluation at step 512: "
                           "eval_episodes.csv's episodes average ")


def test_the_report_lists_each_runs_final_episodes(sweep, tmp_path):
    data, _ = report_module.build([sweep])
    for row in data["rows"]:
        assert row["final_episodes"] == [2, 2]  # eval.episodes=2
        finals = []
        for run in sweep.glob("*/eval_episodes.csv"):
            if f"clip_coef={row['label'][-4:-1]}" in (run.parent / ".hydra" / "overrides.yaml").read_text():
                with run.open(newline="") as f:
                    episodes = [float(r["episodic_return"]) for r in csv.DictReader(f) if r["global_step"] == "512"]
                finals.append(episodes)
        assert row["episode_std"] == pytest.approx(np.mean([np.std(e) for e in finals]))
        assert row["episode_range"] == [min(map(min, finals)), max(map(max, finals))]


# --- the claims figures on tiny real suites ---------------------------------------------------------------

BENCH = str(Path(sys.executable).parent / "rlrun-bench")


def run_suite(tmp_path: Path, name: str, **data) -> Path:
    out = tmp_path / name
    suite = {"envs": ["CartPole"], "launcher": "basic", "overrides": ["logger=csv", "hardware=cpu"], "out": str(out),
             **data}
    (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(suite))
    done = subprocess.run([BENCH, str(tmp_path / f"{name}.yaml")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def eval_csv(run: Path) -> list[dict]:
    with (run / "eval.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def dqn_suite(tmp_path_factory) -> Path:
    """DQN and Double DQN, 2 seeds of 600 steps: value estimates and normalised scores."""
    quick = ["algo.learning_starts=200", "algo.steps_per_iteration=200"]
    return run_suite(tmp_path_factory.mktemp("dqn"), "values", seeds=[0, 1], total_steps=600, eval_every_steps=300,
                     eval_episodes=2, figures=["value_estimates", "normalised_scores"],
                     entries=[{"label": "dqn", "algo": "dqn", "overrides": quick},
                              {"label": "double", "algo": "double_dqn", "overrides": quick}])


@pytest.fixture(scope="module")
def a3c_suite(tmp_path_factory) -> Path:
    """A3C with 1 and 2 workers, one seed of 3,000 steps each: the workers figure. (At 500 steps a quiet
    machine's workers, ~14k steps/s, could finish before the runner's first evaluation: one eval.csv row,
    no rate between two.)"""
    quick = ["algo.report_every=125"]
    return run_suite(tmp_path_factory.mktemp("a3c"), "workers", seeds=[0], total_steps=3000, eval_every_steps=1000,
                     eval_episodes=2, figures=["workers"],
                     entries=[{"label": "a3c-1w", "algo": "a3c", "overrides": ["hardware.workers=1", *quick]},
                              {"label": "a3c-2w", "algo": "a3c", "overrides": ["hardware.workers=2", *quick]}])


def test_value_estimate_and_normalised_score_figures_from_a_real_suite(dqn_suite):
    data = json.loads((dqn_suite / "report" / "report.json").read_text())
    entries = {e["label"]: e for e in data["figures"]["value_estimates"]["entries"]}
    assert sorted(entries) == ["double", "dqn"]
    for label, entry in entries.items():
        finals = [eval_csv(dqn_suite / "runs" / label / "CartPole" / f"seed{s}")[-1] for s in (0, 1)]
        estimates = [float(r["value_estimate"]) for r in finals]
        actual = [float(r["return_to_go"]) for r in finals]
        assert entry["seeds"] == [0, 1] and entry["final_estimate"][0] == pytest.approx(np.mean(estimates))
        assert entry["final_actual"][0] == pytest.approx(np.mean(actual))
        assert entry["final_overestimation"][0] == pytest.approx(np.mean(estimates) - np.mean(actual))
        assert entry["final_states"] == [int(r["value_states"]) for r in finals]
        assert entry["train_max_q"] is not None
        assert entry["estimate"]["x"] == [int(r["global_step"]) for r in eval_csv(dqn_suite / "runs" / label /
                                                                                   "CartPole" / "seed0")]
    scores = data["figures"]["normalised_scores"]
    finals = {row["label"]: row["final_returns"] for row in data["rows"]}
    best = max(np.mean(v) for v in finals.values())
    assert [s["label"] for s in scores["settings"]] == ["dqn", "double"]  # the suite's order
    for setting in scores["settings"]:
        by_hand = (np.array(finals[setting["label"]]) - 23.68) / (best - 23.68)
        assert setting["mean"][0] == pytest.approx(by_hand.mean())
    text = (dqn_suite / "report" / "report.md").read_text()
    assert "## Value estimates against the true discounted return" in text and "Table 1" in text
    for image in ("value_estimates.png", "normalised_scores.png"):
        assert (dqn_suite / "report" / image).stat().st_size > 0 and f"]({image})" in text


def test_workers_figure_from_a_real_suite_and_from_rlrun_report(a3c_suite, tmp_path):
    data = json.loads((a3c_suite / "report" / "report.json").read_text())
    (group,) = data["figures"]["workers"]["groups"]
    rows = {w: eval_csv(a3c_suite / "runs" / f"a3c-{w}w" / "CartPole" / "seed0") for w in (1, 2)}
    assert group["algo"] == "a3c" and [p["workers"] for p in group["points"]] == [1, 2]
    # No score named: the best evaluation return that both runs reached.
    score = min(max(float(r["mean_return"]) for r in runs) for runs in rows.values())
    assert group["score"] == score
    for point in group["points"]:
        runs = rows[point["workers"]]
        steps = [float(r["global_step"]) for r in runs]
        elapsed = [float(r["elapsed"]) for r in runs]
        assert point["steps_per_second"][0] == pytest.approx((steps[-1] - steps[0]) / (elapsed[-1] - elapsed[0]))
        reached = next(float(r["elapsed"]) for r in runs if float(r["mean_return"]) >= score)
        assert point["time_to_score"][0] == pytest.approx(reached)
    one, two = group["points"]
    assert two["speedup"] == pytest.approx(two["steps_per_second"][0] / one["steps_per_second"][0])
    # rlrun-report on the suite's directory finds the figures the suite named (OUT/runs/bench.json).
    done = subprocess.run([REPORT, str(a3c_suite), "--out", str(tmp_path / "again")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    again = json.loads((tmp_path / "again" / "report.json").read_text())
    assert again["figures"] == data["figures"] and (tmp_path / "again" / "workers.png").stat().st_size > 0
