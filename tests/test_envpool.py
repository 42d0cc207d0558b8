"""hardware.vector_backend=envpool: the real EnvPool against the gymnasium path (rlrun.envs.envpool_backend)."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
from helpers import load_conf

envpool = pytest.importorskip("envpool", reason="the envpool backend needs its extra: pip install -e '.[envpool]'")
pytest.importorskip("ale_py", reason="Atari needs the atari extra: pip install -e '.[atari]'")

from rlrun.envs import VecEnv, env_config  # noqa: E402
from rlrun.envs.envpool_backend import EnvPoolEnvs  # noqa: E402

MUJOCO = ["HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid"]


def env_cfg(name: str, **overrides):
    return env_config(load_conf("env", name, **overrides))


def vec(name: str, backend: str, num_envs: int = 2, seed: int = 0, **overrides) -> VecEnv:
    return VecEnv(env_cfg(name, **overrides), num_envs, seed, backend)


def play(env: VecEnv, steps: int, seed: int = 0) -> dict:
    """Random play of a discrete-action env: the learner's episode ends, the games' raw returns and lengths."""
    rng = np.random.default_rng(seed)
    env.reset()
    ended = np.zeros(env.num_envs, int)
    returns, lengths = [], []
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(rng.integers(env.action_space.n, size=env.num_envs))
        ended += terminated | truncated
        r, n = env.pop_episodes()
        returns += r
        lengths += n
    return {"ended": int(ended.sum()), "returns": returns, "lengths": lengths}


@pytest.mark.parametrize("protocol", ["nature", "machado"])
def test_envpool_atari_has_the_gymnasium_paths_spaces_and_uint8_stacks(protocol):
    sync, pool = vec("Pong", "sync", protocol=protocol), vec("Pong", "envpool", protocol=protocol)
    try:
        assert pool.backend == "envpool" and isinstance(pool.envs, EnvPoolEnvs)
        assert pool.observation_space == sync.observation_space and pool.action_space == sync.action_space
        first, sync_first = pool.reset(), sync.reset()
        obs, *_ = pool.step(np.zeros(2, np.int64))
        assert first.dtype == obs.dtype == np.uint8 and obs.shape == (2, 4, 84, 84) == sync_first.shape
        np.testing.assert_array_equal(obs[:, :3], first[:, 1:])  # the stack moves by one frame a step
        # The same screen in the same gray levels: Pong's background, court and score, by area resize.
        assert abs(float(first.mean()) - float(sync_first.mean())) < 3
    finally:
        sync.close()
        pool.close()


@pytest.mark.parametrize("name", MUJOCO)
def test_envpool_mujoco_has_the_gymnasium_spaces(name):
    sync, pool = vec(name, "sync", 1), vec(name, "envpool", 1)
    try:
        assert pool.backend == "envpool"
        assert pool.observation_space == sync.observation_space and pool.action_space == sync.action_space
        first = pool.reset()
        obs, reward, *_ = pool.step(np.zeros((1, *pool.action_space.shape), np.float32))
        assert first.shape == obs.shape == sync.reset().shape and obs.dtype == np.float32
        assert np.isfinite(obs).all() and np.isfinite(reward).all() and not np.array_equal(first, obs)
    finally:
        sync.close()
        pool.close()


def replay_one_env(task: str, options: dict, seed: int, actions: list) -> list[tuple]:
    """One env of EnvPool alone (seed `seed`), driven in its own NEXT_STEP convention: each ended episode is
    followed by EnvPool's resetting step. Returns, per agent step, (obs, reward, terminated, truncated,
    last obs of an ended episode or None) with the resetting steps folded in as SAME_STEP would."""
    pool = envpool.make(task, env_type="gymnasium", num_envs=1, seed=seed, **options)
    pool.reset()
    out = []
    for action in actions:
        obs, reward, terminated, truncated, _ = pool.step(np.array([action]))
        final = None
        if terminated[0] or truncated[0]:
            final = obs[0]
            obs, reset_reward, *_ = pool.step(np.array([action]))
            assert reset_reward[0] == 0  # the step the algorithm must not see
        out.append((obs[0], reward[0], terminated[0], truncated[0], final))
    pool.close()
    return out


@pytest.mark.parametrize("protocol,cap", [("nature", 60), ("machado", 150)])
def test_envpool_steps_are_same_step_final_obs_rows_and_seeds_are_seed_plus_i(protocol, cap):
    # Breakout: five lives (life-loss terminals under nature; random play loses a game in 100-250 steps),
    # and a step cap to see truncations too.
    env = vec("Breakout", "envpool", 3, seed=7, protocol=protocol, max_episode_steps=cap)
    rng = np.random.default_rng(0)
    actions = rng.integers(4, size=(400, 3))
    env.reset()
    rows = [env.step(a) for a in actions]
    ends = {"terminated": 0, "truncated": 0}
    for i in range(3):
        expected = replay_one_env("Breakout-v5", env.envs.options, 7 + i, list(actions[:, i]))
        for t, ((obs, reward, terminated, truncated, final_obs), (e_obs, e_reward, e_term, e_trunc, e_final)) in \
                enumerate(zip(rows, expected, strict=True)):
            # The newest frames (the stacks' older frames at an episode's start: test_stacks_start_...).
            assert (terminated[i], truncated[i]) == (e_term, e_trunc), t
            np.testing.assert_array_equal(obs[i, -1], e_obs[-1])  # after an end: the next episode's first
            assert reward[i] == e_reward
            if e_final is not None:
                np.testing.assert_array_equal(final_obs[i, -1], e_final[-1])  # the last of the ended one
            ends["terminated"] += int(e_term)
            ends["truncated"] += int(e_trunc)
    assert ends["truncated"] > 0 and ends["terminated"] > 0
    env.close()


@pytest.mark.parametrize("backend", ["sync", "envpool"])
def test_stacks_start_each_episode_with_its_first_frame_repeated_after_a_lost_life_too(backend):
    # What gymnasium's FrameStackObservation gives and DQN's FrameStackReplay rebuilds: a stack moves by one
    # frame a step within an episode; the first stack of an episode (a new life included) is one frame x4.
    env = vec("Breakout", backend, 2)
    rng = np.random.default_rng(1)
    previous = env.reset()
    starts = 0
    for _ in range(300):
        obs, _, terminated, truncated, final_obs = env.step(rng.integers(4, size=2))
        for i in range(2):
            last = final_obs[i] if terminated[i] or truncated[i] else obs[i]
            np.testing.assert_array_equal(last[:3], previous[i, 1:])
            if terminated[i] or truncated[i]:
                assert (obs[i] == obs[i, -1]).all()
                starts += 1
        previous = obs
    assert starts >= 8  # lost lives, not only new games
    env.close()


def test_life_loss_is_terminal_and_returns_count_whole_games_on_both_backends():
    # Random Breakout: 5 lives a game, every lost life terminal for the learner (nature); a game's return and
    # length count all five. The same statistics on both backends.
    stats = {backend: play(vec("Breakout", backend, 2), 600) for backend in ("sync", "envpool")}
    for backend, s in stats.items():
        games = len(s["returns"])
        assert games >= 4, backend
        assert 5 * games <= s["ended"] < 5 * games + 5 * 2, backend  # 5 learner episodes per game (2 in flight)
        assert all(r == int(r) and r >= 0 for r in s["returns"]) and min(s["lengths"]) > 100, backend
    mean = {backend: np.mean(s["lengths"]) for backend, s in stats.items()}
    assert 0.6 < mean["envpool"] / mean["sync"] < 1.6, mean  # random play lasts as long on either


def test_machado_protocol_ends_episodes_at_game_over_only_with_sticky_actions():
    pool = vec("Breakout", "envpool", 2, protocol="machado")
    s = play(pool, 600)
    assert len(s["returns"]) >= 3 and s["ended"] == len(s["returns"])  # no life-loss terminals
    assert pool.envs.pool.config["repeat_action_probability"] == pytest.approx(0.25)
    assert not pool.envs.pool.config["episodic_life"]
    nature = vec("Breakout", "envpool", 2)
    assert nature.envs.pool.config["repeat_action_probability"] == 0 and nature.envs.pool.config["episodic_life"]
    pool.close()
    nature.close()


@pytest.mark.parametrize("name", ["Pong", "HalfCheetah"])
def test_time_cap_truncates_at_max_episode_steps_on_both_backends(name):
    for backend in ("sync", "envpool"):
        env = vec(name, backend, 2, max_episode_steps=25)
        env.reset()
        actions = np.zeros((2, *env.action_space.shape), env.action_space.dtype)
        for t in range(1, 76):
            _, reward, terminated, truncated, final_obs = env.step(actions)
            assert truncated.all() == (t % 25 == 0) and not terminated.any(), (backend, t)
            assert (final_obs is not None) == (t % 25 == 0)
        returns, lengths = env.pop_episodes()
        assert lengths == [25] * 6, backend  # no hidden resetting step counted
        env.close()


def test_rewards_are_not_clipped_in_the_env():
    # Random HalfCheetah pays rewards of size > 1 per step; Atari pays the game score (Pong's is +-1 anyway).
    env = vec("HalfCheetah", "envpool", 2, normalize_reward=False)
    env.reset()
    rewards = [env.step(np.ones((2, 6), np.float32))[1] for _ in range(50)]
    assert np.abs(rewards).max() > 1
    env.close()


def fallback_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if "vector_backend=envpool" in r.getMessage()]


@pytest.mark.parametrize("name,overrides,why", [
    ("CartPole", {}, "neither an Atari game"),
    ("HalfCheetah", {"kwargs": {"default_camera_config": {"distance": 4.0}}}, "default_camera_config"),
    ("HalfCheetah", {"wrappers": ["gymnasium.wrappers.ClipAction"]}, "gymnasium wrappers"),
])
def test_what_envpool_cannot_run_falls_back_to_sync_with_one_line(caplog, name, overrides, why):
    with caplog.at_level(logging.WARNING, logger="rlrun"):
        env = vec(name, "envpool", 2, **overrides)
    lines = fallback_lines(caplog)
    assert len(lines) == 1 and why in lines[0] and "sync backend" in lines[0], lines
    assert env.backend == "sync"
    env.reset()
    env.step(np.array([env.action_space.sample() for _ in range(2)]))  # and training goes on
    env.close()


def test_envpool_not_installed_falls_back_to_sync_with_the_install_line():
    # A real interpreter in which `import envpool` fails (sys.modules entry None), nothing of rlrun replaced.
    code = ("import sys, logging; sys.modules['envpool'] = None; logging.basicConfig(level=logging.WARNING)\n"
            "from omegaconf import OmegaConf\n"
            "from rlrun.envs import VecEnv, env_config\n"
            "from rlrun.resources import CONF_DIR\n"
            "env = VecEnv(env_config(OmegaConf.load(CONF_DIR / 'env' / 'HalfCheetah.yaml')), 2, 0, 'envpool')\n"
            "env.reset(); env.step(env.action_space.sample()[None].repeat(2, 0)); print('backend', env.backend)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if "vector_backend=envpool" in line]
    assert len(lines) == 1 and "pip install 'rlrun[envpool]'" in lines[0], proc.stderr
    assert "backend sync" in proc.stdout


def test_envpool_episodes_in_flight_are_not_checkpointed_and_resume_starts_fresh(caplog):
    env = vec("HalfCheetah", "envpool", 2)
    env.reset()
    env.step(np.zeros((2, 6), np.float32))
    state = env.state_dict()
    assert state["episodes"] is None and "envpool keeps its envs in C++" in state["unsaved"]
    resumed = vec("HalfCheetah", "envpool", 2)
    with caplog.at_level(logging.WARNING, logger="rlrun"):
        resumed.load_state_dict(state)
    assert any("starts fresh episodes" in r.getMessage() and "envpool" in r.getMessage() for r in caplog.records)
    assert resumed.seed == 0 + state["steps"]  # fresh episodes, seeded apart from the first start's
    assert resumed.reset().shape == (2, 17)
    env.close()
    resumed.close()


@pytest.mark.parametrize("overrides", [
    ("algo=ppo", "env=HalfCheetah", "total_steps=2048", "algo.num_steps=1024"),
    ("algo=ppo", "env=Pong", "network=cnn", "total_steps=512", "algo.num_steps=32"),  # 8 envs x 32 steps
], ids=["ppo-HalfCheetah", "ppo-Pong-cnn"])
def test_cli_trains_with_the_envpool_backend(rlrun, tmp_path, run_dir, overrides):
    result = rlrun(*overrides, "hardware.vector_backend=envpool", "logger=csv", "hardware=cpu", "eval.episodes=1",
                   cwd=tmp_path, run_dir=run_dir, timeout=300)
    assert result.returncode == 0, result.describe()
    # No fallback line (rlrun logs to stdout): envpool stepped the training envs.
    assert "vector_backend=envpool" not in result.stdout + result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["total_steps"] >= 512 and np.isfinite(summary["final_eval_mean_return"])
    hardware = json.loads((run_dir / "manifest.json").read_text())["hardware"]
    assert hardware["vector_backend"] == "envpool" and "vector_backend_asked" not in hardware


def test_cli_run_that_falls_back_records_the_backend_that_ran_in_its_manifest(rlrun, tmp_path, run_dir):
    # CartPole is not among the envs rlrun hands to envpool: the sync backend steps it, and the
    # manifest says so beside what was asked for.
    result = rlrun("algo=ppo", "env=CartPole", "total_steps=256", "algo.num_steps=128", "hardware=cpu",
                   "hardware.vector_backend=envpool", "logger=csv", "eval.episodes=1", cwd=tmp_path, run_dir=run_dir)
    assert result.returncode == 0, result.describe()
    assert sum("vector_backend=envpool" in line for line in (result.stdout + result.stderr).splitlines()) == 1
    hardware = json.loads((run_dir / "manifest.json").read_text())["hardware"]
    assert hardware["vector_backend"] == "sync" and hardware["vector_backend_asked"] == "envpool"
