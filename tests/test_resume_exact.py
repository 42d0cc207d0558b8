"""Exact resume: an env restored from a checkpoint continues its episodes bit-for-bit, and a run
trained to N steps then resumed to 2N ends with the metrics and weights of a run trained to 2N in one go."""

from __future__ import annotations

import csv
import io
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import load_conf

from rlrun.envs import VecEnv, env_config

# (env config, max_episode_steps override): limits short enough that an episode is truncated within
# the steps after the restore. With random actions CartPole and Hopper (10-50 steps) also terminate.
# Ant and Humanoid read body positions before stepping (see rlrun.envs.state.MUJOCO_LAGGED).
EXACT_ENVS = [("CartPole", 15), ("Pendulum", 40), ("HalfCheetah", 40), ("Hopper", 25), ("Ant", 40), ("Walker2d", 25),
              ("Humanoid", 12)]


def make(name: str, seed: int, num_envs: int = 2, backend: str = "sync", training: bool = True,
         **overrides) -> VecEnv:
    return VecEnv(env_config(load_conf("env", name, **overrides)), num_envs, seed, backend, 0.99, training)


def through_checkpoint(state: dict) -> dict:
    """What a resumed run reads back: torch.save, then torch.load with weights_only=True."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def random_actions(env: VecEnv, rng: np.random.Generator) -> np.ndarray:
    space = env.action_space
    if env.continuous:
        return rng.uniform(space.low, space.high, (env.num_envs, *space.shape)).astype(np.float32)
    return rng.integers(space.n, size=env.num_envs)


def assert_same_step(first: tuple, second: tuple, where: str) -> None:
    for name, a, b in zip(("obs", "reward", "terminated", "truncated", "final_obs"), first, second, strict=True):
        if a is None or b is None:
            assert a is None and b is None, f"{where}: final_obs given by one env only"
        else:
            np.testing.assert_array_equal(a, b, err_msg=f"{where}: {name} differs")


@pytest.mark.parametrize(("name", "limit"), EXACT_ENVS)
def test_restored_env_continues_mid_episode_bit_for_bit(name, limit):
    rng = np.random.default_rng(1)
    original = make(name, seed=3, max_episode_steps=limit)
    obs = original.reset()
    for _ in range(limit // 2 + 3):  # mid-episode, with reward and observation statistics under way
        obs, *_ = original.step(random_actions(original, rng))
    state = through_checkpoint(original.state_dict())

    restored = make(name, seed=99, max_episode_steps=limit)  # another seed: everything comes from the state
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.reset(), obs)
    truncations = terminations = 0
    for t in range(4 * limit):
        actions = random_actions(original, rng)
        first, second = original.step(actions), restored.step(actions)
        assert_same_step(first, second, f"{name} step {t} after the restore")
        truncations += int(first[3].sum())
        terminations += int(first[2].sum())
    assert truncations > 0, f"no time-limit truncation after the restore in {name}"
    assert terminations > 0 or name not in ("CartPole", "Hopper"), f"no termination after the restore in {name}"
    assert original.pop_episodes() == restored.pop_episodes()
    np.testing.assert_array_equal(original.obs_rms.mean if original.obs_rms else 0,
                                  restored.obs_rms.mean if restored.obs_rms else 0)
    original.close()
    restored.close()


def test_a_reset_with_a_seed_after_a_restore_starts_new_episodes():
    original = make("CartPole", seed=3)
    original.reset()
    original.step(np.array([0, 1]))
    restored = make("CartPole", seed=3)
    restored.load_state_dict(through_checkpoint(original.state_dict()))
    np.testing.assert_array_equal(restored.reset(seed=7), make("CartPole", seed=7).reset())


def test_evaluation_env_takes_the_statistics_but_not_the_training_episodes():
    train = make("Pendulum", seed=0, num_envs=1)
    train.reset()
    for _ in range(30):
        train.step(np.array([[1.0]]))
    evaluation = make("Pendulum", seed=5, num_envs=1, training=False)
    evaluation.load_state_dict(train.state_dict())
    fresh = make("Pendulum", seed=5, num_envs=1, training=False)
    fresh.load_state_dict(train.state_dict())
    obs = evaluation.reset(seed=5)
    np.testing.assert_array_equal(obs, fresh.reset(seed=5))
    np.testing.assert_array_equal(evaluation.obs_rms.mean, train.obs_rms.mean)


def test_env_that_cannot_be_saved_says_so_once_and_starts_fresh_episodes(caplog):
    # The async backend's envs live in worker processes: their state does not reach the checkpoint.
    original = make("CartPole", seed=3, backend="async")
    try:
        original.reset()
        for _ in range(5):
            original.step(np.array([0, 1]))
        state = through_checkpoint(original.state_dict())
    finally:
        original.close()
    assert state["episodes"] is None and "async" in state["unsaved"]
    restored = make("CartPole", seed=3)
    with caplog.at_level(logging.WARNING, logger="rlrun"):
        restored.load_state_dict(state)
    (record,) = [r for r in caplog.records if r.name == "rlrun"]
    assert "fresh episodes" in record.getMessage() and "async" in record.getMessage()
    # Fresh episodes seeded by the step count, so they are not the first start's episodes again.
    np.testing.assert_array_equal(restored.reset(), make("CartPole", seed=3 + 10).reset())


# ---------------------------------------------------------------------------------------------------
# N steps, then resume to 2N, against 2N in one go: through the real command line.

# Wall-clock measurements, the only columns allowed to differ: metrics.csv's sps and elapsed, the episode
# files' elapsed, and eval.csv's elapsed (the run's seconds at each evaluation: a split run pays a second
# start-up and its resume continues from the seconds saved in last.pt, so its clock necessarily differs).
TIME_COLUMNS = ("sps", "elapsed")


def read_rows(path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIME_COLUMNS} for row in csv.DictReader(f)]


def assert_same_tensors(first, second, where: str) -> None:
    """Every tensor and number of two checkpoint parts, recursively, equal bit for bit."""
    if isinstance(first, dict):
        assert first.keys() == second.keys(), f"{where}: keys differ"
        for key in first:
            assert_same_tensors(first[key], second[key], f"{where}/{key}")
    elif isinstance(first, (list, tuple)):
        assert len(first) == len(second), f"{where}: lengths differ"
        for i, (a, b) in enumerate(zip(first, second, strict=True)):
            assert_same_tensors(a, b, f"{where}[{i}]")
    elif isinstance(first, torch.Tensor):
        assert torch.equal(first, second), f"{where}: tensors differ"
    else:
        assert first == second, f"{where}: {first!r} != {second!r}"


def assert_same_run(split: Path, whole: Path) -> int:
    """A run stopped and resumed (`split`) against one never stopped (`whole`): metrics.csv, eval.csv
    and the episode files equal row for row; last.pt's algorithm state (weights, optimisers, RNGs,
    replay) and env state (statistics, episodes in flight) equal bit for bit. Returns last.pt's
    global_step, the same in both."""
    for name in ("metrics.csv", "eval.csv", "episodes.csv", "eval_episodes.csv"):
        split_rows, whole_rows = read_rows(split / name), read_rows(whole / name)
        assert len(split_rows) == len(whole_rows) > 1, name
        for split_row, whole_row in zip(split_rows, whole_rows, strict=True):
            assert split_row == whole_row, f"{split / name} at step {whole_row['global_step']}"
    first = torch.load(split / "checkpoints" / "last.pt", weights_only=True)
    second = torch.load(whole / "checkpoints" / "last.pt", weights_only=True)
    assert first["global_step"] == second["global_step"]
    assert_same_tensors(first["algo"], second["algo"], "algo")
    assert_same_tensors(first["env"], second["env"], "env")
    return first["global_step"]


def split_equals_whole(rlrun, tmp_path, n: int, *overrides: str) -> None:
    """Train to n (schedules set for 2n), resume to 2n; train to 2n in one go; compare. n should be a
    multiple of eval.every_steps: a run evaluates at its end, so the split run would have one more row."""
    common = ("logger=csv", "eval.episodes=1", f"eval.every_steps={n // 2}", *overrides)
    split, whole = tmp_path / "split", tmp_path / "whole"
    (tmp_path / "whole_cwd").mkdir()
    # The one-go run alongside the split one: most of each run is starting Python, torch and Hydra.
    proc, args = rlrun.start(*common, f"total_steps={2 * n}", f"schedule_steps={2 * n}", cwd=tmp_path / "whole_cwd",
                             run_dir=whole)
    results = [rlrun(*common, f"total_steps={n}", f"schedule_steps={2 * n}", cwd=tmp_path, run_dir=split),
               rlrun(f"resume={split}", f"total_steps={2 * n}", cwd=tmp_path),
               rlrun.finish(proc, args, tmp_path / "whole_cwd", timeout=180)]
    for result in results:
        assert result.returncode == 0, result.describe()
        assert "fresh episodes" not in result.stderr, result.describe()
    # (An iteration of REINFORCE is whole episodes: its runs stop at the first boundary past the budget.)
    assert assert_same_run(split, whole) >= 2 * n


def test_ppo_split_run_equals_one_run(rlrun, tmp_path):
    split_equals_whole(rlrun, tmp_path, 1024, "env=CartPole")


def test_sac_with_saved_replay_split_run_equals_one_run(rlrun, tmp_path):
    split_equals_whole(rlrun, tmp_path, 500, "algo=sac", "env=Pendulum", "checkpoint.replay=true",
                       "algo.learning_starts=250", "algo.steps_per_iteration=125")


def test_dqn_with_saved_replay_split_run_equals_one_run(rlrun, tmp_path):
    # An evaluation epsilon: evaluations draw from their own generator, which the checkpoint keeps too.
    split_equals_whole(rlrun, tmp_path, 1000, "algo=dqn", "env=CartPole", "checkpoint.replay=true",
                       "algo.learning_starts=250", "algo.eval_epsilon=0.5", "eval.episodes=3")


def test_dqn_with_prioritized_replay_split_run_equals_one_run(rlrun, tmp_path):
    # The sum tree's priorities are saved with the replay; one update per step, two per phase.
    split_equals_whole(rlrun, tmp_path, 1000, "algo=dueling_dqn", "env=CartPole", "checkpoint.replay=true",
                       "algo.learning_starts=250", "algo.prioritized_replay=true", "algo.train_frequency=1",
                       "algo.gradient_steps=2", "network.hidden_sizes=[16,16]")


def test_dqn_with_n_step_returns_split_run_equals_one_run(rlrun, tmp_path):
    # The replay's episode ends are saved with it: a resumed run sums the same n-step returns.
    split_equals_whole(rlrun, tmp_path, 1000, "algo=double_dqn", "env=CartPole", "checkpoint.replay=true",
                       "algo.learning_starts=250", "algo.n_step=3", "algo.num_envs=2", "algo.train_frequency=2",
                       "network.hidden_sizes=[16,16]")


# The other algorithms and a MuJoCo env: the same proof, in the slow set (a few seconds per run, but
# three runs each on a shared 2-core machine).
@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    ("algo=a2c", "env=CartPole", "algo.log_interval=10"),  # 400 steps per row: a split at 2000
    ("algo=reinforce", "env=CartPole"),
    ("algo=trpo", "env=CartPole"),
    ("algo=td3", "env=Pendulum", "checkpoint.replay=true", "algo.learning_starts=500",
     "algo.steps_per_iteration=250"),
    ("algo=ddpg", "env=Pendulum", "checkpoint.replay=true", "algo.noise=ou", "algo.learning_starts=500",
     "algo.steps_per_iteration=250"),
    ("env=HalfCheetah", "algo.num_envs=2", "algo.num_steps=64", "algo.num_minibatches=4"),
    ("algo=sac", "env=Hopper", "checkpoint.replay=true", "algo.learning_starts=300", "algo.steps_per_iteration=100",
     "network.hidden_sizes=[32,32]"),
    ("algo=dqn", "env=Breakout", "network=cnn", "hardware=cpu", "checkpoint.replay=true", "algo.learning_starts=200",
     "algo.buffer_size=1000", "algo.steps_per_iteration=200", "algo.train_frequency=8"),
], ids=["a2c", "reinforce", "trpo", "td3", "ddpg-ou", "ppo-HalfCheetah", "sac-Hopper", "dqn-Breakout"])
def test_every_algorithm_split_run_equals_one_run(rlrun, tmp_path, overrides):
    if "env=Breakout" in overrides:
        pytest.importorskip("ale_py")
    n = {"env=Hopper": 600, "env=Pendulum": 1000, "algo=a2c": 2000, "env=Breakout": 400}
    n = next((steps for key, steps in n.items() if key in overrides), 2048)
    split_equals_whole(rlrun, tmp_path, n, *overrides)


@pytest.mark.parametrize("protocol", ["nature", "machado"])
def test_restored_atari_env_continues_bit_for_bit(protocol):
    pytest.importorskip("ale_py")
    # The ALE's emulator state with its RNG (sticky actions under machado), the wrappers' frames, lives
    # and step count: through lost lives (nature), truncations at the cap and new games.
    def breakout(seed):
        cfg = {**load_conf("env", "Breakout"), "protocol": protocol, "max_episode_steps": 150}
        return VecEnv(env_config(cfg), 2, seed, "sync", 0.99)

    rng = np.random.default_rng(0)
    original = breakout(0)
    obs = original.reset()
    for _ in range(40):
        obs, *_ = original.step(rng.integers(4, size=2))
    restored = breakout(5)
    restored.load_state_dict(through_checkpoint(original.state_dict()))
    np.testing.assert_array_equal(restored.reset(), obs)
    truncations = 0
    for t in range(300):
        actions = rng.integers(4, size=2)
        first = original.step(actions)
        assert_same_step(first, restored.step(actions), f"Breakout ({protocol}) step {t} after the restore")
        truncations += int(first[3].sum())
    returns = original.pop_episodes()
    assert truncations > 0 and returns[0], returns
    assert returns == restored.pop_episodes()


def test_episodes_in_flight_are_saved_on_a_machine_without_mujoco():
    # gymnasium reports a missing mujoco as DependencyNotInstalled, not ImportError: the state of a
    # CartPole episode must still be saved there, not crash the run at its first checkpoint.
    code = ("import sys; sys.modules['mujoco'] = None\n"  # `import mujoco` now fails as on such a machine
            "import gymnasium as gym\n"
            "from rlrun.envs.state import get_env_state, mujoco_env_class\n"
            "assert mujoco_env_class() is None\n"
            "env = gym.make('CartPole-v1'); env.reset(seed=0); env.step(0)\n"
            "print(sorted(get_env_state(env)))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
