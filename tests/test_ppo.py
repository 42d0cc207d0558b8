"""PPO's fast update path against a straightforward reference, and its behaviour as a generator."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from helpers import assert_merged_matches_autograd, make_ppo
from torch.distributions import Categorical, Normal

from rlrun.algos.ppo import adapt_learning_rate
from rlrun.config import ConfigError


def reference_update(algo, net, generator_state, lr: float) -> None:
    """One PPO update written the plain CleanRL way: per-tensor Adam and clip_grad_norm_,
    torch.distributions, a fresh index gather per minibatch."""
    cfg = algo.cfg
    optimizer = torch.optim.Adam(net.parameters(), lr=lr, eps=cfg.adam_eps, foreach=False)
    generator = torch.Generator()
    generator.set_state(generator_state)
    b = algo.buffer.flat_tensors(torch.device("cpu"))
    batch_size = b["obs"].shape[0]
    minibatch_size = batch_size // cfg.num_minibatches
    for _ in range(cfg.update_epochs):
        order = torch.randperm(batch_size, generator=generator)
        for start in range(0, batch_size, minibatch_size):
            idx = order[start : start + minibatch_size]
            out = net.actor(b["obs"][idx])
            dist = Normal(out, net.log_std.exp()) if net.log_std is not None else Categorical(logits=out)
            log_prob = dist.log_prob(b["actions"][idx])
            entropy = dist.entropy()
            if net.log_std is not None:
                log_prob, entropy = log_prob.sum(-1), entropy.sum(-1)
            ratio = (log_prob - b["log_probs"][idx]).exp()
            adv = b["advantages"][idx]
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            pg_loss = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()
            value = net.critic(b["obs"][idx]).view(-1)
            old_value, returns = b["values"][idx], b["returns"][idx]
            clipped = old_value + torch.clamp(value - old_value, -cfg.clip_coef, cfg.clip_coef)
            v_loss = 0.5 * torch.max((value - returns) ** 2, (clipped - returns) ** 2).mean()
            loss = pg_loss - cfg.ent_coef * entropy.mean() + cfg.vf_coef * v_loss
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.max_grad_norm)
            optimizer.step()


@pytest.mark.parametrize("env_name", ["CartPole", "Pendulum"])
def test_fast_update_matches_reference_update(env_name):
    algo = make_ppo(env_name, num_envs=2, num_steps=64, num_minibatches=4, update_epochs=3, ent_coef=0.01)
    algo.rollouts.start()
    algo.collect_rollout()
    reference_net = copy.deepcopy(algo.net)  # a plain module: deepcopy gives each parameter its own storage
    initial_weight = algo.net.critic[0].weight.detach().clone()
    generator_state = algo.generator.get_state()
    lr = algo.cfg.learning_rate  # the first update runs at the initial rate
    algo.update()
    reference_update(algo, reference_net, generator_state, lr)
    for (name, fast), reference in zip(algo.net.named_parameters(), reference_net.parameters(), strict=True):
        torch.testing.assert_close(fast, reference, rtol=1e-4, atol=1e-5, msg=name)
    assert not torch.equal(algo.net.critic[0].weight, initial_weight)  # the update did move the weights


def test_learn_yields_step_count_episodes_and_finite_losses():
    algo = make_ppo("CartPole", num_envs=2, num_steps=128, num_minibatches=2, update_epochs=2)
    iterations = algo.learn()
    first, second = next(iterations), next(iterations)
    assert (first["global_step"], second["global_step"]) == (256, 512)
    assert first["episodic_returns"] and all(r > 0 for r in first["episodic_returns"])
    assert all(np.isfinite(first[k]) for k in ("train/policy_loss", "train/value_loss", "train/entropy"))


def test_kl_penalty_objective_adapts_beta_after_each_update():
    algo = make_ppo("Pendulum", objective="kl_penalty", num_envs=1, num_steps=256, num_minibatches=4,
                    kl_target=1e-9, kl_beta=1.0)
    metrics = next(algo.learn())
    assert metrics["train/kl"] > 1.5e-9 and metrics["train/kl_beta"] == 1.0
    assert algo.kl_beta == 2.0  # d far above 1.5 d_targ: beta doubles


def test_fixed_kl_penalty_keeps_beta_whatever_the_kl():
    # The PPO paper's fixed-KL rows (Table 1: beta = 0.3 ... 10) hold beta constant.
    algo = make_ppo("Pendulum", objective="kl_penalty", num_envs=1, num_steps=256, num_minibatches=4,
                    kl_target=1e-9, kl_beta=3.0, kl_adaptive=False)
    iterations = algo.learn()
    first, second = next(iterations), next(iterations)
    assert first["train/kl"] > 1.5e-9 and second["train/kl"] > 1.5e-9
    assert first["train/kl_beta"] == second["train/kl_beta"] == algo.kl_beta == 3.0


def test_learning_rate_anneals_linearly_from_the_initial_rate_at_the_first_update():
    # CleanRL: frac = 1 - (iteration - 1) / num_iterations, so the first of 4 updates runs at lr0 and
    # the last at lr0 / 4, not at 0.
    algo = make_ppo("CartPole", num_envs=1, num_steps=100, num_minibatches=1, update_epochs=1)
    algo.total_steps = 400
    rates = [m["train/learning_rate"] for m, _ in zip(algo.learn(), range(4))]
    lr0 = algo.cfg.learning_rate
    assert rates == pytest.approx([lr0, lr0 * 0.75, lr0 * 0.5, lr0 * 0.25])


def test_adaptive_learning_rate_follows_rl_games_rule_by_hand():
    # kl = 0.01: above 2 kl = 0.02 the rate falls by 1.5, below kl / 2 = 0.005 it rises by 1.5, between it stays;
    # never below 1e-6 nor above 1e-2.
    cases = [(3e-4, 0.03, 2e-4), (3e-4, 0.001, 4.5e-4), (3e-4, 0.01, 3e-4), (3e-4, 0.02, 3e-4), (3e-4, 0.005, 3e-4),
             (1.2e-6, 0.5, 1e-6), (9e-3, 0.0, 1e-2)]
    for lr, kl, expected in cases:
        adapted = adapt_learning_rate(torch.tensor(lr, dtype=torch.float64), torch.tensor(kl, dtype=torch.float64), 0.01)
        assert adapted.item() == pytest.approx(expected, rel=1e-12), (lr, kl)


def test_adaptive_learning_rate_moves_after_each_minibatch_with_that_minibatchs_kl():
    settings = dict(num_envs=2, num_steps=64, num_minibatches=4, update_epochs=2, anneal_lr=False,
                    learning_rate=1e-3, adaptive_lr_kl=0.01)
    algo = make_ppo("Pendulum", **settings)
    algo.rollouts.start()
    algo.collect_rollout()
    rates, kls = [], []
    loss = algo.loss

    def spy(mb):  # the rate each minibatch's step runs at, and that minibatch's approx KL
        rates.append(float(algo.optimizer.param_groups[0]["lr"]))
        out = loss(mb)
        kls.append(out[1][3].item())
        return out

    algo.loss = spy
    metrics = algo.update()
    assert kls[0] == 0.0 and rates[0] == pytest.approx(1e-3)  # the first minibatch: pi = pi_old, KL exactly 0
    expected = torch.tensor(1e-3)
    for rate, kl in zip(rates, kls, strict=True):
        assert rate == expected.item()
        expected = adapt_learning_rate(expected, torch.tensor(kl), 0.01)
    assert rates[1] == pytest.approx(1.5e-3)  # KL 0 < 0.005: up by 1.5
    assert metrics["train/learning_rate"] == expected.item()
    # A checkpoint carries the adapted rate: a restored learner goes on at it.
    clone = make_ppo("Pendulum", seed=1, **settings)
    clone.load_state_dict(algo.state_dict())
    assert float(clone.optimizer.param_groups[0]["lr"]) == expected.item()


def test_adaptive_learning_rate_refuses_annealing_in_one_line():
    with pytest.raises(ConfigError, match="anneal_lr=false"):
        make_ppo("CartPole", adaptive_lr_kl=0.01, anneal_lr=True)


def epoch_kls(algo) -> tuple[list[float], dict]:
    """Run one update of `algo` (its rollout collected) and return each epoch's mean approx KL, read
    from the minibatch statistics its loss returns."""
    stats = []
    loss = algo.loss

    def spy(mb):
        out = loss(mb)
        stats.append(out[1][3].item())
        return out

    algo.loss = spy
    metrics = algo.update()
    per_epoch = algo.cfg.num_minibatches
    kls = [float(np.mean(stats[i : i + per_epoch])) for i in range(0, len(stats), per_epoch)]
    return kls, metrics


def test_target_kl_stops_after_the_first_epoch_whose_own_kl_exceeds_it():
    settings = dict(num_envs=2, num_steps=64, num_minibatches=4, update_epochs=8)
    reference = make_ppo("Pendulum", **settings)
    reference.rollouts.start()
    reference.collect_rollout()
    kls, _ = epoch_kls(reference)
    assert kls[0] < kls[1]  # the policy moves away from pi_old epoch by epoch
    # Above the mean of epochs 1 and 2 (what a running mean over the epochs would compare), below
    # epoch 2's own KL: the update must end after epoch 2.
    target = (kls[1] + (kls[0] + kls[1]) / 2) / 2
    algo = make_ppo("Pendulum", target_kl=target, **settings)
    algo.rollouts.start()
    algo.collect_rollout()
    stopped_kls, metrics = epoch_kls(algo)
    assert len(stopped_kls) == 2 and metrics["train/epochs_run"] == 2.0 and metrics["train/stopped_early"] == 1.0
    assert metrics["train/last_epoch_approx_kl"] == pytest.approx(kls[1], rel=1e-5)
    assert stopped_kls == pytest.approx(kls[:2], rel=1e-5)


def test_state_dict_round_trip_continues_identically():
    algo = make_ppo("Pendulum", num_envs=1, num_steps=128, num_minibatches=2, update_epochs=2)
    iterations = algo.learn()
    next(iterations)
    state = copy.deepcopy(algo.state_dict())
    env_state = copy.deepcopy(algo.env.state_dict())
    clone = make_ppo("Pendulum", seed=99, num_envs=1, num_steps=128, num_minibatches=2, update_epochs=2)
    clone.load_state_dict(state)
    clone.env.load_state_dict(env_state)
    obs = np.random.default_rng(0).normal(size=(3, 3)).astype(np.float32)
    np.testing.assert_array_equal(clone.act(obs), algo.act(obs))
    assert clone.global_step == algo.global_step
    assert torch.equal(clone.generator.get_state(), algo.generator.get_state())


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu"])
@pytest.mark.parametrize("env_name", ["CartPole", "HalfCheetah"])
def test_numpy_acting_copy_computes_the_learner_function(env_name, activation):
    from helpers import load_conf

    from rlrun.envs import env_config, spaces_of
    from rlrun.nets import ActorCritic, NumpyActorCritic, network_config

    observation_space, action_space = spaces_of(env_config(load_conf("env", env_name)))
    net = ActorCritic(observation_space, action_space, network_config(load_conf("network", "mlp", activation=activation)))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()  # far from the near-zero init, so every layer matters
    acting = NumpyActorCritic(net)
    obs = np.random.default_rng(0).normal(size=(5, observation_space.shape[0])).astype(np.float32)
    with torch.no_grad():
        expected_params = net.dist_params(torch.from_numpy(obs)).numpy()
        expected_values = net.value(torch.from_numpy(obs)).numpy()
    np.testing.assert_allclose(acting.dist_params(obs), expected_params, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(acting.value(obs), expected_values, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        net.critic[0].bias.add_(1.0)
    acting.refresh()
    with torch.no_grad():
        np.testing.assert_allclose(acting.value(obs), net.value(torch.from_numpy(obs)).numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dist_name", ["gaussian", "categorical"])
def test_numpy_acting_samples_follow_the_distribution_and_report_its_log_prob(dist_name):
    from rlrun.nets import Categorical, DiagGaussian

    generator = torch.Generator().manual_seed(0)
    if dist_name == "gaussian":
        dist, params = DiagGaussian(2), np.array([[1.0, -2.0, np.log(0.5), np.log(2.0)]] * 20000, np.float32)
    else:
        dist, params = Categorical(3), np.array([[0.0, np.log(2.0), np.log(5.0)]] * 20000, np.float32)
    actions, log_probs = dist.act(params, generator)
    torch.testing.assert_close(torch.from_numpy(log_probs),
                               dist.log_prob(torch.from_numpy(params), torch.from_numpy(actions)), rtol=1e-5, atol=1e-5)
    if dist_name == "gaussian":
        np.testing.assert_allclose(actions.mean(0), [1.0, -2.0], atol=0.05)
        np.testing.assert_allclose(actions.std(0), [0.5, 2.0], rtol=0.03)
    else:
        np.testing.assert_allclose(np.bincount(actions, minlength=3) / len(actions), [1 / 8, 2 / 8, 5 / 8], atol=0.01)


def test_ppo_kl_composes_without_value_clipping_and_its_loss_uses_the_plain_squared_error():
    from helpers import compose_config

    from rlrun.algos.ppo import value_loss

    composed = compose_config("algo=ppo_kl", "env=Pendulum")
    algo_cfg = {k: v for k, v in composed.algo.items() if k != "_target_"}
    assert algo_cfg["objective"] == "kl_penalty" and algo_cfg["clip_vloss"] is False
    algo = make_ppo("Pendulum", **algo_cfg)
    algo.rollouts.start()
    algo.collect_rollout()
    mb = algo.buffer.flat_tensors(torch.device("cpu"))
    with torch.no_grad():
        algo.net.critic[-1].bias.sub_(3.0)  # the value moves far beyond old_value +- clip_coef
        values = algo.net.value(mb["obs"])
    _, stats = algo.loss(mb)
    plain = value_loss(values, mb["values"], mb["returns"], None)
    clipped = value_loss(values, mb["values"], mb["returns"], algo.cfg.clip_coef)
    assert not torch.isclose(plain, clipped)
    torch.testing.assert_close(stats[1], plain)



def merged_and_reference(env_name: str, activation: str = "tanh", hidden_sizes=(32, 16, 8)):
    """An ActorCritic (float64, weights far from the near-zero init so every layer matters), merged,
    and a deep copy of it: plain modules with their own storage and autograd."""
    from helpers import load_conf

    from rlrun.envs import env_config, spaces_of
    from rlrun.nets import ActorCritic, network_config
    from rlrun.nets.merged import MergedActorCritic

    observation_space, action_space = spaces_of(env_config(load_conf("env", env_name)))
    cfg = network_config(load_conf("network", "mlp", activation=activation, hidden_sizes=list(hidden_sizes)))
    net = ActorCritic(observation_space, action_space, cfg).double()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    reference = copy.deepcopy(net)
    return MergedActorCritic(net), reference, observation_space.shape[0]


@pytest.mark.parametrize("activation", ["tanh", "relu", "elu"])
@pytest.mark.parametrize("env_name", ["CartPole", "HalfCheetah"])
def test_merged_actor_critic_computes_the_modules_function_and_gradient(env_name, activation):
    merged, reference, obs_dim = merged_and_reference(env_name, activation)
    assert_merged_matches_autograd(merged, reference, torch.randn(7, obs_dim, dtype=torch.float64))


@pytest.mark.parametrize("env_name", ["CartPole", "Pendulum"])
def test_merged_actor_critic_backward_passes_gradcheck(env_name):
    from rlrun.nets.merged import _ActorCriticFunction

    merged, _, obs_dim = merged_and_reference(env_name, hidden_sizes=(5, 4))
    obs = torch.randn(3, obs_dim, dtype=torch.float64)
    # gradcheck perturbs the flat buffer in place; the layers' weights are views of it.
    assert torch.autograd.gradcheck(lambda flat: _ActorCriticFunction.apply(obs, flat, merged), (merged.flat,))


def test_merged_parameters_follow_optimiser_steps_and_loaded_checkpoints():
    algo = make_ppo("Pendulum", num_envs=1, num_steps=64, num_minibatches=2, update_epochs=1)
    obs = torch.randn(4, 3)
    saved = copy.deepcopy(algo.net.state_dict())
    for change in ("optimiser step", "checkpoint"):
        if change == "optimiser step":
            with torch.no_grad():
                algo.flat_params.add_(0.1)  # in place, as Adam steps it
        else:
            algo.net.load_state_dict(saved)  # copied into the modules' parameters
            torch.testing.assert_close(algo.net.critic[0].weight, saved["critic.0.weight"])
        params, values = algo.merged(obs)
        with torch.no_grad():
            torch.testing.assert_close(params, algo.net.dist_params(obs), msg=change)
            torch.testing.assert_close(values, algo.net.value(obs), msg=change)


@pytest.mark.parametrize("env_name", ["CartPole", "Pendulum"])
def test_rollout_stores_the_learner_function_and_log_probs_of_the_stored_actions(env_name):
    algo = make_ppo(env_name, num_envs=2, num_steps=64)
    algo.rollouts.start()
    algo.collect_rollout()
    b = algo.buffer.flat_tensors(torch.device("cpu"))
    with torch.no_grad():
        torch.testing.assert_close(b["dist_params"], algo.net.dist_params(b["obs"]), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(b["values"], algo.net.value(b["obs"]), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(b["log_probs"], algo.dist.log_prob(b["dist_params"], b["actions"]),
                                   rtol=1e-5, atol=1e-5)


def test_a_checkpoint_saved_before_the_merged_layout_resumes_with_adam_moments_at_their_parameters():
    from rlrun.nets.flat import flatten_parameters

    algo = make_ppo("Pendulum", num_envs=1, num_steps=64, num_minibatches=2, update_epochs=1)
    # What PPO saved before: parameters flat in net.parameters() order, torch's fused Adam over them.
    old_net = copy.deepcopy(algo.net)
    old_flat = flatten_parameters(old_net)
    old_optimizer = torch.optim.Adam([old_flat], lr=1e-3, fused=True)
    obs = torch.randn(8, 3)
    (old_net.dist_params(obs).square().sum() + old_net.value(obs).square().sum()).backward()
    old_optimizer.step()
    algo.load_state_dict({"net": old_net.state_dict(), "optimizer": old_optimizer.state_dict(),
                          "generator": algo.generator.get_state(), "global_step": 64, "kl_beta": 1.0})
    old_state, new_state = old_optimizer.state[old_flat], algo.optimizer.state

    def segment(p, flat):  # the slice of `flat`'s buffer that parameter p views
        start = (p.data_ptr() - flat.data_ptr()) // p.element_size()
        return slice(start, start + p.numel())

    for (name, old_p), new_p in zip(old_net.named_parameters(), algo.net.parameters(), strict=True):
        for key in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(new_state[key][segment(new_p, algo.flat_params)],
                                       old_state[key][segment(old_p, old_flat)], msg=f"{key} {name}")
    torch.testing.assert_close(algo.flat_params.detach()[segment(algo.net.log_std, algo.flat_params)],
                               old_net.log_std.detach())
