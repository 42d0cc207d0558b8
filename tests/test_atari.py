"""Atari through rlrun's env construction (ale-py, the DQN wrappers) and a tiny DQN run on Pong."""

from __future__ import annotations

import json

import numpy as np
import pytest
from helpers import load_conf

pytest.importorskip("ale_py", reason="Atari needs the atari extra: pip install -e '.[atari]'")

from rlrun.config import ConfigError  # noqa: E402
from rlrun.envs import VecEnv, env_config, make_env  # noqa: E402
from rlrun.envs.atari import AtariPreprocessing, FireReset, Game, area_taps, area_weights  # noqa: E402


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


# --- the evaluation protocols -------------------------------------------------------------------------


def breakout(protocol: str | None = None, **overrides) -> VecEnv:
    cfg = load_conf("env", "Breakout", **overrides)
    if protocol is not None:
        cfg["protocol"] = protocol
    return VecEnv(env_config(cfg), 1, 0, "sync", 0.99)


def ale_of(env: VecEnv):
    return env.envs.envs[0].unwrapped.ale


def test_default_protocol_is_deterministic_and_machado_is_sticky():
    for protocol, sticky in ((None, 0.0), ("machado", 0.25)):
        env = breakout(protocol)
        assert ale_of(env).getFloat("repeat_action_probability") == sticky, protocol
        env.close()
    # A kwarg that contradicts the protocol is refused, not silently overridden.
    sticky_kwargs = {"frameskip": 1, "repeat_action_probability": 0.25}
    with pytest.raises(ConfigError, match="repeat_action_probability"):
        make_env(env_config({**load_conf("env", "Breakout"), "kwargs": sticky_kwargs}))


def test_life_loss_is_terminal_and_the_game_return_sums_every_life():
    env = breakout()
    env.reset()
    ale = ale_of(env)
    rng = np.random.default_rng(5)  # random play that scores in two of the five lives
    per_life = [0.0]
    while True:
        _, reward, terminated, _, _ = env.step(rng.integers(4, size=1))
        per_life[-1] += float(reward[0])
        returns, _ = env.pop_episodes()
        if returns:
            break
        if terminated[0]:  # a lost life: terminal for the learner, no episode recorded, the game goes on
            assert ale.lives() == 5 - len(per_life)
            per_life.append(0.0)
    assert terminated[0] and len(per_life) == 5  # four lost lives, then the game over
    assert sum(r > 0 for r in per_life) >= 2
    assert returns == [sum(per_life)]
    env.close()


def test_fire_is_pressed_after_each_lost_life():
    # A player that never presses FIRE: the ball is launched after every lost life all the same, so it
    # loses all five (with sticky actions and no life-loss terminal, the game would wait forever).
    env = breakout()
    env.reset()
    terminals = 0
    for _ in range(1000):
        _, _, terminated, _, _ = env.step(np.array([0]))
        terminals += int(terminated[0])
        if env.pop_episodes()[0]:
            break
    assert terminals == 5
    machado = breakout("machado", max_episode_steps=300)
    machado.reset()
    for _ in range(299):
        _, _, terminated, truncated, _ = machado.step(np.array([0]))
        assert not (terminated[0] or truncated[0])
    assert ale_of(machado).lives() == 4  # one ball launched at the start, lost, never relaunched
    env.close()
    machado.close()


def test_game_is_capped_at_max_episode_steps_agent_steps():
    env = breakout("machado", max_episode_steps=120)
    env.reset()
    for step in range(1, 121):
        _, _, terminated, truncated, _ = env.step(np.array([0]))
        assert not terminated[0] and truncated[0] == (step == 120), step
    # Each agent step is 4 frames (the no-ops and FIRE of the reset come on top): the cap is not counted
    # in frames inside the frame skip, which would have cut the game after ~30 agent steps.
    assert env.pop_episodes() == ([0.0], [120])
    env.close()


def test_the_step_limit_lives_in_the_game_wrapper_outside_the_frame_skip():
    env = make_env(env_config(load_conf("env", "Pong")))
    kinds = wrappers_of(env)
    assert kinds.index(Game) < kinds.index(AtariPreprocessing)  # outer wrappers come first
    assert not any(k.__name__ == "TimeLimit" for k in kinds)
    env.close()
