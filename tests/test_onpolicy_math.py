"""The mathematics of REINFORCE, A2C/A3C and TRPO against values worked by hand or built explicitly."""

from __future__ import annotations

import dataclasses
import os
import signal
import time

import numpy as np
import pytest
import torch
from torch import nn

from helpers import CPU, load_conf
from rlrun.algos.a2c import A2C, actor_critic_loss
from rlrun.algos.a3c import A3C
from rlrun.algos.onpolicy import collect_rollout
from rlrun.algos.reinforce import REINFORCE, reinforce_loss
from rlrun.algos.trpo import TRPO, backtracking_line_search, conjugate_gradient, fisher_vector_product
from rlrun.data import RolloutBuffer, compute_gae, discounted_returns, nstep_returns
from rlrun.envs import VecEnv, env_config
from rlrun.nets import network_config
from rlrun.nets.distributions import Categorical, DiagGaussian

# --- REINFORCE ------------------------------------------------------------------------------------


def test_reinforce_loss_gradient_is_the_hand_derived_log_softmax_gradient():
    # d/dz log softmax(z)[a] = onehot(a) - softmax(z), so the loss -1/M sum_t G_t log pi(a_t|s_t) has
    # gradient -G_t / M (onehot(a_t) - softmax(z_t)) with respect to the logits z_t.
    logits = torch.tensor([[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [0.3, 0.3, 0.3]], dtype=torch.float64,
                          requires_grad=True)
    actions = torch.tensor([0, 2, 1])
    returns = torch.tensor([2.0, -1.0, 0.5], dtype=torch.float64)
    num_episodes = 2
    reinforce_loss(Categorical(3).log_prob(logits, actions), returns, num_episodes).backward()
    probs = torch.softmax(logits.detach(), -1)
    onehot = torch.nn.functional.one_hot(actions, 3).double()
    expected = -(returns[:, None] / num_episodes) * (onehot - probs)
    torch.testing.assert_close(logits.grad, expected)


def test_reinforce_loss_gradient_for_a_gaussian_policy_is_the_score_times_the_return():
    # d/dmu log N(a; mu, sigma) = (a - mu) / sigma^2.
    mean = torch.tensor([[0.5], [-1.0]], dtype=torch.float64, requires_grad=True)
    log_std = torch.tensor([[0.2], [-0.3]], dtype=torch.float64)
    actions = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    returns = torch.tensor([3.0, -2.0], dtype=torch.float64)
    reinforce_loss(DiagGaussian(1).log_prob(torch.cat([mean, log_std], -1), actions), returns, 1).backward()
    expected = -returns[:, None] * (actions - mean.detach()) / torch.exp(2 * log_std)
    torch.testing.assert_close(mean.grad, expected)


def test_reward_to_go_is_the_discounted_sum_of_the_rewards_that_follow():
    np.testing.assert_allclose(discounted_returns(np.array([1.0, 2.0, 3.0]), 0.5), [1 + 0.5 * 2 + 0.25 * 3, 2 + 1.5, 3])


def test_reinforce_with_several_envs_updates_only_on_episodes_begun_under_the_current_policy():
    algo = make_algo(REINFORCE, "reinforce", "CartPole", num_envs=4, episodes_per_update=2)
    step_calls = 0
    episode_starts: dict[bytes, int] = {}  # reset observation -> the env step call that returned it
    updates: list[tuple[int, list]] = []  # (env step calls before the update, its episodes)
    env_reset, env_step, update = algo.env.reset, algo.env.step, algo.update

    def reset(*args, **kwargs):
        obs = env_reset(*args, **kwargs)
        episode_starts.update((row.tobytes(), 0) for row in obs)
        return obs

    def step(action):
        nonlocal step_calls
        step_calls += 1
        obs, reward, terminated, truncated, final_obs = env_step(action)
        # SAME_STEP autoreset: the step that ends an episode returns the next episode's first observation.
        episode_starts.update((obs[i].tobytes(), step_calls) for i in np.flatnonzero(terminated | truncated))
        return obs, reward, terminated, truncated, final_obs

    def spy_update(episodes):
        updates.append((step_calls, list(episodes)))
        return update(episodes)

    algo.env.reset, algo.env.step, algo.update = reset, step, spy_update
    learning = algo.learn()
    for _ in range(12):
        next(learning)
    previous_update = 0
    for update_step, episodes in updates:
        for episode in episodes:
            start = episode_starts.get(episode.obs[0].tobytes())
            # The episode's first observation is a reset observation, reached after the previous update.
            assert start is not None and start >= previous_update, (start, previous_update, len(episode.rewards))
        previous_update = update_step
    assert len(updates) == 12 and all(len(episodes) >= 2 for _, episodes in updates)


# --- n-step returns (A2C, A3C) ---------------------------------------------------------------------


def test_nstep_returns_stop_at_termination_and_bootstrap_on_truncation_and_at_the_rollout_end():
    # One env, T = 4, gamma = 0.5: terminated after step 1, truncated after step 2 (V(last obs) = 10),
    # and V(s_4) = 100 after the rollout.
    buf = RolloutBuffer(4, 1, (1,), (), np.int64, 2)
    buf.rewards[:, 0] = [1.0, 2.0, 3.0, 4.0]
    buf.values[:, 0] = [0.5, 0.25, 7.0, 3.0]
    buf.terminated[:, 0] = [0, 1, 0, 0]
    buf.ended[:, 0] = [0, 1, 1, 0]
    buf.next_values[2, 0] = 10.0
    buf.finish_nstep(np.array([100.0], np.float32), gamma=0.5)
    expected = [1 + 0.5 * 2, 2, 3 + 0.5 * 10, 4 + 0.5 * 100]
    np.testing.assert_allclose(buf.returns[:, 0], expected)
    np.testing.assert_allclose(buf.advantages[:, 0], np.array(expected) - buf.values[:, 0])


def test_nstep_returns_are_gae_with_lambda_one_plus_the_value():
    rng = np.random.default_rng(0)
    shape = (7, 3)
    rewards, values, next_values = (rng.normal(size=shape).astype(np.float32) for _ in range(3))
    terminated = (rng.random(shape) < 0.2).astype(np.float32)
    ended = np.maximum(terminated, (rng.random(shape) < 0.2).astype(np.float32))
    # As RolloutBuffer.bootstrap fills them: where the episode went on, V of the next stored state.
    next_values[:-1] = np.where(ended[:-1] > 0, next_values[:-1], values[1:])
    returns = nstep_returns(rewards, next_values, terminated, ended, 0.9)
    gae = compute_gae(rewards, values, next_values, terminated, ended, 0.9, 1.0)
    np.testing.assert_allclose(returns, gae + values, rtol=1e-5, atol=1e-5)


def test_a2c_value_loss_is_vf_coef_times_the_mean_squared_error_as_in_sb3():
    # SB3 / OpenAI baselines: loss = policy_loss - ent_coef * entropy + vf_coef * mse(R, V), no 1/2.
    algo = make_algo(A2C, "a2c", "CartPole", num_steps=8)
    algo.next_obs = algo.env.reset()
    algo.next_obs = collect_rollout(algo.env, algo.buffer, algo.acting_net, algo.generator, algo.next_obs)
    algo.buffer.finish_nstep(algo.acting_net.value(algo.next_obs), 0.99)
    batch = algo.buffer.flat_tensors(torch.device("cpu"))
    loss, stats = actor_critic_loss(algo.net, batch, ent_coef=0.01, vf_coef=0.5, norm_adv=False)
    with torch.no_grad():
        logits, values = algo.net.actor(batch["obs"]), algo.net.critic(batch["obs"])[:, 0]
        log_probs = torch.log_softmax(logits, -1).gather(1, batch["actions"][:, None])[:, 0]
        entropy = -(torch.softmax(logits, -1) * torch.log_softmax(logits, -1)).sum(-1).mean()
        mse = ((batch["returns"] - values) ** 2).mean()
        expected = -(batch["advantages"] * log_probs).mean() - 0.01 * entropy + 0.5 * mse
    torch.testing.assert_close(stats[1], mse)
    torch.testing.assert_close(loss.detach(), expected)



@pytest.mark.parametrize("env_name, optimizer",
                         [("CartPole", "rmsprop"), ("Pendulum", "rmsprop"), ("Pendulum", "adam")])
def test_a2c_update_equals_a_plain_modules_and_torch_optim_update(env_name, optimizer):
    import copy

    algo = make_algo(A2C, "a2c", env_name, num_envs=2, num_steps=8, optimizer=optimizer, ent_coef=0.01)
    reference = copy.deepcopy(algo.net)  # plain modules, each parameter its own storage
    cfg = algo.cfg
    if optimizer == "rmsprop":
        reference_opt = torch.optim.RMSprop(reference.parameters(), lr=cfg.learning_rate, alpha=cfg.rmsprop_alpha,
                                            eps=cfg.optimizer_eps, foreach=False)
    else:
        reference_opt = torch.optim.Adam(reference.parameters(), lr=cfg.learning_rate, eps=cfg.optimizer_eps,
                                         foreach=False)
    algo.next_obs = algo.env.reset()
    for _ in range(3):
        algo.next_obs = collect_rollout(algo.env, algo.buffer, algo.acting_net, algo.generator, algo.next_obs)
        algo.global_step += cfg.num_envs * cfg.num_steps
        algo.update(algo.acting_net.value(algo.next_obs))  # fills returns and advantages, then steps
        batch = algo.buffer.flat_tensors(torch.device("cpu"))
        loss, _ = actor_critic_loss(reference, batch, cfg.ent_coef, cfg.vf_coef, cfg.norm_adv)
        reference_opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), cfg.max_grad_norm)
        reference_opt.step()
        for (name, fast), slow in zip(algo.net.named_parameters(), reference.parameters(), strict=True):
            torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-5, msg=name)

def test_a2c_learning_rate_anneals_from_the_initial_rate_at_the_first_update():
    algo = make_algo(A2C, "a2c", "CartPole", num_steps=100, anneal_lr=True, log_interval=1)
    algo.total_steps = 400
    rates = [m["train/learning_rate"] for m, _ in zip(algo.learn(), range(4))]
    lr0 = algo.cfg.learning_rate
    assert rates == pytest.approx([lr0, lr0 * 0.75, lr0 * 0.5, lr0 * 0.25])


# --- TRPO ------------------------------------------------------------------------------------------


def test_conjugate_gradient_solves_a_known_spd_system():
    generator = torch.Generator().manual_seed(0)
    m = torch.randn(6, 6, generator=generator, dtype=torch.float64)
    a = m @ m.T + 0.5 * torch.eye(6, dtype=torch.float64)
    b = torch.randn(6, generator=generator, dtype=torch.float64)
    x = conjugate_gradient(lambda v: a @ v, b, iters=6, residual_tol=1e-20)
    torch.testing.assert_close(x, torch.linalg.solve(a, b), rtol=1e-6, atol=1e-8)
    # A 2x2 system worked by hand: [[4, 1], [1, 3]] x = [1, 2] has x = [1/11, 7/11].
    x = conjugate_gradient(lambda v: torch.tensor([[4.0, 1.0], [1.0, 3.0]], dtype=torch.float64) @ v,
                           torch.tensor([1.0, 2.0], dtype=torch.float64), iters=2)
    torch.testing.assert_close(x, torch.tensor([1 / 11, 7 / 11], dtype=torch.float64))


def test_fisher_vector_product_equals_the_explicit_fisher_matrix_times_the_vector():
    torch.manual_seed(0)
    policy = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 3)).double()
    params = list(policy.parameters())
    obs = torch.randn(5, 3, dtype=torch.float64)
    dist = Categorical(3)
    # F = E_s sum_a pi(a|s) grad log pi(a|s) grad log pi(a|s)^T, built one (s, a) at a time.
    size = sum(p.numel() for p in params)
    fisher = torch.zeros(size, size, dtype=torch.float64)
    for s in range(len(obs)):
        for a in range(3):
            log_prob = torch.log_softmax(policy(obs[s]), -1)[a]
            grad = torch.cat([g.reshape(-1) for g in torch.autograd.grad(log_prob, params)])
            fisher += log_prob.exp().detach() * torch.outer(grad, grad) / len(obs)
    v = torch.randn(size, dtype=torch.float64)
    fvp = fisher_vector_product(dist, policy, obs, params, damping=0.0)
    torch.testing.assert_close(fvp(v), fisher @ v)
    damped = fisher_vector_product(dist, policy, obs, params, damping=0.1)
    torch.testing.assert_close(damped(v), fisher @ v + 0.1 * v)


def test_line_search_rejects_a_step_that_violates_the_kl_bound_and_takes_a_shorter_one():
    tried = []

    def evaluate(fraction):  # the surrogate improves with the step, KL grows as its square
        tried.append(fraction)
        return fraction, 0.02 * fraction**2

    fraction = backtracking_line_search(evaluate, old_objective=0.0, max_kl=0.01, shrink=0.5, max_steps=10)
    assert tried == [1.0, 0.5] and fraction == 0.5


def test_line_search_keeps_the_old_policy_when_no_step_both_improves_and_satisfies_the_bound():
    assert backtracking_line_search(lambda f: (1.0, 1.0), 0.0, max_kl=0.01, shrink=0.5, max_steps=5) is None
    assert backtracking_line_search(lambda f: (-f, 0.0), 0.0, max_kl=0.01, shrink=0.5, max_steps=5) is None


def make_algo(cls, algo_name: str, env_name: str, hardware=CPU, **overrides):
    algo_cfg = cls.parse_config({k: v for k, v in load_conf("algo", algo_name, **overrides).items() if k != "_target_"})
    env = VecEnv(env_config(load_conf("env", env_name)), getattr(algo_cfg, "num_envs", 1), 0, "sync", algo_cfg.gamma)
    return cls(algo_cfg, env, network_config(load_conf("network", "mlp")), hardware, 0, 100_000)


@pytest.mark.parametrize("env_name", ["CartPole", "Pendulum"])
def test_trpo_policy_step_stays_within_the_kl_bound(env_name):
    trpo = make_algo(TRPO, "trpo", env_name, num_steps=256, max_kl=0.001)
    before = trpo.get_policy()
    metrics = next(trpo.learn())
    assert metrics["train/kl"] <= 0.001
    assert metrics["train/line_search_success"] == 1.0 and metrics["train/surrogate_improvement"] > 0
    assert not torch.equal(before, trpo.get_policy())


# --- A3C -------------------------------------------------------------------------------------------


def a3c(workers: int = 2) -> A3C:
    return make_algo(A3C, "a3c", "CartPole", dataclasses.replace(CPU, workers=workers), report_every=500)


def test_a3c_workers_run_in_separate_processes_and_update_the_shared_model():
    algo = a3c(workers=2)
    before = algo.flat_params.detach().clone()
    learning = algo.learn()
    metrics = next(learning)
    pids = [p.pid for p in algo.workers]
    assert len(set(pids)) == 2 and os.getpid() not in pids and all(p.is_alive() for p in algo.workers)
    assert metrics["global_step"] >= 500
    # The workers' optimiser steps changed the model this process holds, and the shared statistics.
    assert not torch.equal(before, algo.flat_params.detach())
    assert algo.optimizer_state["step"].item() > 0 and algo.optimizer_state["square_avg"].abs().sum() > 0
    # act() and state_dict() from the main process while the workers run.
    obs = np.zeros((1, 4), np.float32)
    assert algo.act(obs).shape == (1,)
    state = algo.state_dict()
    torch.save(state, "/dev/null")
    workers = algo.workers
    learning.close()
    assert all(not p.is_alive() for p in workers)


def test_a3c_reports_a_failing_worker_and_stops_without_hanging():
    algo = a3c(workers=2)
    algo.env.cfg = dataclasses.replace(algo.env.cfg, id="NoSuchEnv-v0")  # the workers cannot build it
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="A3C worker . failed: ConfigError: env.id 'NoSuchEnv-v0'"):
        for _ in algo.learn():
            pass
    assert time.monotonic() - start < 60


def test_a3c_reports_a_killed_worker_and_stops_the_others():
    algo = a3c(workers=2)
    learning = algo.learn()
    next(learning)
    victim, other = algo.workers
    os.kill(victim.pid, signal.SIGKILL)
    with pytest.raises(RuntimeError, match="died with exit code"):
        for _ in learning:
            pass
    assert not other.is_alive()
