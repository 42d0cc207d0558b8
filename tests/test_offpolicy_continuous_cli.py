"""DDPG, TD3 and SAC through the real `rlrun` command: run, checkpoint, resume with and without the
replay buffer, and refuse a discrete action space in one line (a few seconds per run)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

ALGOS = ("ddpg", "td3", "sac")
# Pendulum (its tuned file applies; these overrides win): 300 random steps, then learning on every step,
# metrics every 100 steps, tiny networks, one evaluation episode at the end.
TINY = ("env=Pendulum", "logger=csv", "hardware=cpu", "eval.episodes=1", "eval.every_steps=0",
        "checkpoint.every_steps=500", "algo.learning_starts=300", "algo.steps_per_iteration=100",
        "network.hidden_sizes=[16,16]")
FIRST, SECOND = 1000, 1500
LEARNING_STARTS, ITERATION = 300, 100


def load_checkpoint(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)  # plain tensors and containers only


def gradient_updates_by_step(run_dir: Path) -> dict[int, float]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return {int(row["global_step"]): float(row["gradient_updates"]) for row in csv.DictReader(f)}


@pytest.fixture(scope="module", params=[(algo, replay) for algo in ALGOS for replay in (True, False)],
                ids=lambda p: f"{p[0]}-replay_{str(p[1]).lower()}")
def resumed(request, rlrun, tmp_path_factory) -> dict:
    """A run to 1000 steps, its checkpoint read, then `resume=<dir> total_steps=1500`."""
    algo, replay = request.param
    cwd = tmp_path_factory.mktemp(f"{algo}_{replay}")
    run_dir = cwd / "run"
    first = rlrun(f"algo={algo}", *TINY, f"total_steps={FIRST}", f"checkpoint.replay={str(replay).lower()}",
                  cwd=cwd, run_dir=run_dir)
    assert first.returncode == 0, first.describe()
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.pt")
    second = rlrun(f"resume={run_dir}", f"total_steps={SECOND}", cwd=cwd)
    return {"algo": algo, "replay": replay, "run_dir": run_dir, "first": first, "second": second,
            "checkpoint": checkpoint}


def test_run_writes_a_safe_checkpoint_with_the_replay_only_when_asked(resumed):
    state = resumed["checkpoint"]
    assert state["global_step"] == FIRST and state["algo_name"] == resumed["algo"]
    algo_state = state["algo"]
    assert {"actor", "critic", "critic_target", "actor_optimizer", "critic_optimizer"} <= set(algo_state)
    assert algo_state["gradient_updates"] == FIRST - LEARNING_STARTS + 1
    if resumed["replay"]:
        assert algo_state["replay"]["size"] == FIRST
        assert algo_state["replay"]["obs"].shape == (FIRST, 3)
    else:
        assert "replay" not in algo_state


def test_resume_trains_to_the_new_budget(resumed):
    assert resumed["second"].returncode == 0, resumed["second"].describe()
    summary = json.loads((resumed["run_dir"] / "summary.json").read_text())
    assert summary["total_steps"] == SECOND
    assert load_checkpoint(resumed["run_dir"] / "checkpoints" / "last.pt")["global_step"] == SECOND


def test_resume_with_replay_learns_at_once_and_without_refills_first(resumed):
    assert resumed["second"].returncode == 0, resumed["second"].describe()
    updates = gradient_updates_by_step(resumed["run_dir"])
    at_checkpoint = updates[FIRST]
    if resumed["replay"]:
        # The buffer came back full: every step after the checkpoint trains, as without the break.
        assert updates[FIRST + ITERATION] == at_checkpoint + ITERATION
        assert updates[SECOND] == at_checkpoint + SECOND - FIRST
    else:
        # An empty buffer: no update until learning_starts transitions are stored again.
        assert updates[FIRST + LEARNING_STARTS - ITERATION] == at_checkpoint
        assert updates[SECOND] == at_checkpoint + SECOND - FIRST - LEARNING_STARTS + 1


def test_resumed_replay_keeps_the_stored_transitions_and_appends(resumed):
    final = load_checkpoint(resumed["run_dir"] / "checkpoints" / "last.pt")["algo"]
    if not resumed["replay"]:
        assert "replay" not in final
        return
    before, after = resumed["checkpoint"]["algo"]["replay"], final["replay"]
    assert after["size"] == SECOND
    for name in ("obs", "actions", "rewards", "next_obs", "terminated"):
        torch.testing.assert_close(after[name][:FIRST], before[name], rtol=0, atol=0)


@pytest.mark.parametrize("algo", ALGOS)
def test_discrete_env_is_refused_in_one_line_naming_the_algorithms_that_fit(rlrun, tmp_path, algo):
    result = rlrun(f"algo={algo}", "env=CartPole", "logger=csv", cwd=tmp_path, run_dir=tmp_path / "run")
    assert result.returncode != 0
    last = result.stderr_lines()[-1]
    assert f"algo={algo} cannot act in CartPole's discrete action space" in last, result.describe()
    fitting = last.split("algorithms for discrete actions:")[1]
    names = [name.strip() for name in fitting.split(",")]
    assert "ppo" in names and not set(ALGOS) & set(names), last
    assert not (tmp_path / "run" / "checkpoints").exists()
