"""DQN, Double DQN and Dueling DQN through the real `rlrun` command: run, checkpoint, resume (with and
without the replay buffer), and the one-line refusal of a continuous action space."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

FIRST, FINAL = 2000, 3000
ITERATION = 250  # env steps per metrics row (algo.steps_per_iteration)
LEARNING_STARTS = 500
TRAIN_FREQUENCY = 4
# CartPole with the tuned settings, shrunk to a few seconds: a gradient step every 4 env steps.
SHORT = ("env=CartPole", "logger=csv", "hardware=cpu", "eval.episodes=1", "eval.every_steps=1000",
         "checkpoint.every_steps=1000", f"algo.learning_starts={LEARNING_STARTS}",
         f"algo.steps_per_iteration={ITERATION}", f"algo.train_frequency={TRAIN_FREQUENCY}", "algo.gradient_steps=1",
         "algo.buffer_size=10000")


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def run_and_resume(rlrun, cwd: Path, algo: str, replay: bool) -> dict:
    run_dir = cwd / "run"
    first = rlrun(f"algo={algo}", *SHORT, f"total_steps={FIRST}", f"checkpoint.replay={str(replay).lower()}",
                  cwd=cwd, run_dir=run_dir)
    checkpoint = load(run_dir / "checkpoints" / "last.pt") if first.returncode == 0 else None
    second = rlrun(f"resume={run_dir}", f"total_steps={FINAL}", cwd=cwd) if first.returncode == 0 else None
    return {"run_dir": run_dir, "first": first, "checkpoint": checkpoint, "second": second}


@pytest.fixture(scope="module", params=[("dqn", True), ("double_dqn", True), ("dueling_dqn", True), ("dqn", False)],
                ids=["dqn-replay", "double_dqn-replay", "dueling_dqn-replay", "dqn-no-replay"])
def resumed(request, rlrun, tmp_path_factory) -> dict:
    algo, replay = request.param
    return {"algo": algo, "replay": replay, **run_and_resume(rlrun, tmp_path_factory.mktemp(algo), algo, replay)}


def test_run_exits_zero_and_checkpoints_networks_optimiser_and_target(resumed):
    assert resumed["first"].returncode == 0, resumed["first"].describe()
    state = resumed["checkpoint"]
    assert state["algo_name"] == resumed["algo"] and state["global_step"] == FIRST
    algo = state["algo"]
    assert {"net", "target_net", "optimizer", "generator", "target_updated_at", "gradient_updates"} <= set(algo)
    assert algo["gradient_updates"] == (FIRST - LEARNING_STARTS) // TRAIN_FREQUENCY + 1
    dueling = resumed["algo"] == "dueling_dqn"
    assert any("advantage_head" in key for key in algo["net"]) == dueling


def test_replay_is_in_the_checkpoint_only_with_checkpoint_replay_true(resumed):
    algo = resumed["checkpoint"]["algo"]
    if resumed["replay"]:
        assert algo["replay"]["size"] == FIRST and algo["replay"]["obs"].shape == (FIRST, 4)
    else:
        assert "replay" not in algo


def test_resume_trains_to_the_new_budget_without_repeating_a_step(resumed):
    assert resumed["second"] is not None and resumed["second"].returncode == 0, resumed["second"].describe()
    summary = json.loads((resumed["run_dir"] / "summary.json").read_text())
    assert summary["total_steps"] == FINAL
    steps = [int(row["global_step"]) for row in metrics_rows(resumed["run_dir"])]
    assert steps == list(range(ITERATION, FINAL + 1, ITERATION))


def test_resume_with_replay_continues_the_buffer_and_learning_at_once_without_it_refills_first(resumed):
    assert resumed["second"] is not None and resumed["second"].returncode == 0, resumed["second"].describe()
    rows = {int(row["global_step"]): row for row in metrics_rows(resumed["run_dir"])}
    updates_at_checkpoint = resumed["checkpoint"]["algo"]["gradient_updates"]
    first_after = float(rows[FIRST + ITERATION]["gradient_updates"])
    final = load(resumed["run_dir"] / "checkpoints" / "last.pt")["algo"]
    if resumed["replay"]:
        # The same buffer, extended: its first FIRST transitions are the checkpoint's, bit for bit.
        assert final["replay"]["size"] == FINAL
        before = resumed["checkpoint"]["algo"]["replay"]
        for name in ("obs", "actions", "rewards", "next_obs", "terminated"):
            assert torch.equal(final["replay"][name][:FIRST], before[name]), name
        assert first_after == updates_at_checkpoint + ITERATION // TRAIN_FREQUENCY
    else:
        # Learning waits until learning_starts transitions are stored again.
        assert first_after == updates_at_checkpoint
        assert final["gradient_updates"] > updates_at_checkpoint


@pytest.mark.parametrize("algo", ["dqn", "double_dqn", "dueling_dqn"])
def test_continuous_action_space_is_refused_with_the_algorithms_that_fit(rlrun, tmp_path, run_dir, algo):
    result = rlrun(f"algo={algo}", "env=Pendulum", "logger=csv", "total_steps=1000", cwd=tmp_path, run_dir=run_dir)
    assert result.returncode != 0, result.describe()
    lines = result.stderr_lines()
    assert lines and lines[-1].startswith("rlrun: error: "), result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    line = lines[-1]
    assert f"algo={algo}" in line and "Pendulum" in line and "continuous" in line, line
    fitting = [name.strip() for name in line.split("continuous actions:")[1].split(",")]
    assert "ppo" in fitting and not {"dqn", "double_dqn", "dueling_dqn"} & set(fitting), line
    assert not list(tmp_path.rglob("*.pt"))
