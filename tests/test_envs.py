"""Environments as rlrun builds them: every env config, seeding, truncation, normalisation, clipping."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import CONF, load_conf

from rlrun.config import ConfigError
from rlrun.envs import VecEnv, env_config

# generic.yaml is the template of env=<gymnasium id> (it needs env.id: tests/test_env_ids.py).
ENV_NAMES = sorted(p.stem for p in (CONF / "env").glob("*.yaml") if p.stem != "generic")


def make(name: str, num_envs: int = 2, seed: int = 0, training: bool = True, **overrides) -> VecEnv:
    return VecEnv(env_config(load_conf("env", name, **overrides)), num_envs, seed, "sync", 0.99, training)


@pytest.mark.parametrize("name", ENV_NAMES)
def test_every_env_config_builds_and_steps(name):
    env = make(name)
    obs = env.reset()
    # Vectors become float32; pixels stay uint8 up to the network, which scales them.
    expected = np.uint8 if env.observation_space.dtype == np.uint8 else np.float32
    assert obs.dtype == expected and obs.shape == (2, *env.observation_space.shape)
    actions = np.stack([env.action_space.sample() for _ in range(2)])
    obs, reward, terminated, truncated, _ = env.step(actions)
    assert reward.shape == (2,) and terminated.shape == (2,) and np.isfinite(obs).all()
    env.close()


def test_same_seed_same_observations_different_seed_different():
    first, second, other = (make("HalfCheetah", seed=s).reset() for s in (3, 3, 4))
    np.testing.assert_array_equal(first, second)
    assert not np.array_equal(first, other)


def test_truncation_returns_final_observation_and_episode_statistics():
    env = make("CartPole", num_envs=1, max_episode_steps=5)
    env.reset()
    for _ in range(4):
        _, _, terminated, truncated, final_obs = env.step(np.array([0]))
        if terminated.any():
            pytest.skip("pole fell before the time limit")
        assert final_obs is None
    obs, _, terminated, truncated, final_obs = env.step(np.array([0]))
    assert truncated[0] and not terminated[0]
    assert final_obs is not None and not np.array_equal(final_obs[0], obs[0])  # obs is the next episode's
    returns, lengths = env.pop_episodes()
    assert returns == [5.0] and lengths == [5]  # raw rewards, not normalised
    assert env.pop_episodes() == ([], [])


def test_evaluation_env_uses_frozen_training_statistics():
    train = make("Pendulum", num_envs=1)
    train.reset()
    for _ in range(50):
        train.step(np.array([[1.0]]))
    evaluation = make("Pendulum", num_envs=1, training=False)
    evaluation.load_state_dict(train.state_dict())
    mean_before = evaluation.obs_rms.mean.copy()
    evaluation.reset()
    for _ in range(20):
        evaluation.step(np.array([[-1.0]]))
    np.testing.assert_array_equal(evaluation.obs_rms.mean, mean_before)
    np.testing.assert_array_equal(evaluation.obs_rms.mean, train.obs_rms.mean)


def test_continuous_actions_are_clipped_to_the_bounds():
    results = []
    for action in (2.0, 100.0):  # Pendulum's torque bound is 2
        env = make("Pendulum", num_envs=1, normalize_obs=False, normalize_reward=False)
        env.reset(seed=0)
        obs, reward, *_ = env.step(np.array([[action]]))
        results.append((obs, reward))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])


def test_reward_is_divided_by_the_std_of_the_discounted_return():
    env = make("Pendulum", num_envs=1, normalize_obs=False)
    env.reset()
    discounted = 0.0
    for _ in range(100):
        before = env.episode_return[0]
        env.step(np.array([[0.5]]))
        discounted = 0.99 * discounted + (env.episode_return[0] - before)
    # The running statistics saw exactly the discounted returns of this one episode.
    assert env.discounted_return[0] == pytest.approx(discounted)
    env.training = False
    before = env.episode_return[0]
    _, reward, *_ = env.step(np.array([[0.5]]))
    raw = env.episode_return[0] - before
    assert reward[0] == pytest.approx(raw / np.sqrt(env.return_rms.var + 1e-8), rel=1e-5)


def test_an_atari_protocol_without_the_atari_wrappers_is_a_config_error():
    with pytest.raises(ConfigError, match="env.protocol=machado"):
        env_config(load_conf("env", "CartPole", protocol="machado"))


def test_gymnasium_wrappers_from_config_are_applied_in_order_with_their_arguments():
    cfg = env_config(load_conf("env", "Pendulum", wrappers=[
        {"_target_": "gymnasium.wrappers.RescaleAction", "min_action": -1.0, "max_action": 1.0},
        "gymnasium.wrappers.ClipAction"]))
    env = VecEnv(cfg, 1, 0)
    outer = env.envs.envs[0]
    assert type(outer).__name__ == "ClipAction" and type(outer.env).__name__ == "RescaleAction"
    rescaled = outer.env.action_space
    assert (rescaled.low[0], rescaled.high[0]) == (-1.0, 1.0)  # Pendulum's own bounds are +-2
    env.reset()
    env.step(np.ones((1, 1), np.float32))
    env.close()


@pytest.mark.parametrize(("wrappers", "names"), [
    (["gymnasium.wrappers.Nope"], ["gymnasium.wrappers.Nope", "class path"]),
    (["numpy.ndarray"], ["numpy.ndarray", "gymnasium.Wrapper"]),
    ([{"min_action": -1}], ["_target_"]),
    ("frameskip", ["atari"]),
])
def test_an_unknown_wrapper_is_one_config_error_naming_it(wrappers, names):
    with pytest.raises(ConfigError) as error:
        env_config(load_conf("env", "Pendulum", wrappers=wrappers))
    for name in names:
        assert name in str(error.value) and "\n" not in str(error.value)


def test_wrapper_arguments_that_do_not_fit_are_one_config_error():
    cfg = env_config(load_conf("env", "Pendulum", wrappers=[
        {"_target_": "gymnasium.wrappers.RescaleAction", "lowest": -1.0}]))
    with pytest.raises(ConfigError, match="RescaleAction"):
        VecEnv(cfg, 1, 0)
