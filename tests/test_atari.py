"""Atari through rlrun's env construction (ale-py, the DQN wrappers) and a tiny DQN run on Pong."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import load_conf

pytest.importorskip("ale_py", reason="Atari needs the atari extra: pip install -e '.[atari]'")

from rlrun.config import ConfigError  # noqa: E402
from rlrun.envs import VecEnv, env_config, make_env  # noqa: E402
from rlrun.envs.atari import AtariPreprocessing, FireReset, area_taps, area_weights  # noqa: E402


def wrappers_of(env) -> list[type]:
    kinds = []
    while hasattr(env, "env"):
        kinds.append(type(env))
        env = env.env
    return kinds


@pytest.mark.parametrize("name", ["Pong", "Breakout"])
def test_atari_env_is_84x84_grayscale_stacked_4_uint8(name):
    env = make_env(env_config(load_conf("env", name)))
    try:
        assert env.observation_space.shape == (4, 84, 84) and env.observation_space.dtype == np.uint8
        obs, _ = env.reset(seed=0)
        assert obs.dtype == np.uint8 and obs.shape == (4, 84, 84)
        next_obs, *_ = env.step(0)
        # Frame stacking: the oldest frame drops out, the others move one place.
        np.testing.assert_array_equal(next_obs[:3], obs[1:])
        assert FireReset in wrappers_of(env)  # both games list FIRE as action 1
        assert AtariPreprocessing in wrappers_of(env)
    finally:
        env.close()


def test_vector_env_steps_pong_and_reports_the_unclipped_game_score():
    env = VecEnv(env_config(load_conf("env", "Pong")), 1, 0, "sync", 0.99)
    obs = env.reset()
    assert obs.shape == (1, 4, 84, 84) and 0 <= obs.min() and obs.max() <= 255
    rng = np.random.default_rng(0)
    returns: list[float] = []
    while not returns:  # a random Pong player loses a game 21 to about 0 in ~800 steps
        env.step(rng.integers(6, size=1))
        returns += env.pop_episodes()[0]
    assert -21 <= returns[0] <= -15 and returns[0] == int(returns[0])
    env.close()


def test_area_resize_averages_each_output_pixels_span():
    weights = area_weights(210, 84)
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-6)  # a constant image stays constant
    image = np.arange(8, dtype=np.float32)
    np.testing.assert_allclose(area_weights(8, 4) @ image, [0.5, 2.5, 4.5, 6.5])  # 2:1 is the pair mean
    # 5 -> 2: each output pixel covers 2.5 inputs, the middle one split between them.
    np.testing.assert_allclose(area_weights(5, 2) @ np.array([0, 0, 5, 10, 10], np.float32), [1.0, 9.0])
    # The wrapper's sparse form (a few weighted taps per output pixel) computes the same resize.
    x = np.random.default_rng(0).uniform(0, 255, 210).astype(np.float32)
    for size_in, size_out in [(210, 84), (160, 84), (5, 2)]:
        index, weights = area_taps(size_in, size_out)
        np.testing.assert_allclose(sum(w * x[i] for i, w in zip(index, weights, strict=True)),
                                   area_weights(size_in, size_out) @ x[:size_in], rtol=1e-5)


def test_atari_env_without_frameskip_1_is_a_config_error():
    cfg = load_conf("env", "Pong")
    with pytest.raises(ConfigError, match="frameskip"):
        make_env(env_config({**cfg, "kwargs": {**cfg["kwargs"], "frameskip": 4}}))


def test_tiny_dqn_run_on_pong_with_the_cnn_completes(rlrun, tmp_path, run_dir):
    result = rlrun("algo=dqn", "env=Pong", "network=cnn", "logger=csv", "hardware=cpu", "total_steps=400",
                   "algo.learning_starts=200", "algo.buffer_size=1000", "algo.steps_per_iteration=200",
                   "algo.train_frequency=8", "eval.episodes=1", cwd=tmp_path, run_dir=run_dir, timeout=300)
    assert result.returncode == 0, result.describe()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["total_steps"] == 400 and -21 <= summary["final_eval_mean_return"] <= 21
    assert (run_dir / "checkpoints" / "last.pt").exists()
