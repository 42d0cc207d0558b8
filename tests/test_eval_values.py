"""Evaluation records discounted returns, the value estimate against the actual return-to-go (van Hasselt
et al. 2016, Figure 3), and the run's wall-clock seconds at each evaluation, continued across a resume."""

from __future__ import annotations

import csv
import json

import gymnasium as gym
import numpy as np
import pytest
from helpers import CPU, compose_config

from rlrun.algos.dqn import DQN
from rlrun.envs import VecEnv, env_config
from rlrun.nets import network_config
from rlrun.data import discounted_returns
from rlrun.returns import Segment, counted_steps, discounted_return, value_check
from rlrun.run import evaluate


def read_csv(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_returns_to_go_and_discounted_return_by_hand():
    # rewards 1, 0, 2 with gamma 0.5: G_2 = 2, G_1 = 0 + 0.5 * 2 = 1, G_0 = 1 + 0.5 * 1 = 1.5
    assert discounted_returns([1.0, 0.0, 2.0], 0.5).tolist() == [1.5, 1.0, 2.0]
    assert discounted_return([1.0, 0.0, 2.0], 0.5) == 1.5
    assert discounted_return([1.0] * 9, 0.99) == pytest.approx((1 - 0.99 ** 9) / 0.01)


def test_a_truncated_episode_counts_only_states_whose_missing_tail_is_negligible():
    # 10 steps cut by a time limit, gamma 0.5: the tail weight 0.5^(T - t) is below 0.01 for T - t >= 7,
    # that is t = 0, 1, 2, 3; a terminated episode counts every state.
    assert counted_steps(10, 0.5, truncated=True).tolist() == [True] * 4 + [False] * 6
    assert counted_steps(10, 0.5, truncated=False).all()
    assert not counted_steps(500, 1.0, truncated=True).any()  # undiscounted: no tail is ever negligible
    # CartPole's 500-step limit with gamma 0.99: 0.99^459 = 0.0099 < 0.01 <= 0.99^458, so t = 0 .. 41.
    assert counted_steps(500, 0.99, truncated=True).tolist() == [True] * 42 + [False] * 458


def test_value_check_averages_estimate_and_return_over_the_same_states():
    terminated = Segment(max_q=[3.0, 2.0, 1.0], rewards=[1.0, 0.0, 2.0], truncated=False)
    cut = Segment(max_q=[10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.0, 3.0, 2.0, 1.0], rewards=[1.0] * 10, truncated=True)
    check = value_check([terminated, cut], 0.5)
    # The cut episode's first 4 states: G_t = 2 (1 - 0.5^(10 - t)) = 2046/1024, 1022/512, 510/256, 254/128.
    actual = [1.5, 1.0, 2.0, 2046 / 1024, 1022 / 512, 510 / 256, 254 / 128]
    assert check.states == 7
    assert check.value_estimate == pytest.approx((3 + 2 + 1 + 10 + 9 + 8 + 7) / 7)
    assert check.return_to_go == pytest.approx(sum(actual) / 7)
    empty = value_check([Segment([1.0], [1.0], truncated=True)], 0.99)
    assert empty.states == 0 and np.isnan(empty.value_estimate) and np.isnan(empty.return_to_go)


def test_evaluate_records_discounted_returns_and_q_against_an_independent_replay():
    """A DQN (untrained: its Q is far from the truth, which is what the check must show) evaluated on
    CartPole cut at 20 steps with gamma 0.5; the same episodes replayed here with gymnasium directly."""
    # network.ortho_init=true: the untrained Q this test was written against, whose greedy episodes both fall
    # and reach the cut at 20 (with DQN's own default init, torch's, all six fall before 20).
    cfg = compose_config("algo=dqn", "env=CartPole", "algo.gamma=0.5", "env.max_episode_steps=20",
                         "network.ortho_init=true")
    algo_cfg = DQN.parse_config({k: v for k, v in cfg.algo.items() if k != "_target_"})
    env_cfg = env_config(cfg.env)
    env = VecEnv(env_cfg, 1, 0, "sync", algo_cfg.gamma)
    eval_env = VecEnv(env_cfg, 1, 7, "sync", algo_cfg.gamma, training=False)
    algo = DQN(algo_cfg, env, network_config(cfg.network), CPU, 0, 1000)
    result = evaluate(algo, eval_env, env, 6, seed=7)

    replay = gym.make("CartPole-v1", max_episode_steps=20)
    obs, _ = replay.reset(seed=7)
    lengths, discounted, estimates, actual = [], [], [], []
    for _ in range(6):
        q, rewards, done = [], [], False
        while not done:
            values = algo.q_values(obs[None].astype(np.float32))[0]
            q.append(values.max())
            obs, reward, terminated, truncated, _ = replay.step(int(values.argmax()))
            rewards.append(reward)
            done = terminated or truncated
        mask = counted_steps(len(rewards), 0.5, truncated and not terminated)
        estimates += np.array(q)[mask].tolist()
        actual += discounted_returns(rewards, 0.5)[mask].tolist()
        lengths.append(len(rewards))
        discounted.append(sum(r * 0.5 ** t for t, r in enumerate(rewards)))
        obs, _ = replay.reset()
    assert result.lengths == lengths and result.returns == [float(n) for n in lengths]
    assert result.discounted_returns == pytest.approx(discounted)
    # Both kinds of ending: episodes that fell (every state counts) and one cut at 20 (its last 6 do not).
    assert 20 in lengths and min(lengths) < 20
    assert result.values.states == len(estimates) == sum(lengths) - 6 * lengths.count(20)
    assert result.values.value_estimate == pytest.approx(np.mean(estimates), rel=1e-5)
    assert result.values.return_to_go == pytest.approx(np.mean(actual))


def test_eval_csv_records_values_and_wall_time_across_a_resume(rlrun, tmp_path):
    run_dir = tmp_path / "run"
    common = ("algo=dqn", "env=CartPole", "logger=csv", "eval.episodes=2", "eval.every_steps=500",
              "algo.learning_starts=250", "algo.steps_per_iteration=250")
    first = rlrun(*common, "total_steps=1000", "schedule_steps=2000", cwd=tmp_path, run_dir=run_dir)
    assert first.returncode == 0, first.describe()
    saved = json.loads((run_dir / "summary.json").read_text())["wall_seconds"]
    second = rlrun(f"resume={run_dir}", "total_steps=2000", cwd=tmp_path)
    assert second.returncode == 0, second.describe()
    rows = read_csv(run_dir / "eval.csv")
    assert [int(r["global_step"]) for r in rows] == [500, 1000, 1500, 2000]
    elapsed = [float(r["elapsed"]) for r in rows]
    # The resumed run's clock starts from the seconds saved with last.pt, not from zero.
    assert all(a < b for a, b in zip(elapsed, elapsed[1:])) and elapsed[2] > saved
    episodes = read_csv(run_dir / "eval_episodes.csv")
    for row in rows:
        mine = [e for e in episodes if e["global_step"] == row["global_step"]]
        assert len(mine) == 2
        # CartPole pays 1 a step: an episode of L steps has discounted return (1 - gamma^L) / (1 - gamma).
        for e in mine:
            assert float(e["discounted_return"]) == pytest.approx((1 - 0.99 ** int(e["episodic_length"])) / 0.01)
        assert float(row["mean_discounted_return"]) == pytest.approx(np.mean([float(e["discounted_return"])
                                                                               for e in mine]))
        assert int(row["value_states"]) > 0 and float(row["value_estimate"]) != 0
        assert 0 < float(row["return_to_go"]) <= 100  # rewards of 1, gamma 0.99: at most 1 / (1 - 0.99)


def test_dqn_evaluation_acts_and_checks_values_from_one_q_forward_with_the_same_epsilon_draws():
    """evaluate() takes the action and Q(s, .) from act_with_q_values, one forward pass a step; its episodes
    and value check are those of acting with act() and computing q_values() apart (two forward passes, as
    before), eval_epsilon's random actions included: the same draws from the evaluation generator."""
    cfg = compose_config("algo=dqn", "env=CartPole", "algo.gamma=0.5", "env.max_episode_steps=20",
                         "algo.eval_epsilon=0.3")
    algo_cfg = DQN.parse_config({k: v for k, v in cfg.algo.items() if k != "_target_"})
    env_cfg = env_config(cfg.env)

    def build() -> tuple[DQN, VecEnv, VecEnv]:
        env = VecEnv(env_cfg, 1, 0, "sync", algo_cfg.gamma)
        return DQN(algo_cfg, env, network_config(cfg.network), CPU, 0, 1000), env, VecEnv(
            env_cfg, 1, 7, "sync", algo_cfg.gamma, training=False)

    algo, env, eval_env = build()
    forwards = []
    q_values = algo.q_values
    algo.q_values = lambda obs: forwards.append(len(obs)) or q_values(obs)  # counts the forward passes
    result = evaluate(algo, eval_env, env, 6, seed=7)
    assert len(forwards) == sum(result.lengths)

    reference, _, replay = build()
    obs = replay.reset(seed=7)
    returns, segments, max_q, rewards, explored = [], [], [], [], 0
    while len(returns) < 6:
        values = reference.q_values(obs)
        action = reference.act(obs, deterministic=True)
        explored += int(action[0] != values[0].argmax())
        max_q.append(float(values[0].max()))
        obs, reward, terminated, truncated, _ = replay.step(action)
        rewards.append(float(reward[0]))
        if terminated[0] or truncated[0]:
            segments.append(Segment(max_q, rewards, truncated=bool(truncated[0] and not terminated[0])))
            max_q, rewards = [], []
        returns += replay.pop_episodes()[0]
    assert explored > 0  # eval_epsilon's random actions were drawn, and some differ from the greedy one
    assert result.returns == returns[:6]
    assert result.values == value_check(segments, 0.5)
