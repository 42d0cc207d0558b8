"""n-step transitions of the replay (algo.n_step, Sutton 1988; Hessel et al. 2018, eq. 2): by hand, and
against a slow reference that follows each env's episodes in Python lists."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import CPU, load_conf

from rlrun.algos.dqn import DQN, td_target
from rlrun.config import ConfigError
from rlrun.data import ReplayBuffer
from rlrun.data.prioritized import PrioritizedReplayBuffer
from rlrun.envs import VecEnv, env_config
from rlrun.nets import network_config

OBS = gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)
ACTIONS = gym.spaces.Discrete(2)
DEV = CPU.device


def add_steps(replay: ReplayBuffer, rewards, terminated, truncated) -> None:
    """One add per step: obs = the step's index, next_obs = index + 0.5 (so a row's s' names its step)."""
    for t, (r, term, trunc) in enumerate(zip(rewards, terminated, truncated)):
        r, term, trunc = np.atleast_1d(r), np.atleast_1d(term), np.atleast_1d(trunc)
        obs = np.full((len(r), 1), t, np.float32)
        replay.add(obs, np.zeros(len(r), np.int64), np.asarray(r, np.float32), obs + 0.5,
                   np.asarray(term, np.float32), np.asarray(trunc, bool))


def test_n_step_transitions_worked_by_hand():
    # One env, gamma 0.5, n 3. Steps 0-2 form an episode that terminates at step 2; step 3 starts the next
    # episode and is the newest stored step.
    replay = ReplayBuffer(10, OBS, ACTIONS, n_step=3, gamma=0.5)
    add_steps(replay, [1.0, 2.0, 3.0, 4.0], [0, 0, 1, 0], [0, 0, 0, 0])
    batch = replay.gather(np.array([0, 1, 2, 3]), DEV)
    # t=0: 1 + 0.5*2 + 0.25*3 = 2.75, closed by step 2 (terminated), gamma^3; t=1: 2 + 0.5*3 = 3.5, gamma^2;
    # t=2: 3, gamma; t=3: 4, gamma (nothing newer is stored), s' of step 3.
    assert batch["rewards"].tolist() == [2.75, 3.5, 3.0, 4.0]
    assert batch["discounts"].tolist() == [0.125, 0.25, 0.5, 0.5]
    assert batch["terminated"].tolist() == [1.0, 1.0, 1.0, 0.0]
    assert batch["next_obs"][:, 0].tolist() == [2.5, 2.5, 2.5, 3.5]
    assert batch["obs"][:, 0].tolist() == [0.0, 1.0, 2.0, 3.0]


def test_a_time_limit_stops_the_sum_and_still_bootstraps():
    # Truncated at step 1: the n-step transition from step 0 ends there, not terminated (its s' has a future).
    replay = ReplayBuffer(10, OBS, ACTIONS, n_step=3, gamma=0.5)
    add_steps(replay, [1.0, 2.0, 3.0, 4.0], [0, 0, 0, 0], [0, 1, 0, 0])
    batch = replay.gather(np.array([0, 2]), DEV)
    assert batch["rewards"].tolist() == [2.0, 3.0 + 0.5 * 4.0]
    assert batch["discounts"].tolist() == [0.25, 0.25]
    assert batch["terminated"].tolist() == [0.0, 0.0]
    assert batch["next_obs"][:, 0].tolist() == [1.5, 3.5]


def reference_n_step(episodes_by_env: list[list[tuple]], n: int, gamma: float) -> dict[float, tuple]:
    """For each (env, step) transition: (n-step return, s' label, terminated, gamma^m), walking that env's
    own later transitions in plain Python."""
    out = {}
    for env, steps in enumerate(episodes_by_env):
        for i, (label, _, _, _) in enumerate(steps):
            total, discount, j = 0.0, 1.0, i
            while True:
                _, reward, terminated, truncated = steps[j]
                total += discount * reward
                discount *= gamma
                if terminated or truncated or j - i + 1 == n or j + 1 == len(steps):
                    break
                j += 1
            out[(env, label)] = (total, steps[j][0] + 0.5, float(steps[j][2]), discount)
    return out


@pytest.mark.parametrize("capacity", [64, 37])  # 37: the ring wraps in the middle of a step's rows
@pytest.mark.parametrize("n", [2, 5])
def test_n_step_walk_matches_a_slow_reference_with_several_envs_and_a_wrapped_ring(capacity, n):
    rng = np.random.default_rng(n + capacity)
    num_envs, steps, gamma = 3, 50, 0.9
    rewards = rng.normal(size=(steps, num_envs))
    terminated = rng.random((steps, num_envs)) < 0.1
    truncated = ~terminated & (rng.random((steps, num_envs)) < 0.05)
    replay = ReplayBuffer(capacity, OBS, ACTIONS, n_step=n, gamma=gamma)
    for t in range(steps):  # obs label: t * num_envs + env, unique per transition
        obs = (t * num_envs + np.arange(num_envs, dtype=np.float32))[:, None]
        replay.add(obs, np.zeros(num_envs, np.int64), rewards[t].astype(np.float32), obs + 0.5,
                   terminated[t].astype(np.float32), truncated[t])
    by_env = [[(t * num_envs + e, np.float32(rewards[t, e]), terminated[t, e], truncated[t, e]) for t in range(steps)]
              for e in range(num_envs)]
    expected = reference_n_step(by_env, n, gamma)
    batch = replay.gather(np.arange(replay.size), DEV)
    for row in range(replay.size):
        label = batch["obs"][row, 0].item()
        total, next_label, term, discount = expected[(int(label) % num_envs, label)]
        assert batch["rewards"][row].item() == pytest.approx(total, rel=1e-5, abs=1e-5)
        assert batch["next_obs"][row, 0].item() == next_label
        assert batch["terminated"][row].item() == term
        assert batch["discounts"][row].item() == pytest.approx(discount, rel=1e-6)


def test_prioritized_replay_samples_n_step_transitions_too():
    replay = PrioritizedReplayBuffer(10, OBS, ACTIONS, alpha=0.6, eps=1e-6, n_step=3, gamma=0.5)
    add_steps(replay, [1.0, 2.0, 3.0, 4.0], [0, 0, 1, 0], [0, 0, 0, 0])
    batch = replay.sample(8, torch.Generator().manual_seed(0), DEV)
    hand = {0: 2.75, 1: 3.5, 2: 3.0, 3: 4.0}
    assert batch["rewards"].tolist() == [hand[int(i)] for i in batch["indices"]]


def test_td_target_takes_each_transitions_own_discount():
    # y = R + gamma^m (1 - terminated) max Q': 2.75 + 0.125*5 = 3.375; 3 + 0 (terminated); 4 + 0.5*7 = 7.5.
    y = td_target(torch.tensor([2.75, 3.0, 4.0]), torch.tensor([0.0, 1.0, 0.0]),
                  torch.tensor([[5.0, 1.0], [9.0, 9.0], [2.0, 7.0]]), torch.tensor([0.125, 0.5, 0.5]))
    assert y.tolist() == [3.375, 3.0, 7.5]


def test_checkpointed_replay_keeps_the_episode_ends_and_refuses_a_one_step_checkpoint():
    replay = ReplayBuffer(10, OBS, ACTIONS, n_step=3, gamma=0.5)
    add_steps(replay, [1.0, 2.0, 3.0, 4.0], [0, 0, 1, 0], [0, 0, 0, 0])
    restored = ReplayBuffer(10, OBS, ACTIONS, n_step=3, gamma=0.5)
    restored.load_state_dict(replay.state_dict())
    index = np.arange(4)
    assert all(torch.equal(a, b) for a, b in zip(replay.gather(index, DEV).values(),
                                                  restored.gather(index, DEV).values()))
    one_step = ReplayBuffer(10, OBS, ACTIONS)
    add_steps(one_step, [1.0], [0], [0])
    with pytest.raises(ValueError, match="algo.n_step=1"):
        restored.load_state_dict(one_step.state_dict())


def test_n_step_is_refused_with_reward_clipping():
    node = load_conf("algo", "dqn")
    env = VecEnv(env_config({**load_conf("env", "CartPole"), **node["env"]}), 1, 0, "sync", 0.99)
    net = network_config({**load_conf("network", "mlp"), **node["network"], "hidden_sizes": [8]})
    fields = {k: v for k, v in node["algo"].items() if k != "_target_"}
    with pytest.raises(ConfigError, match="algo.n_step=1 or algo.clip_reward=false"):
        DQN(DQN.parse_config({**fields, "n_step": 3, "clip_reward": True, "buffer_size": 100}), env, net, CPU, 0, 1000)
