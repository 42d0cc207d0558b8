"""DQN, Double DQN and Dueling DQN: the mathematics against values worked by hand."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from helpers import CPU, compose_config, load_conf

from rlrun.algos.dqn import DQN, advantage_learning_target, linear_schedule, q_loss, td_target
from rlrun.config import ConfigError
from rlrun.envs import VecEnv, env_config
from rlrun.nets import NumpyQ, QNetwork, dueling_combine, network_config


def make_dqn(seed: int = 0, total_steps: int = 10_000, env_overrides: dict | None = None, **algo_overrides) -> DQN:
    algo = load_conf("algo", "dqn")["algo"]
    algo.pop("_target_")
    cfg = DQN.parse_config({**algo, "learning_starts": 100, "steps_per_iteration": 100, **algo_overrides})
    env_cfg = {**load_conf("env", "CartPole"), **(env_overrides or {})}
    env = VecEnv(env_config(env_cfg), cfg.num_envs, seed, "sync", cfg.gamma)
    network = network_config(load_conf("network", "mlp", hidden_sizes=[16, 16], activation="relu"))
    return DQN(cfg, env, network, CPU, seed, total_steps)


# --- targets ----------------------------------------------------------------------------------------


def test_double_dqn_target_evaluates_the_online_argmax_with_the_target_network():
    # Two transitions, two actions. The online network prefers action 0 in s'_1 and action 1 in s'_2;
    # the target network's max is at the other action in both, so the two targets differ.
    rewards = torch.tensor([1.0, 1.0])
    terminated = torch.tensor([0.0, 0.0])
    next_q_target = torch.tensor([[1.0, 5.0], [3.0, 2.0]])
    next_q_online = torch.tensor([[4.0, 0.0], [0.0, 1.0]])
    vanilla = td_target(rewards, terminated, next_q_target, 0.5)
    double = td_target(rewards, terminated, next_q_target, 0.5, next_q_online)
    torch.testing.assert_close(vanilla, torch.tensor([1 + 0.5 * 5, 1 + 0.5 * 3]))  # max_a Q_target
    torch.testing.assert_close(double, torch.tensor([1 + 0.5 * 1, 1 + 0.5 * 2]))  # Q_target(argmax Q_online)


def test_td_target_bootstraps_on_truncation_but_not_on_termination():
    # Both transitions ended an episode; only the first by termination (the second by a time limit,
    # which the replay stores as terminated = 0).
    y = td_target(torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0]), torch.tensor([[2.0, 4.0], [2.0, 4.0]]), 0.9)
    torch.testing.assert_close(y, torch.tensor([1.0, 1.0 + 0.9 * 4.0]))


def test_replay_stores_a_truncated_step_as_not_terminated_with_its_final_observation():
    algo = make_dqn(env_overrides={"max_episode_steps": 5}, learning_starts=1000)
    next(algo.learn())  # 100 steps of random actions: CartPole rarely falls within 5 steps
    replay = algo.replay
    ends = np.flatnonzero(np.arange(replay.size) % 5 == 4)
    truncated = [i for i in ends if not replay.terminated[: i + 1].any()]
    assert truncated, "expected at least one episode cut by the 5-step limit"
    i = truncated[0]
    assert replay.terminated[i] == 0
    # s' is the episode's last observation, not the first of the next episode (stored as s at i + 1).
    assert not np.array_equal(replay.next_obs[i], replay.obs[i + 1])
    np.testing.assert_array_equal(replay.next_obs[i - 1], replay.obs[i])


def test_huber_loss_is_quadratic_within_one_and_linear_beyond():
    q = torch.tensor([0.0, 0.0], requires_grad=True)
    y = torch.tensor([0.5, 3.0])
    loss = q_loss(q, y)
    torch.testing.assert_close(loss, torch.tensor((0.5 * 0.5**2 + (3.0 - 0.5)) / 2))
    loss.backward()
    # The gradient is the TD error clipped to [-1, 1] (Mnih et al.'s error clipping), over the batch.
    torch.testing.assert_close(q.grad, torch.tensor([-0.5, -1.0]) / 2)


def test_train_step_regresses_q_of_the_taken_action_on_the_double_target():
    algo = make_dqn(double=True, max_grad_norm=None, learning_rate=1e-3)
    batch = {"obs": torch.randn(8, 4), "actions": torch.randint(2, (8,)), "rewards": torch.randn(8),
             "next_obs": torch.randn(8, 4), "terminated": (torch.rand(8) < 0.3).float()}
    with torch.no_grad():
        y = td_target(batch["rewards"], batch["terminated"], algo.target_net(batch["next_obs"]), algo.cfg.gamma,
                      algo.net(batch["next_obs"]))
        q_before = algo.net(batch["obs"])
        expected = q_loss(q_before[torch.arange(8), batch["actions"]], y)
    metrics = algo.train_step(batch)
    torch.testing.assert_close(metrics["train/loss"], expected)
    # The value estimate logged for the overestimation study: max over actions, mean over states,
    # of the Q-values before this update.
    torch.testing.assert_close(metrics["train/max_q"], q_before.max(1).values.mean())
    assert all(value.dim() == 0 for value in metrics.values())


def test_advantage_learning_lowers_the_target_by_alpha_times_the_taken_actions_gap():
    # Q'(s) = [3, 1]: action 1's gap is 2, so y = 10 - 0.5 * 2 = 9; action 1 in Q'(s) = [2, 4] is greedy: y stays.
    y = advantage_learning_target(torch.tensor([10.0, 5.0]), torch.tensor([[3.0, 1.0], [2.0, 4.0]]),
                                  torch.tensor([1, 1]), 0.5)
    assert y.tolist() == [9.0, 5.0]


@pytest.mark.parametrize("alpha", [0.5, 0.9])
def test_advantage_learning_widens_the_action_gap_by_one_over_one_minus_alpha_and_keeps_the_greedy_action(alpha):
    # One state, two actions ending the episode with rewards 1 and 0.9 (Bellemare et al. 2016, Theorem 1): the
    # operator's fixed point keeps Q(a0) = 1 and moves Q(a1) to (0.9 - alpha) / (1 - alpha): the gap 0.1 / (1 - alpha).
    rewards, q = torch.tensor([1.0, 0.9]), torch.zeros(2)
    for _ in range(300):
        q = advantage_learning_target(rewards, q.expand(2, 2), torch.tensor([0, 1]), alpha)
    torch.testing.assert_close(q, torch.tensor([1.0, (0.9 - alpha) / (1 - alpha)]))
    assert q.argmax() == 0


def test_squared_error_loss_fits_the_mean_target_where_huber_fits_the_median():
    # One Q-value regressed on targets 100 (99 samples) and 1 (one failure): the squared error's gradient
    # at Q = 100 is 2 (100 - 1) / 100 = 1.98 towards the failure; Huber's is 1/100, as for any one sample.
    y = torch.tensor([100.0] * 99 + [1.0])
    q = torch.full((100,), 100.0, requires_grad=True)
    loss = q_loss(q, y, kind="mse")
    torch.testing.assert_close(loss, torch.tensor(99.0**2 / 100))
    loss.backward()
    torch.testing.assert_close(q.grad.sum(), torch.tensor(1.98))
    huber = torch.full((100,), 100.0, requires_grad=True)
    q_loss(huber, y).backward()
    torch.testing.assert_close(huber.grad.sum(), torch.tensor(0.01))
    # Minimised over one shared Q: the mean 99.01 by the squared error; by the Huber loss 99.99, the median
    # 100 moved by the failure's clipped pull of 1 against the quadratic pull of the 99 (0.99 (100 - Q)).
    for kind, optimum in (("mse", 99.01), ("huber", 100.0)):
        shared = torch.tensor(50.0, requires_grad=True)
        optimizer = torch.optim.SGD([shared], lr=0.5 if kind == "mse" else 1.0)
        for _ in range(400):
            optimizer.zero_grad()
            q_loss(shared.expand(100), y, kind=kind).backward()
            optimizer.step()
        assert shared.item() == pytest.approx(optimum, abs=0.02)


@pytest.mark.parametrize("loss", ["huber", "mse"])
@pytest.mark.parametrize("activation", ["relu", "tanh", "elu"])
@pytest.mark.parametrize("dueling", [False, True])
def test_backward_written_out_gives_autograds_gradient_and_update(dueling, activation, loss):
    # Errors within and beyond the Huber loss's unit interval, and actions repeated in the batch.
    def build():
        algo = make_dqn(dueling=dueling, double=True, learning_rate=1e-2, max_grad_norm=0.5, loss=loss)
        network = network_config(load_conf("network", "mlp", hidden_sizes=[16, 8], activation=activation))
        return DQN(algo.cfg, algo.env, network, CPU, 0, 10_000)

    by_hand, by_autograd = build(), build()
    assert by_hand.manual_backward
    by_autograd.manual_backward = False
    generator = torch.Generator().manual_seed(0)
    batch = {"obs": torch.randn(32, 4, generator=generator), "actions": torch.randint(2, (32,), generator=generator),
             "rewards": 3 * torch.randn(32, generator=generator), "next_obs": torch.randn(32, 4, generator=generator),
             "terminated": (torch.rand(32, generator=generator) < 0.3).float()}
    for _ in range(3):
        hand, auto = by_hand.train_step(batch), by_autograd.train_step(batch)
        torch.testing.assert_close(by_hand.flat_params.grad, by_autograd.flat_params.grad, rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(by_hand.flat_params, by_autograd.flat_params, rtol=1e-5, atol=1e-7)
        for key in auto:
            torch.testing.assert_close(hand[key], auto[key])
    assert not torch.equal(by_hand.flat_params, build().flat_params)  # it learned


def test_reward_clipping_learns_from_the_sign_of_the_reward():
    algo = make_dqn(clip_reward=True, learning_rate=1e-3)
    batch = {"obs": torch.zeros(2, 4), "actions": torch.zeros(2, dtype=torch.int64),
             "rewards": torch.tensor([7.0, -0.2]), "next_obs": torch.zeros(2, 4), "terminated": torch.ones(2)}
    with torch.no_grad():
        q = algo.net(batch["obs"])[:, 0]
    loss = algo.train_step(batch)["train/loss"]
    torch.testing.assert_close(loss, q_loss(q, torch.tensor([1.0, -1.0])))


# --- networks ---------------------------------------------------------------------------------------


def test_dueling_combination_is_value_plus_advantage_minus_its_mean():
    value = torch.tensor([[1.0], [-2.0]])
    advantages = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 6.0]])
    torch.testing.assert_close(dueling_combine(value, advantages), torch.tensor([[0.0, 1.0, 2.0], [-4.0, -4.0, 2.0]]))


@pytest.mark.parametrize("dueling", [False, True])
def test_numpy_acting_copy_computes_the_q_network_and_follows_its_updates(dueling):
    algo = make_dqn(dueling=dueling)
    obs = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    with torch.no_grad():
        np.testing.assert_allclose(algo.numpy_q(obs), algo.net(torch.from_numpy(obs)).numpy(), rtol=1e-5, atol=1e-6)
        algo.flat_params.add_(0.1)  # an in-place update, as Adam makes: the numpy views see it
        np.testing.assert_allclose(algo.numpy_q(obs), algo.net(torch.from_numpy(obs)).numpy(), rtol=1e-5, atol=1e-6)
    net = algo.net
    if dueling:
        features = net.torso(torch.from_numpy(obs))
        expected = dueling_combine(net.value_head(features), net.advantage_head(features))
        torch.testing.assert_close(net(torch.from_numpy(obs)), expected)


def test_q_network_has_one_output_per_action():
    import gymnasium as gym

    cfg = network_config(load_conf("network", "mlp"))
    net = QNetwork(gym.spaces.Box(-1, 1, (3,)), gym.spaces.Discrete(5), cfg, dueling=True)
    assert net(torch.zeros(7, 3)).shape == (7, 5)
    assert isinstance(NumpyQ(net)(np.zeros((7, 3), np.float32)), np.ndarray)


# --- exploration and target network ----------------------------------------------------------------------


def test_epsilon_falls_linearly_over_the_exploration_fraction_then_stays():
    assert linear_schedule(1.0, 0.05, 1000, 0) == 1.0
    assert linear_schedule(1.0, 0.05, 1000, 500) == pytest.approx(0.525)
    assert linear_schedule(1.0, 0.05, 1000, 1000) == pytest.approx(0.05)
    assert linear_schedule(1.0, 0.05, 1000, 5000) == pytest.approx(0.05)
    algo = make_dqn(total_steps=10_000, exploration_fraction=0.2, exploration_initial_eps=1.0,
                    exploration_final_eps=0.1)
    algo.global_step = 1000  # half of 0.2 x 10,000
    assert algo.epsilon() == pytest.approx(0.55)


def test_epsilon_greedy_is_greedy_at_zero_and_uniform_at_one():
    algo = make_dqn()
    obs = np.zeros((4000, 4), np.float32)
    greedy = algo.q_values(obs[:1]).argmax(1)[0]
    assert (algo.epsilon_greedy(obs, 0.0, algo.generator) == greedy).all()
    counts = np.bincount(algo.epsilon_greedy(obs, 1.0, algo.generator), minlength=2)
    assert abs(counts[0] - 2000) < 150  # binomial std ~32
    half = algo.epsilon_greedy(obs, 0.5, algo.generator)
    assert abs((half == greedy).mean() - 0.75) < 0.04  # greedy half of the time, plus half the random draws


def test_target_network_is_copied_every_c_steps_or_polyak_averaged():
    algo = make_dqn(target_update_interval=100)
    batch = {"obs": torch.randn(4, 4), "actions": torch.zeros(4, dtype=torch.int64), "rewards": torch.ones(4),
             "next_obs": torch.randn(4, 4), "terminated": torch.zeros(4)}
    algo.global_step = 100
    algo.train_step(batch)  # copies at step 100, then updates the online network
    assert algo.target_updated_at == 100
    before = algo.target_params.clone()
    assert not torch.equal(before, algo.flat_params.detach())
    algo.global_step = 150
    algo.train_step(batch)
    assert torch.equal(algo.target_params, before)  # 50 steps later: unchanged
    algo.global_step = 200
    online = algo.flat_params.detach().clone()
    algo.update_target()
    assert torch.equal(algo.target_params, online)

    soft = make_dqn(tau=0.25)
    target, online = soft.target_params.clone(), soft.flat_params.detach() + 1.0
    soft.flat_params.data.copy_(online)
    soft.update_target()
    torch.testing.assert_close(soft.target_params, 0.25 * online + 0.75 * target)


# --- configuration and checkpoints ------------------------------------------------------------------------


def test_state_dict_round_trips_through_a_weights_only_load():
    algo = make_dqn(dueling=True)
    for metrics in algo.learn():
        if algo.gradient_updates > 0:
            break
    buffer = io.BytesIO()
    torch.save(algo.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    other = make_dqn(dueling=True, seed=1)
    other.load_state_dict(state)
    assert torch.equal(other.flat_params, algo.flat_params) and torch.equal(other.target_params, algo.target_params)
    assert other.replay.size == algo.replay.size and other.global_step == algo.global_step
    assert torch.equal(other.generator.get_state(), algo.generator.get_state())
    obs = np.zeros((1, 4), np.float32)
    np.testing.assert_array_equal(other.q_values(obs), algo.q_values(obs))


def test_a_dqn_restored_from_its_state_dict_evaluates_with_the_same_epsilon_draws():
    """Issue 7, item 7: the evaluation generator (eval_epsilon's draws) is in the checkpoint, so a
    resumed run takes the same evaluation actions as the run that wrote it."""
    algo = make_dqn(eval_epsilon=0.5)
    for metrics in algo.learn():
        if algo.gradient_updates > 0:
            break
    obs = np.random.default_rng(0).normal(size=(64, 4)).astype(np.float32)
    algo.act(obs)  # an evaluation before the checkpoint moves the evaluation stream
    buffer = io.BytesIO()
    torch.save(algo.state_dict(), buffer)
    buffer.seek(0)
    restored = make_dqn(eval_epsilon=0.5, seed=1)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    original = [algo.act(obs) for _ in range(5)]
    resumed = [restored.act(obs) for _ in range(5)]
    assert 0 < np.mean([(a != algo.q_values(obs).argmax(1)).mean() for a in original]) < 0.5  # some random
    for a, b in zip(original, resumed, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_replay_larger_than_memory_is_refused_before_allocating():
    with pytest.raises(ConfigError, match="algo.buffer_size"):
        make_dqn(buffer_size=10**13)


def test_replay_draws_a_phase_of_minibatches_at_once_as_it_draws_them_one_by_one():
    algo = make_dqn()
    obs = algo.env.reset()
    for _ in range(300):
        actions = algo.random_actions()
        next_obs, reward, terminated, truncated, _ = algo.env.step(actions)
        algo.replay.add(obs, actions, reward, next_obs, terminated)
        obs = next_obs
    one_by_one, at_once = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    expected = [algo.replay.sample(32, one_by_one, CPU.device) for _ in range(7)]
    for batch, reference in zip(algo.replay.sample_many(7, 32, at_once, CPU.device), expected, strict=True):
        for key, value in reference.items():
            assert torch.equal(batch[key], value), key
    assert torch.equal(at_once.get_state(), one_by_one.get_state())  # the run's stream continues alike


def test_dqn_learning_phases_drawn_at_once_train_as_drawn_one_by_one():
    """Many gradient steps every 256 env steps (bench_dqn.py's 128; 16 here): drawing a phase's minibatches
    together changes neither the updates nor the generator's stream (epsilon-greedy acting follows)."""
    runs = []
    for at_once in (True, False):
        algo = make_dqn(learning_starts=256, train_frequency=256, gradient_steps=16, steps_per_iteration=256)
        algo.samples_phase_at_once = at_once
        sizes, sample = [], algo.replay.sample
        algo.replay.sample = lambda batch_size, *args, sizes=sizes, sample=sample: sizes.append(batch_size) or sample(
            batch_size, *args)  # records the sizes drawn
        learning = algo.learn()
        metrics = [next(learning) for _ in range(4)]
        runs.append((algo, metrics, sizes))
    (fast, fast_metrics, fast_sizes), (slow, slow_metrics, slow_sizes) = runs
    assert fast_sizes == [16 * 32] * 4 and slow_sizes == [32] * 64  # batch_size 32 (conf/algo/dqn.yaml)
    assert fast.gradient_updates == slow.gradient_updates == 16 * 4
    torch.testing.assert_close(fast.flat_params, slow.flat_params, rtol=0, atol=0)
    torch.testing.assert_close(fast.target_params, slow.target_params, rtol=0, atol=0)
    assert torch.equal(fast.generator.get_state(), slow.generator.get_state())
    assert fast_metrics == slow_metrics


# --- issue 16: the learning rate's schedule and the Q network's initialisation, as SB3's ------------------


def test_annealed_learning_rate_falls_linearly_to_zero_at_total_steps_and_drives_adam():
    # learning_rate 1e-3 over total_steps 10,000: at step 2,500 three quarters remain, 7.5e-4; at the
    # end and beyond, 0. Without anneal_lr, the rate stays 1e-3.
    algo = make_dqn(total_steps=10_000, learning_rate=1e-3, anneal_lr=True, max_grad_norm=None)
    batch = {"obs": torch.randn(16, 4), "actions": torch.randint(2, (16,)), "rewards": torch.randn(16),
             "next_obs": torch.randn(16, 4), "terminated": torch.zeros(16)}
    algo.global_step = 2500
    assert algo.learning_rate() == pytest.approx(7.5e-4)
    before = algo.flat_params.detach().clone()
    algo.train_step(batch)
    assert algo.optimizer.param_groups[0]["lr"] == pytest.approx(7.5e-4)
    # Adam's first step is lr * m_hat / (sqrt(v_hat) + eps) = lr * g / (|g| + eps): each parameter with a
    # gradient moves by the rate, 7.5e-4 (those whose gradient is 0, e.g. behind a dead ReLU, stay).
    moved = (algo.flat_params.detach() - before).abs()
    assert moved.max().item() == pytest.approx(7.5e-4, rel=1e-4)
    algo.global_step = 10_000
    assert algo.learning_rate() == 0.0
    algo.global_step = 12_000
    assert algo.learning_rate() == 0.0
    constant = make_dqn(total_steps=10_000, learning_rate=1e-3, anneal_lr=False)
    constant.global_step = 2500
    assert constant.learning_rate() == 1e-3


def test_dqn_keeps_torchs_default_layer_init_as_sb3s_q_network():
    # conf/algo/dqn.yaml sets network.ortho_init=false: nn.Linear's own init, weights and biases uniform
    # on +-1/sqrt(fan_in). CartPole's first layer (fan_in 4): +-0.5, std 0.5/sqrt(3) = 0.289 (orthogonal
    # init with gain sqrt(2) would give n x 4 weights of std sqrt(2/n), 0.088 for n = 256, and zero biases).
    cfg = compose_config("algo=dqn", "env=CartPole")
    assert cfg.network.ortho_init is False
    algo = make_dqn()
    net = QNetwork(algo.env.observation_space, algo.env.action_space, network_config(cfg.network), dueling=False)
    first = net.torso[1]
    assert first.weight.shape[1] == 4
    assert first.weight.abs().max() <= 0.5 and first.bias.abs().max() <= 0.5
    assert first.weight.std().item() == pytest.approx(0.5 / np.sqrt(3), rel=0.1)
    assert (first.bias != 0).all()


def test_target_moves_as_sb3s_does_once_per_multiple_of_c_env_steps_between_phases():
    # SB3 updates the target after every env step that is a multiple of C = 10. Between a learning phase
    # at step 1,024 and the next at 1,280 that is 1,030, 1,040, ..., 1,280: 26 Polyak steps of tau = 0.25
    # towards the same online theta (it does not change between phases), i.e. theta^- <- theta +
    # 0.75^26 (theta^- - theta). With tau = 1, one copy.
    algo = make_dqn(tau=0.25, target_update_interval=10)
    batch = {"obs": torch.randn(8, 4), "actions": torch.randint(2, (8,)), "rewards": torch.ones(8),
             "next_obs": torch.randn(8, 4), "terminated": torch.zeros(8)}
    algo.global_step = 1024
    algo.train_step(batch)
    assert algo.target_updated_at == 1024
    algo.global_step = 1280
    assert algo.target_updates_due() == 26
    target, online = algo.target_params.clone(), algo.flat_params.detach().clone()
    algo.train_step(batch)
    torch.testing.assert_close(algo.target_params, online + 0.75**26 * (target - online))
    assert algo.target_updates_due() == 0  # the phase's later updates move nothing
    algo.global_step = 1289
    assert algo.target_updates_due() == 0  # 1,290 not reached
    algo.global_step = 1290
    assert algo.target_updates_due() == 1
