"""rlrun-report on a tiny real suite: four very short PPO runs on CartPole (two clip values x two seeds)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

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
