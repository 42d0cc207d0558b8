"""Prioritized experience replay (Schaul et al. 2016, proportional): the sum tree against a slow reference,
the sampling probabilities, the importance-sampling weights worked by hand, the priority updates, the
weighted loss's written-out gradient against autograd, the config's refusals, and exact resume."""

from __future__ import annotations

import os
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import CPU, load_conf
from test_dqn_math import make_dqn
from test_resume_exact import split_equals_whole

from rlrun.algos.dqn import DQN, importance_weights, q_loss
from rlrun.config import ConfigError
from rlrun.data.prioritized import PrioritizedReplayBuffer, SumTree
from rlrun.nets import network_config

BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def filled_replay(priorities, alpha: float = 1.0, eps: float = 1e-6, capacity: int | None = None):
    """A replay holding len(priorities) transitions (obs = (i, -i)) whose priorities p_i are `priorities`
    (with alpha = 1, eps = 0 would give them exactly; eps is subtracted from the TD errors instead)."""
    n = len(priorities)
    replay = PrioritizedReplayBuffer(capacity or n, BOX, gym.spaces.Discrete(2), alpha, eps)
    for i in range(n):
        obs = np.array([[i, -i]], np.float32)
        replay.add(obs, np.array([i % 2]), np.array([float(i)], np.float32), obs, np.array([0.0]))
    td_errors = np.asarray(priorities, np.float64) ** (1 / alpha) - eps if alpha else np.ones(n)
    replay.update_priorities(np.arange(n), td_errors)
    return replay


# --- the sum tree ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("capacity", [1, 5, 8, 37])
def test_sum_tree_totals_and_prefix_search_match_a_cumulative_sum(capacity):
    rng = np.random.default_rng(capacity)
    tree = SumTree(capacity)
    priorities = np.zeros(capacity)
    for _ in range(20):  # batched updates, with repeated leaves (the last value wins, as one by one)
        index = rng.integers(capacity, size=7)
        values = rng.uniform(0.1, 3.0, size=7)
        tree.update(index, values)
        for i, v in zip(index, values, strict=True):
            priorities[i] = v
        assert tree.total == pytest.approx(priorities.sum(), rel=1e-12)
        assert tree.min == priorities[priorities > 0].min()
        np.testing.assert_array_equal(tree.priorities(slice(0, capacity)), priorities)
        # The leaf a mass m falls in: the first i with cumsum[i] > m (the slow reference, searchsorted).
        mass = rng.uniform(0, tree.total, size=50)
        cumulative = np.cumsum(priorities)
        expected = np.minimum(np.searchsorted(cumulative, mass, side="right"), capacity - 1)
        np.testing.assert_array_equal(tree.find(mass), expected)


def test_sum_tree_rebuilt_from_its_leaves_is_the_same_bit_for_bit():
    rng = np.random.default_rng(0)
    tree = SumTree(13)
    for _ in range(30):
        tree.update(rng.integers(13, size=4), rng.uniform(0, 1, size=4))
    rebuilt = SumTree(13)
    rebuilt.update(np.arange(13), tree.priorities(slice(0, 13)))
    np.testing.assert_array_equal(rebuilt.sums, tree.sums)
    np.testing.assert_array_equal(rebuilt.mins, tree.mins)


# --- sampling ----------------------------------------------------------------------------------------------


def counts(replay: PrioritizedReplayBuffer, batches: int, batch_size: int, seed: int = 0) -> np.ndarray:
    generator = torch.Generator().manual_seed(seed)
    drawn = np.concatenate([replay.sample(batch_size, generator, CPU.device)["indices"].numpy()
                            for _ in range(batches)])
    return np.bincount(drawn, minlength=replay.size)


def chi_square(observed: np.ndarray, probabilities: np.ndarray) -> float:
    expected = observed.sum() * probabilities
    return float(((observed - expected) ** 2 / expected).sum())


def test_samples_follow_the_priorities_as_a_weighted_choice_does():
    priorities = np.array([0.5, 1.0, 2.0, 4.0, 0.25, 3.0, 1.5, 0.75, 2.5, 1.25])
    replay = filled_replay(priorities)
    p = priorities / priorities.sum()
    observed = counts(replay, 2000, 32)
    # The slow reference: numpy's choice with p, as many draws. Both statistics against chi-square with
    # 9 degrees of freedom, whose 99.9% quantile is 27.9; stratified sampling makes the sampler's far smaller.
    reference = np.bincount(np.random.default_rng(0).choice(10, size=observed.sum(), p=p), minlength=10)
    assert chi_square(reference, p) < 27.9
    assert chi_square(observed, p) < 27.9
    np.testing.assert_allclose(observed / observed.sum(), p, atol=0.004)


def test_stratified_sampling_draws_one_transition_per_segment_of_the_total():
    # Equal priorities and a batch as large as the buffer: segment j is transition j's whole mass, so
    # every minibatch holds each transition exactly once, in order.
    replay = filled_replay([2.0, 2.0, 2.0, 2.0])
    generator = torch.Generator().manual_seed(1)
    for _ in range(10):
        np.testing.assert_array_equal(replay.sample(4, generator, CPU.device)["indices"].numpy(), [0, 1, 2, 3])
    # Priorities 1, 3 and a batch of 2: segments [0, 2) and [2, 4): the first in item 0 (mass [0, 1)) or
    # item 1 (mass [1, 4)) with probability 1/2 each, the second always item 1.
    replay = filled_replay([1.0, 3.0])
    firsts = np.array([replay.sample(2, generator, CPU.device)["indices"].numpy() for _ in range(400)])
    assert (firsts[:, 1] == 1).all()
    assert 150 < (firsts[:, 0] == 0).sum() < 250


def test_with_alpha_zero_sampling_is_uniform_whatever_the_td_errors():
    replay = PrioritizedReplayBuffer(12, BOX, gym.spaces.Discrete(2), alpha=0.0, eps=1e-6)
    for i in range(12):
        obs = np.full((1, 2), i, np.float32)
        replay.add(obs, np.array([0]), np.array([0.0], np.float32), obs, np.array([0.0]))
    replay.update_priorities(np.arange(12), np.random.default_rng(0).uniform(0, 100, size=12))
    np.testing.assert_array_equal(replay.tree.priorities(slice(0, 12)), np.ones(12))
    batch = replay.sample(8, torch.Generator().manual_seed(0), CPU.device)
    torch.testing.assert_close(batch["probabilities"], torch.full((8,), 1 / 12, dtype=torch.float64))
    torch.testing.assert_close(importance_weights(batch["probabilities"], batch["min_probability"], 0.4),
                               torch.ones(8))
    observed = counts(replay, 1500, 8)
    assert chi_square(observed, np.full(12, 1 / 12)) < 31.3  # 11 degrees of freedom, 99.9%


def test_a_sample_gathers_the_transitions_it_names():
    replay = filled_replay([1.0, 2.0, 3.0, 4.0, 5.0])
    batch = replay.sample(16, torch.Generator().manual_seed(0), CPU.device)
    index = batch["indices"].numpy()
    np.testing.assert_array_equal(batch["obs"].numpy(), np.stack([index, -index], 1).astype(np.float32))
    np.testing.assert_array_equal(batch["rewards"].numpy(), index.astype(np.float32))


# --- importance-sampling weights, priority updates -----------------------------------------------------------


def test_importance_weights_of_a_four_transition_buffer_worked_by_hand():
    # p = 1, 2, 3, 4: P = 0.1, 0.2, 0.3, 0.4, N = 4. w_i = (N P(i))^-beta / max_k w_k, the max being the
    # least likely transition's, (4 x 0.1)^-beta. beta = 0.5: (0.4)^-0.5 = 1.5811 for P = 0.1, (0.8)^-0.5 =
    # 1.1180, (1.2)^-0.5 = 0.9129, (1.6)^-0.5 = 0.7906; divided by 1.5811: 1, 0.7071, 0.5774, 0.5.
    replay = filled_replay([1.0, 2.0, 3.0, 4.0])
    batch = replay.sample(64, torch.Generator().manual_seed(0), CPU.device)
    index = batch["indices"].numpy()
    assert set(index) == {0, 1, 2, 3}
    probabilities, weights = np.array([0.1, 0.2, 0.3, 0.4]), np.array([1.0, 0.70710678, 0.57735027, 0.5])
    torch.testing.assert_close(batch["probabilities"], torch.tensor(probabilities[index]))
    torch.testing.assert_close(batch["min_probability"], torch.tensor(0.1, dtype=torch.float64))
    torch.testing.assert_close(importance_weights(batch["probabilities"], batch["min_probability"], 0.5),
                               torch.tensor(weights[index], dtype=torch.float32))
    # beta = 1 (the end of the annealing): w = P_min / P(i) = 1, 1/2, 1/3, 1/4; beta = 0: all 1.
    torch.testing.assert_close(importance_weights(batch["probabilities"], batch["min_probability"], 1.0),
                               torch.tensor(np.array([1.0, 0.5, 1 / 3, 0.25])[index], dtype=torch.float32))
    torch.testing.assert_close(importance_weights(batch["probabilities"], batch["min_probability"], 0.0),
                               torch.ones(64))


def test_priority_update_sets_the_sampled_transitions_and_new_ones_get_the_max_so_far():
    replay = PrioritizedReplayBuffer(4, BOX, gym.spaces.Discrete(2), alpha=0.5, eps=0.01)
    obs = np.zeros((2, 2), np.float32)
    replay.add(obs, np.array([0, 1]), np.zeros(2, np.float32), obs, np.zeros(2))
    np.testing.assert_array_equal(replay.tree.priorities(slice(0, 2)), [1.0, 1.0])  # max so far: 1 at first
    # p = (|delta| + eps)^alpha: (3.99 + 0.01)^0.5 = 2, (0.24 + 0.01)^0.5 = 0.5.
    replay.update_priorities(np.array([1, 0]), np.array([-3.99, 0.24]))
    np.testing.assert_allclose(replay.tree.priorities(slice(0, 2)), [0.5, 2.0])
    assert replay.max_priority == pytest.approx(2.0)
    replay.add(obs, np.array([0, 1]), np.zeros(2, np.float32), obs, np.zeros(2))
    np.testing.assert_allclose(replay.tree.priorities(slice(0, 4)), [0.5, 2.0, 2.0, 2.0])
    assert replay.tree.total == pytest.approx(6.5) and replay.tree.min == pytest.approx(0.5)
    # A full ring: the next transition overwrites slot 0, its priority with it.
    replay.add(obs[:1], np.array([0]), np.zeros(1, np.float32), obs[:1], np.zeros(1))
    np.testing.assert_allclose(replay.tree.priorities(slice(0, 4)), [2.0, 2.0, 2.0, 2.0])
    assert replay.tree.min == pytest.approx(2.0)


def test_weighted_huber_loss_worked_by_hand():
    q, y = torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.5, 3.0, 1.0])
    # Huber: 0.5 x 0.5^2 = 0.125, |3| - 0.5 = 2.5, 0; weighted 1, 0.5, 0.25: (0.125 + 1.25 + 0) / 3.
    torch.testing.assert_close(q_loss(q, y, torch.tensor([1.0, 0.5, 0.25])), torch.tensor(1.375 / 3))
    torch.testing.assert_close(q_loss(q, y, torch.ones(3)), q_loss(q, y))


@pytest.mark.parametrize("dueling", [False, True])
def test_weighted_loss_backward_written_out_gives_autograds_gradient_and_the_same_priorities(dueling):
    def build():
        algo = make_dqn(dueling=dueling, double=True, learning_rate=1e-2, max_grad_norm=None,
                        prioritized_replay=True, per_alpha=0.6, per_beta0=0.4, buffer_size=64)
        network = network_config(load_conf("network", "mlp", hidden_sizes=[16, 8], activation="relu"))
        dqn = DQN(algo.cfg, algo.env, network, CPU, 0, 10_000)
        generator = torch.Generator().manual_seed(0)
        obs, next_obs = torch.randn(64, 4, generator=generator).numpy(), torch.randn(64, 4, generator=generator).numpy()
        dqn.replay.add(obs, torch.randint(2, (64,), generator=generator).numpy(),
                       3 * torch.randn(64, generator=generator).numpy(), next_obs,
                       (torch.rand(64, generator=generator) < 0.3).float().numpy())
        dqn.replay.update_priorities(np.arange(64), torch.rand(64, generator=generator).numpy() * 4)
        return dqn

    by_hand, by_autograd = build(), build()
    assert by_hand.manual_backward
    by_autograd.manual_backward = False
    for step in range(3):
        generator = torch.Generator().manual_seed(step)
        hand_batch = by_hand.replay.sample(32, generator, CPU.device)
        auto_batch = by_autograd.replay.sample(32, torch.Generator().manual_seed(step), CPU.device)
        weights = importance_weights(hand_batch["probabilities"], hand_batch["min_probability"], 0.4)
        assert weights.min() < 0.5 and weights.max() <= 1.0  # the weights do differ
        hand, auto = by_hand.train_step(hand_batch), by_autograd.train_step(auto_batch)
        torch.testing.assert_close(by_hand.flat_params.grad, by_autograd.flat_params.grad, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(by_hand.flat_params, by_autograd.flat_params, rtol=1e-5, atol=1e-7)
        for key in auto:
            torch.testing.assert_close(hand[key], auto[key])
        np.testing.assert_allclose(by_hand.replay.tree.sums, by_autograd.replay.tree.sums, rtol=1e-5)
    # The weights are in the gradient: unweighted, the same batch gives another one.
    unweighted = build()
    unweighted.cfg.prioritized_replay = False
    unweighted.train_step(unweighted.replay.sample(32, torch.Generator().manual_seed(0), CPU.device))
    weighted = build()
    weighted.train_step(weighted.replay.sample(32, torch.Generator().manual_seed(0), CPU.device))
    assert not torch.allclose(unweighted.flat_params.grad, weighted.flat_params.grad)


def test_train_step_sets_the_sampled_priorities_to_the_td_errors_before_the_update():
    dqn = make_dqn(prioritized_replay=True, per_alpha=0.6, per_eps=1e-6, buffer_size=50, double=False)
    obs = np.random.default_rng(0).normal(size=(50, 4)).astype(np.float32)
    dqn.replay.add(obs, np.arange(50) % 2, np.ones(50, np.float32), obs[::-1].copy(), np.zeros(50))
    batch = dqn.replay.sample(8, torch.Generator().manual_seed(0), CPU.device)
    with torch.no_grad():
        q = dqn.net(batch["obs"]).gather(1, batch["actions"].unsqueeze(1)).squeeze(1)
        y = batch["rewards"] + dqn.cfg.gamma * dqn.target_net(batch["next_obs"]).amax(1)
    dqn.train_step(batch)
    expected = (np.abs((y - q).numpy()).astype(np.float64) + 1e-6) ** 0.6
    index = batch["indices"].numpy()
    last = {i: k for k, i in enumerate(index)}  # a transition drawn twice keeps its last error (the same)
    np.testing.assert_allclose(dqn.replay.tree.priorities(np.array(list(last))), expected[list(last.values())],
                               rtol=1e-5)


def test_beta_is_annealed_linearly_from_beta0_to_one_at_total_steps():
    dqn = make_dqn(prioritized_replay=True, per_beta0=0.4, total_steps=1000)
    for step, beta in [(0, 0.4), (500, 0.7), (1000, 1.0), (2000, 1.0)]:
        dqn.global_step = step
        assert dqn.per_beta() == pytest.approx(beta)


# --- config, dict observations, checkpoints --------------------------------------------------------------


@pytest.mark.parametrize(("key", "value", "rule"), [("per_alpha", -0.1, ">= 0"), ("per_beta0", 1.5, "in [0, 1]"),
                                                   ("per_beta0", -0.1, "in [0, 1]"), ("per_eps", 0.0, "> 0")])
def test_bad_per_values_are_refused_in_one_line(key, value, rule):
    with pytest.raises(ConfigError) as error:
        make_dqn(prioritized_replay=True, **{key: value})
    message = str(error.value)
    assert "\n" not in message and f"algo.{key}" in message and rule in message


def test_prioritized_replay_off_by_default_keeps_the_uniform_replay():
    dqn = make_dqn()
    assert not dqn.cfg.prioritized_replay and type(dqn.replay).__name__ == "ReplayBuffer"
    assert dqn.samples_phase_at_once
    per = make_dqn(prioritized_replay=True)
    assert isinstance(per.replay, PrioritizedReplayBuffer) and not per.samples_phase_at_once


def test_prioritized_replay_stores_dict_observations_per_key_and_round_trips_its_state():
    space = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (3, 4, 4), np.uint8), "pos": gym.spaces.Box(-1, 1, (2,))})
    replay = PrioritizedReplayBuffer(6, space, gym.spaces.Discrete(3), alpha=0.6, eps=1e-6)
    for step in range(4):  # 2 envs a step: wraps around the ring of 6
        obs = {"image": np.full((2, 3, 4, 4), step, np.uint8), "pos": np.full((2, 2), step, np.float64)}
        replay.add(obs, np.array([0, 1]), np.full(2, step, np.float32), obs, np.zeros(2))
    replay.update_priorities(np.array([0, 3, 5]), np.array([0.5, 2.0, 0.1]))
    batch = replay.sample(5, torch.Generator().manual_seed(0), CPU.device)
    assert batch["obs"]["image"].dtype == torch.uint8
    torch.testing.assert_close(batch["obs"]["image"][:, 0, 0, 0].float(), batch["rewards"])
    torch.testing.assert_close(batch["obs"]["pos"][:, 0], batch["rewards"])
    state = replay.state_dict()
    restored = PrioritizedReplayBuffer(6, space, gym.spaces.Discrete(3), alpha=0.6, eps=1e-6)
    restored.load_state_dict(state)
    np.testing.assert_array_equal(restored.tree.sums, replay.tree.sums)
    np.testing.assert_array_equal(restored.tree.mins, replay.tree.mins)
    assert restored.max_priority == replay.max_priority
    again = restored.sample(5, torch.Generator().manual_seed(0), CPU.device)
    torch.testing.assert_close(again["indices"], batch["indices"])
    with pytest.raises(ValueError, match="without algo.prioritized_replay"):
        restored.load_state_dict({key: value for key, value in state.items() if key != "priorities"})


# The same on CartPole: tests/test_resume_exact.py::test_dqn_with_prioritized_replay_split_run_equals_one_run.
def test_dqn_with_prioritized_replay_on_dict_observations_split_run_equals_one_run(rlrun, tmp_path, monkeypatch):
    # tests/ on the subprocesses' PYTHONPATH, so that env=space_envs:<id> imports.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]))
    split_equals_whole(rlrun, tmp_path, 200, "algo=dqn", "env=space_envs:DictReach-v0", "checkpoint.replay=true",
                       "algo.learning_starts=100", "algo.prioritized_replay=true", "algo.batch_size=8",
                       "algo.steps_per_iteration=100", "network.hidden_sizes=[16,16]")
