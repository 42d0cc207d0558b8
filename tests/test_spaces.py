"""Every gymnasium space: what the networks read (rlrun.envs.spaces), Dict observations through the
vector env, its normalisation and checkpointed state, refusals in one line naming the space, and
load_policy / TorchScript / ONNX for the new spaces (the small envs of tests/space_envs)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlrun.config import ConfigError
from rlrun.envs import VecEnv, env_config
from rlrun.envs.spaces import ObservationTransform, check_spaces
from rlrun.run import algorithms_for

sys.path.insert(0, str(Path(__file__).parent))
import space_envs  # noqa: E402,F401 -- registers the ids

TESTS = Path(__file__).parent


def make(env_id: str, num_envs: int = 2, seed: int = 0, **overrides) -> VecEnv:
    return VecEnv(env_config({"id": env_id, **overrides}), num_envs, seed)


def test_observation_transform_of_each_space():
    image = ObservationTransform(gym.spaces.Box(0, 255, (48, 40, 3), np.uint8))  # channels last
    assert image.space.shape == (3, 48, 40) and image.space.dtype == np.uint8
    frames = np.random.default_rng(0).integers(0, 256, (2, 48, 40, 3)).astype(np.uint8)
    np.testing.assert_array_equal(image(frames), frames.transpose(0, 3, 1, 2))
    assert ObservationTransform(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)).kind == "identity"  # channels first
    stacked = ObservationTransform(gym.spaces.Box(-1, 1, (3, 4)))  # FrameStackObservation of 4-vectors
    assert stacked.space.shape == (12,)
    np.testing.assert_array_equal(stacked(np.arange(24.0).reshape(2, 3, 4)), np.arange(24.0).reshape(2, 12))
    one_hot = ObservationTransform(gym.spaces.Discrete(3, start=1))
    np.testing.assert_array_equal(one_hot(np.array([1, 3])), [[1, 0, 0], [0, 0, 1]])
    both = ObservationTransform(gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (40, 40, 3), np.uint8),
                                                 "pos": gym.spaces.Box(-1, 1, (2, 2))}))
    assert {k: s.shape for k, s in both.space.spaces.items()} == {"image": (3, 40, 40), "pos": (4,)}
    with pytest.raises(ConfigError, match="Tuple"):
        ObservationTransform(gym.spaces.Tuple([gym.spaces.Discrete(2)]))


def test_vector_env_steps_dict_observations_normalises_vectors_and_leaves_images():
    env = make("DictImageTarget-v0", normalize_obs=True)
    obs = env.reset()
    assert obs["image"].dtype == np.uint8 and obs["image"].shape == (2, 3, 48, 48)  # transposed, not normalised
    assert obs["flip"].dtype == np.float32 and obs["flip"].shape == (2, 1)
    assert set(env.obs_rms.stats) == {"flip"}
    for _ in range(12):  # past the 10-step time limit: final observations of ended episodes
        obs, reward, terminated, truncated, final_obs = env.step(np.zeros(2, np.int64))
    assert truncated.any() or final_obs is None
    assert abs(env.obs_rms.stats["flip"].mean[0] - 0.5) < 0.3
    env.close()


def test_dict_episodes_in_flight_continue_after_a_checkpoint():
    env = make("DictReach-v0", normalize_obs=True)
    env.reset()
    actions = np.array([[1, 3], [2, 4], [0, 1], [3, 3], [1, 1]])
    for a in actions[:2]:
        env.step(a)
    state = env.state_dict()
    assert state["episodes"] is not None
    expected = [env.step(a)[0] for a in actions[2:]]
    resumed = make("DictReach-v0", normalize_obs=True)
    resumed.load_state_dict(state)
    resumed.reset()
    for a, want in zip(actions[2:], expected):
        got = resumed.step(a)[0]
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize("algo, env_id, words", [
    ("dqn", "MultiReach-v0", "DQN's MultiDiscrete"),
    ("sac", "BitCopy-v0", "MultiBinary"),
    ("trpo", "DictReach-v0", "Dict observations"),
])
def test_an_algorithm_refuses_a_space_naming_it(algo, env_id, words):
    from rlrun.envs.spaces import algorithms_class

    env = gym.make(env_id)
    with pytest.raises(ConfigError) as error:
        check_spaces(algorithms_class(algo), algo, env_id, env.observation_space, env.action_space, algorithms_for)
    message = str(error.value)
    assert "\n" not in message and "continuous" not in message
    if words.startswith("DQN"):
        assert "MultiDiscrete action space" in message and "ppo" in message and "dqn" not in message.split(";")[1]
    else:
        assert words in message


def test_dqn_on_multidiscrete_refused_in_one_line_before_a_run_directory(rlrun, tmp_path, space_envs_importable):
    result = rlrun("algo=dqn", "env=space_envs:MultiReach-v0", "logger=csv", cwd=tmp_path, run_dir=tmp_path / "run")
    assert result.returncode != 0
    assert result.stderr_lines() == [
        "rlrun: error: algo=dqn cannot act in space_envs:MultiReach-v0's MultiDiscrete action space MultiDiscrete([3 3]); "
        "algorithms for MultiDiscrete actions: a2c, a3c, ppo, ppo_kl, reinforce, trpo"], result.describe()
    assert not (tmp_path / "run").exists()


@pytest.fixture
def space_envs_importable(monkeypatch):
    """tests/ on the PYTHONPATH of the rlrun subprocesses, so that env=space_envs:<id> imports."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
