"""The mathematics of DDPG, TD3 and SAC against hand-worked values, numerical densities and plain
reference updates; replay sampling and the storing of truncated and terminated transitions."""

from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import CPU, load_conf
from torch import nn
from torch.nn import functional as F

from rlrun.algos.ddpg import DDPG, OrnsteinUhlenbeckNoise, soft_update, target_network
from rlrun.algos.offpolicy import OffPolicy
from rlrun.algos.sac import SAC, soft_q_target, temperature_loss
from rlrun.algos.td3 import TD3, clipped_double_q_target, smoothed_target_action
from rlrun.data.replay import ReplayBuffer
from rlrun.envs import VecEnv, env_config
from rlrun.nets import network_config
from rlrun.nets.continuous import QCritic, SquashedGaussianActor, TwinQ, squashed_gaussian_sample
from rlrun.nets.flat import flatten_parameters

ALGOS = {"ddpg": DDPG, "td3": TD3, "sac": SAC}


def make(name: str, env_name: str = "Pendulum", seed: int = 0, network: dict | None = None, **algo_overrides):
    node = load_conf("algo", name)
    algo_cfg = ALGOS[name].parse_config({k: v for k, v in {**node["algo"], **algo_overrides}.items()
                                         if k != "_target_"})
    env = VecEnv(env_config({**load_conf("env", env_name), **node["env"]}), algo_cfg.num_envs, seed, "sync",
                 algo_cfg.gamma)
    net = network_config({**load_conf("network", "mlp"), **node["network"], **(network or {"hidden_sizes": [16, 16]})})
    return ALGOS[name](algo_cfg, env, net, CPU, seed, 10_000)


def fill(algo, steps: int) -> None:
    """Store `steps` transitions of uniform random actions, without learning."""
    obs = algo.env.reset()
    for _ in range(steps):
        actions = algo.random_actions()
        next_obs, reward, terminated, truncated, final_obs = algo.env.step(actions)
        true_next = next_obs if final_obs is None else np.where((terminated | truncated)[:, None], final_obs, next_obs)
        algo.replay.add(obs, actions, reward, true_next, terminated)
        obs = next_obs


# --- soft update ----------------------------------------------------------------------------------


def test_soft_update_moves_each_target_tau_of_the_way_including_batch_norm_statistics():
    torch.manual_seed(0)
    online = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))
    target, target_tensors = target_network(online)
    flat = flatten_parameters(online)
    with torch.no_grad():
        flat.add_(torch.randn_like(flat))  # the online network moves away from its copy
    online.train()(torch.randn(8, 3))      # and its batch-norm statistics too
    before = {k: v.clone() for k, v in target.state_dict().items()}
    soft_update(target_tensors, [flat.detach(), online[1].running_mean, online[1].running_var], 0.1)
    after = target.state_dict()
    for key, value in online.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        torch.testing.assert_close(after[key], 0.9 * before[key] + 0.1 * value, msg=key)
    assert not any(p.requires_grad for p in target.parameters())
    # The target module computes with the moved parameters (they are views of the updated flat tensor).
    x = torch.randn(5, 3)
    reference = copy.deepcopy(online).eval()
    reference.load_state_dict(after)
    torch.testing.assert_close(target(x), reference(x))


def test_soft_update_with_tau_one_copies_and_with_tau_zero_keeps():
    target, source = [torch.zeros(4)], [torch.arange(4.0)]
    soft_update(target, source, 1.0)
    torch.testing.assert_close(target[0], source[0])
    soft_update(target, [torch.full((4,), 7.0)], 0.0)
    torch.testing.assert_close(target[0], source[0])


# --- TD3 ------------------------------------------------------------------------------------------


def test_td3_target_takes_the_smaller_twin_and_ignores_the_future_after_termination():
    rewards = torch.tensor([1.0, 1.0, -2.0])
    terminated = torch.tensor([0.0, 0.0, 1.0])
    q1, q2 = torch.tensor([5.0, 3.0, 100.0]), torch.tensor([4.0, 6.0, 100.0])
    y = clipped_double_q_target(rewards, terminated, q1, q2, gamma=0.5)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.5 * 4.0, 1.0 + 0.5 * 3.0, -2.0]))


def test_td3_smoothing_noise_is_scaled_clipped_and_the_action_kept_in_bounds():
    low, high = torch.tensor([-2.0, -1.0]), torch.tensor([2.0, 1.0])
    half = (high - low) / 2
    mu = torch.tensor([[0.0, 0.0], [0.0, 0.0], [1.9, -0.9]])
    noise = torch.tensor([[0.5, -0.5], [10.0, -10.0], [10.0, -10.0]])
    a = smoothed_target_action(mu, noise, policy_noise=0.2, noise_clip=0.5, low=low, high=high, half_range=half)
    expected = torch.tensor([[0.2, -0.1],       # 0.2 * 0.5 = 0.1 half-ranges: 0.2 and 0.1 in action units
                             [1.0, -0.5],       # clipped to c = 0.5 half-ranges
                             [2.0, -1.0]])      # then to the action bounds
    torch.testing.assert_close(a, expected)


def test_td3_smoothing_noise_has_the_clipped_normal_distribution():
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(200_000, 1, generator=generator)
    big = torch.full((1,), 100.0)
    eps = smoothed_target_action(torch.zeros(200_000, 1), noise, 0.2, 0.5, -big, big, torch.ones(1))
    assert eps.abs().max() <= 0.5
    # P(|N(0, 0.2)| > 0.5) = 2 (1 - Phi(2.5)) = 0.0124: that mass sits exactly on the clip points.
    assert (eps.abs() == 0.5).float().mean().item() == pytest.approx(0.0124, abs=0.002)
    # Inside, a normal truncated at +-2.5 sd: sd 0.2 sqrt(1 - 2 * 2.5 phi(2.5) / (2 Phi(2.5) - 1)) = 0.1909.
    assert eps[eps.abs() < 0.5].std().item() == pytest.approx(0.1909, abs=0.002)


# --- SAC ------------------------------------------------------------------------------------------


def normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1 + torch.erf(x / math.sqrt(2)))


@pytest.mark.parametrize("mean, log_std", [(0.3, -0.5), (-1.0, 0.4), (1.5, -1.5)])
def test_squashed_gaussian_log_prob_is_the_derivative_of_its_cdf(mean, log_std):
    """y = tanh(u), u ~ N(m, s^2): P(Y <= y) = Phi((atanh(y) - m) / s); the density is its
    derivative, taken here by central finite differences in float64."""
    d = torch.float64
    noise = torch.linspace(-2.5, 2.5, 41, dtype=d)[:, None]
    m, ls = torch.full((41, 1), mean, dtype=d), torch.full((41, 1), log_std, dtype=d)
    action, log_prob = squashed_gaussian_sample(m, ls, noise)

    def cdf(y):
        return normal_cdf((torch.atanh(y) - mean) / math.exp(log_std))

    step = 1e-6
    numerical = (cdf(action[:, 0] + step) - cdf(action[:, 0] - step)) / (2 * step)
    torch.testing.assert_close(log_prob.exp(), numerical, rtol=1e-5, atol=1e-8)


def test_squashed_gaussian_density_matches_a_histogram_of_samples_in_two_dimensions():
    generator = torch.Generator().manual_seed(0)
    n = 1_000_000
    mean, log_std = torch.tensor([0.5, -0.2]), torch.tensor([-0.3, 0.2])
    noise = torch.randn(n, 2, generator=generator)
    action, _ = squashed_gaussian_sample(mean.expand(n, 2), log_std.expand(n, 2), noise)
    # Probability of each bin of a 2-d histogram: the samples' share against the density averaged over
    # a 5 x 5 grid inside the bin, times its area (the density from the same function, with the noise
    # that maps to each grid point).
    bins, sub = 12, 5
    lo, hi = torch.full((2,), -0.95), torch.full((2,), 0.95)
    width = (hi - lo) / bins
    index = ((action - lo) / width).floor().long()
    inside = ((index >= 0) & (index < bins)).all(-1)
    counts = torch.zeros(bins, bins)
    counts.index_put_((index[inside, 0], index[inside, 1]), torch.ones(int(inside.sum())), accumulate=True)
    empirical = counts / n
    ticks = (torch.arange(bins * sub) + 0.5) / sub  # in bin units
    grid = torch.stack(torch.meshgrid(ticks, ticks, indexing="ij"), -1).reshape(-1, 2)
    points = lo + grid * width
    noise_at = (torch.atanh(points) - mean) / log_std.exp()
    _, log_prob = squashed_gaussian_sample(mean.expand_as(points), log_std.expand_as(points), noise_at)
    density = log_prob.exp().reshape(bins, sub, bins, sub).mean((1, 3)) * width[0] * width[1]
    big = density > 0.2 * density.max()  # bins with enough samples for a tight comparison (>= ~3000)
    torch.testing.assert_close(empirical[big], density[big], rtol=0.06, atol=0.0)


def test_squashed_gaussian_log_prob_stays_finite_where_tanh_saturates():
    mean, log_std = torch.tensor([[15.0, -15.0]]), torch.zeros(1, 2)
    action, log_prob = squashed_gaussian_sample(mean, log_std, torch.zeros(1, 2))
    assert torch.isfinite(log_prob).all()
    # log(1 - tanh(u)^2) = log(4) - 2|u| - 2 log(1 + e^{-2|u|}) ~= log 4 - 30 for |u| = 15 (the +1e-6 form
    # would give log(1e-6) = -13.8).
    expected = 2 * (-0.5 * math.log(2 * math.pi)) - 2 * (math.log(4) - 30)
    assert log_prob.item() == pytest.approx(expected, abs=1e-4)


def test_sac_log_prob_is_measured_in_the_unit_box_whatever_the_action_bounds():
    """Issue 7, item 5: log pi (and so the entropy that alpha regulates towards -dim(A)) is that of
    tanh(u) in [-1, 1], as in the authors' softlearning and SB3; only the env sees the bounds. With the
    bounds' Jacobian in it, a Humanoid-v5 policy (+-0.4, 17 dims) would be held 17 ln 2.5 = 15.6 nats
    off the target."""
    torch.manual_seed(0)
    net = network_config({**load_conf("network", "mlp"), "hidden_sizes": [8]})
    narrow = SquashedGaussianActor(4, gym.spaces.Box(-0.4, 0.4, (3,), np.float32), net)
    unit = SquashedGaussianActor(4, gym.spaces.Box(-1.0, 1.0, (3,), np.float32), net)
    shifted = SquashedGaussianActor(4, gym.spaces.Box(np.array([0.0, -5.0, 2.0], np.float32),
                                                      np.array([0.8, 5.0, 3.0], np.float32)), net)
    unit.load_state_dict(narrow.state_dict())
    shifted.load_state_dict(narrow.state_dict())
    obs = torch.randn(256, 4)
    a_narrow, lp_narrow = narrow.sample(obs, torch.Generator().manual_seed(1))
    a_unit, lp_unit = unit.sample(obs, torch.Generator().manual_seed(1))
    a_shifted, lp_shifted = shifted.sample(obs, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a_narrow, 0.4 * a_unit)  # the env still gets actions inside its bounds
    torch.testing.assert_close(a_shifted, torch.tensor([0.4, 0.0, 2.5]) + torch.tensor([0.4, 5.0, 0.5]) * a_unit)
    torch.testing.assert_close(lp_narrow, lp_unit, rtol=0, atol=0)
    torch.testing.assert_close(lp_shifted, lp_unit, rtol=0, atol=0)
    # Slow reference in float64: torch.distributions' Normal, and the tanh Jacobian written out.
    mean, log_std = (t.double() for t in narrow.net(obs).chunk(2, -1))
    std = log_std.clamp(-20, 2).exp()
    u = mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(1)).double()
    reference = (torch.distributions.Normal(mean, std).log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)
    unsaturated = u.abs().max(-1).values < 5  # where float32's tanh leaves 1 - tanh^2 accurate
    assert unsaturated.sum() > 200
    torch.testing.assert_close(lp_narrow.double()[unsaturated], reference[unsaturated], rtol=1e-5, atol=1e-5)


def test_squashed_gaussian_actor_samples_within_bounds_with_its_own_log_prob():
    torch.manual_seed(0)
    space = gym.spaces.Box(-2.0, 2.0, (3,), np.float32)
    actor = SquashedGaussianActor(4, space, network_config({**load_conf("network", "mlp"), "hidden_sizes": [8]}))
    obs = torch.randn(64, 4)
    action, log_prob = actor.sample(obs, torch.Generator().manual_seed(1))
    assert action.abs().max() <= 2.0 and log_prob.shape == (64,)
    mean, log_std = actor.dist_params(obs)
    u = mean + log_std.exp() * torch.randn(mean.shape, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(action, 2.0 * torch.tanh(u))
    gaussian = torch.distributions.Normal(mean, log_std.exp()).log_prob(u)
    naive = (gaussian - torch.log(1 - torch.tanh(u) ** 2)).sum(-1)  # the density of tanh(u) in [-1, 1]
    unsaturated = u.abs().max(-1).values < 5  # where the naive form is still accurate in float32
    assert unsaturated.sum() > 50
    torch.testing.assert_close(log_prob[unsaturated], naive[unsaturated], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(actor.mode(obs), 2.0 * torch.tanh(mean))


def test_temperature_loss_gradient_is_minus_alpha_times_log_prob_plus_target_entropy():
    log_alpha = torch.tensor(math.log(0.5), requires_grad=True)
    log_prob = torch.tensor([-1.0, 0.5, 2.0])
    loss = temperature_loss(log_alpha, log_prob, target_entropy=-1.0)
    loss.backward()
    # J = -alpha mean(log pi + H) = -0.5 * mean([-2.0, -0.5, 1.0]) = 0.25; dJ/dlog(alpha) = J.
    assert loss.item() == pytest.approx(0.25)
    assert log_alpha.grad.item() == pytest.approx(0.25)


@pytest.mark.parametrize("log_prob, direction", [(2.0, +1), (-3.0, -1)])
def test_temperature_rises_when_entropy_is_below_target_and_falls_when_above(log_prob, direction):
    # Target entropy -1: entropy -log pi = -2 is below it (alpha should rise), 3 is above (fall).
    log_alpha = torch.tensor(0.0, requires_grad=True)
    optimizer = torch.optim.SGD([log_alpha], lr=0.1)
    temperature_loss(log_alpha, torch.full((5,), log_prob), -1.0).backward()
    optimizer.step()
    assert math.copysign(1, log_alpha.item()) == direction


def test_soft_q_target_subtracts_the_entropy_term_from_the_smaller_twin():
    y = soft_q_target(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 1.0]), torch.tensor([3.0, 3.0]),
                      torch.tensor([2.0, 2.0]), torch.tensor([-1.0, -1.0]), torch.tensor(0.5), 0.9)
    torch.testing.assert_close(y, torch.tensor([1.0 + 0.9 * (2.0 + 0.5), 1.0]))


# --- the fast updates against plain reference updates ----------------------------------------------


def plain_adam(module: nn.Module, lr: float, weight_decay: float = 0.0) -> torch.optim.Adam:
    return torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay, foreach=False)


def polyak(target: nn.Module, online: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for t, p in zip(target.parameters(), online.parameters(), strict=True):
            t.mul_(1 - tau).add_(tau * p)
        for (name, t), p in zip(target.named_buffers(), online.buffers(), strict=True):
            if "running_" in name:  # batch norm's running statistics follow too (num_batches_tracked not)
                t.mul_(1 - tau).add_(tau * p)


class PlainTwinQ(nn.Module):
    """The reference for TwinQ's stacked critics: two separate QCritics, as the paper draws them."""

    def __init__(self, fused: TwinQ):
        super().__init__()
        self.q1, self.q2 = (QCritic(fused.obs_dim, fused.action_dim, fused.cfg) for _ in range(2))
        self.load_state_dict(fused.state_dict())  # TwinQ's state_dict has two QCritics' keys
        self.train(fused.training)

    def forward(self, obs, action):
        return self.q1(obs, action), self.q2(obs, action)


def plain(critic: nn.Module) -> nn.Module:
    """A deep copy of DDPG's critic (a plain QCritic already), two plain QCritics for a TwinQ."""
    return PlainTwinQ(critic) if isinstance(critic, TwinQ) else copy.deepcopy(critic)


def assert_same_modules(fast: nn.Module, reference: nn.Module) -> None:
    for (name, a), b in zip(fast.state_dict().items(), reference.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")


def test_ddpg_update_matches_a_plain_reference_update():
    algo = make("ddpg")
    fill(algo, 300)
    actor, critic = copy.deepcopy(algo.actor), plain(algo.critic)  # own storage, not flat views
    actor_t, critic_t = copy.deepcopy(algo.actor_target), plain(algo.critic_target)
    cfg = algo.cfg
    actor_opt, critic_opt = plain_adam(actor, cfg.actor_lr), plain_adam(critic, cfg.critic_lr, cfg.critic_weight_decay)
    for _ in range(3):
        batch = algo.replay.sample(64, algo.generator, algo.device)
        algo.train_step(batch)
        algo.gradient_updates += 1
        s, a, r, s2, d = (batch[k] for k in ("obs", "actions", "rewards", "next_obs", "terminated"))
        with torch.no_grad():
            y = r + cfg.gamma * (1 - d) * critic_t(s2, actor_t(s2))
        critic_opt.zero_grad()
        ((critic(s, a) - y) ** 2).mean().backward()
        critic_opt.step()
        actor_opt.zero_grad()
        (-critic(s, actor(s)).mean()).backward()  # also fills the critic's gradients, unused
        actor_opt.step()
        polyak(actor_t, actor, cfg.tau)
        polyak(critic_t, critic, cfg.tau)
    for fast, reference in [(algo.actor, actor), (algo.critic, critic), (algo.actor_target, actor_t),
                            (algo.critic_target, critic_t)]:
        assert_same_modules(fast, reference)


def test_ddpg_with_batch_norm_takes_the_gradients_of_plain_train_mode_batch_norm():
    """Recording the minibatch once changes no gradient: the actor's is that of a plain train-mode
    forward through the critic (batch statistics), whose running statistics are then put back. One
    step: in train mode the biases that only shift a batch-norm input have a gradient of exactly 0,
    and Adam would turn its rounding noise into steps of ~lr that differ with the summation order."""
    algo = make("ddpg", network={"hidden_sizes": [16, 16], "batch_norm": True})
    fill(algo, 300)
    actor, critic = copy.deepcopy(algo.actor), plain(algo.critic)
    actor_t, critic_t = copy.deepcopy(algo.actor_target), plain(algo.critic_target)
    cfg = algo.cfg
    critic_opt = plain_adam(critic, cfg.critic_lr, cfg.critic_weight_decay)
    batch = algo.replay.sample(64, algo.generator, algo.device)
    algo.train_step(batch)
    s, a, r, s2, d = (batch[k] for k in ("obs", "actions", "rewards", "next_obs", "terminated"))
    with torch.no_grad():
        y = r + cfg.gamma * (1 - d) * critic_t(s2, actor_t(s2))
    critic_opt.zero_grad()
    ((critic(s, a) - y) ** 2).mean().backward()
    critic_opt.step()
    recorded = copy.deepcopy(dict(critic.named_buffers()))
    (-critic(s, actor(s)).mean()).backward()
    critic.load_state_dict({**critic.state_dict(), **recorded})
    torch.testing.assert_close(algo.actor_flat.grad, torch.cat([p.grad.reshape(-1) for p in actor.parameters()]),
                               rtol=1e-5, atol=1e-7)
    assert_same_modules(algo.critic, critic)
    for name, buffer in actor.named_buffers():
        torch.testing.assert_close(dict(algo.actor.named_buffers())[name], buffer, msg=name)


def test_td3_update_matches_a_plain_reference_update_with_delayed_actor_and_targets():
    algo = make("td3", policy_delay=2)
    fill(algo, 300)
    actor, critic = copy.deepcopy(algo.actor), plain(algo.critic)
    actor_t, critic_t = copy.deepcopy(algo.actor_target), plain(algo.critic_target)
    cfg = algo.cfg
    actor_opt, critic_opt = plain_adam(actor, cfg.actor_lr), plain_adam(critic, cfg.critic_lr)
    low, high = torch.as_tensor(algo.env.action_space.low), torch.as_tensor(algo.env.action_space.high)
    for step in range(4):
        batch = algo.replay.sample(64, algo.generator, algo.device)
        noise_state = algo.generator.get_state()
        algo.train_step(batch)
        algo.gradient_updates += 1
        s, a, r, s2, d = (batch[k] for k in ("obs", "actions", "rewards", "next_obs", "terminated"))
        g = torch.Generator()
        g.set_state(noise_state)
        with torch.no_grad():
            mu = actor_t(s2)
            eps = (torch.randn(mu.shape, generator=g) * cfg.policy_noise).clamp(-cfg.noise_clip, cfg.noise_clip)
            a2 = torch.max(torch.min(mu + eps * (high - low) / 2, high), low)
            y = r + cfg.gamma * (1 - d) * torch.min(*critic_t(s2, a2))
        critic_opt.zero_grad()
        q1, q2 = critic(s, a)
        (F.mse_loss(q1, y) + F.mse_loss(q2, y)).backward()
        critic_opt.step()
        if step % 2 == 0:
            actor_opt.zero_grad()
            (-critic.q1(s, actor(s)).mean()).backward()
            actor_opt.step()
            polyak(actor_t, actor, cfg.tau)
            polyak(critic_t, critic, cfg.tau)
        if step == 1:  # after a critic-only update the actor has not moved since the first update
            assert_same_modules(algo.actor, actor)
    for fast, reference in [(algo.actor, actor), (algo.critic, critic), (algo.actor_target, actor_t),
                            (algo.critic_target, critic_t)]:
        assert_same_modules(fast, reference)


def test_sac_update_matches_a_plain_reference_update():
    algo = make("sac")
    fill(algo, 300)
    actor, critic, critic_t = copy.deepcopy(algo.actor), plain(algo.critic), plain(algo.critic_target)
    cfg = algo.cfg
    log_alpha = torch.tensor(math.log(cfg.alpha), requires_grad=True)
    actor_opt, critic_opt = plain_adam(actor, cfg.actor_lr), plain_adam(critic, cfg.critic_lr)
    alpha_opt = torch.optim.Adam([log_alpha], lr=cfg.alpha_lr, foreach=False)
    target_entropy = -float(algo.env.action_space.shape[0])
    half = torch.as_tensor((algo.env.action_space.high - algo.env.action_space.low) / 2)
    assert (half != 1).all()  # Pendulum's +-2: a log-density with the bounds' Jacobian would differ

    def sample(obs, g):
        """torch.distributions Normal and the naive tanh correction: log pi of tanh(u) in [-1, 1],
        the action scaled to the bounds for the critics."""
        mean, log_std = actor.net(obs).chunk(2, -1)
        std = log_std.clamp(-20, 2).exp()
        u = mean + std * torch.randn(mean.shape, generator=g)
        log_prob = torch.distributions.Normal(mean, std).log_prob(u) - torch.log(1 - torch.tanh(u) ** 2)
        return half * torch.tanh(u), log_prob.sum(-1)

    for _ in range(3):
        batch = algo.replay.sample(64, algo.generator, algo.device)
        g = torch.Generator()
        g.set_state(algo.generator.get_state())
        algo.train_step(batch)
        algo.gradient_updates += 1
        s, a, r, s2, d = (batch[k] for k in ("obs", "actions", "rewards", "next_obs", "terminated"))
        alpha = log_alpha.detach().exp()
        with torch.no_grad():
            a2, logp2 = sample(s2, g)
            y = r + cfg.gamma * (1 - d) * (torch.min(*critic_t(s2, a2)) - alpha * logp2)
        critic_opt.zero_grad()
        q1, q2 = critic(s, a)
        (0.5 * F.mse_loss(q1, y) + 0.5 * F.mse_loss(q2, y)).backward()
        critic_opt.step()
        actor_opt.zero_grad()
        a_pi, logp = sample(s, g)
        (alpha * logp - torch.min(*critic(s, a_pi))).mean().backward()
        actor_opt.step()
        alpha_opt.zero_grad()
        (-(log_alpha.exp() * (logp.detach() + target_entropy))).mean().backward()
        alpha_opt.step()
        polyak(critic_t, critic, cfg.tau)
    for fast, reference in [(algo.actor, actor), (algo.critic, critic), (algo.critic_target, critic_t)]:
        assert_same_modules(fast, reference)
    assert algo.log_alpha.item() == pytest.approx(log_alpha.item(), abs=1e-6)


@pytest.mark.parametrize("name", ["ddpg", "td3", "sac"])
def test_actor_backward_adds_no_gradient_to_the_critic_weights(name):
    algo = make(name)
    fill(algo, 100)
    seen = {}
    critic_step = algo.critic_optimizer.step

    def spy(*args, **kwargs):
        seen["grad"] = algo.critic_flat.grad.clone()
        return critic_step(*args, **kwargs)

    algo.critic_optimizer.step = spy
    algo.train_step(algo.replay.sample(32, algo.generator, algo.device))  # update 0: critic, then actor
    assert algo.actor_flat.grad.abs().sum() > 0
    torch.testing.assert_close(algo.critic_flat.grad, seen["grad"], rtol=0, atol=0)
    assert all(p.requires_grad for p in algo.critic.parameters())


@pytest.mark.parametrize("name, overrides", [("ddpg", {"noise": "ou"}), ("td3", {}), ("sac", {})])
def test_a_learner_restored_from_its_saved_state_continues_identically(name, overrides, tmp_path):
    trained = make(name, **overrides, learning_starts=200, steps_per_iteration=300)
    steps = trained.learn()
    next(steps)  # 300 steps: 200 random, then the behaviour policy and 101 updates
    torch.save(trained.state_dict(), tmp_path / "state.pt")
    restored = make(name, seed=99, **overrides, learning_starts=200, steps_per_iteration=300)
    restored.load_state_dict(torch.load(tmp_path / "state.pt", weights_only=True))
    obs = trained.env.reset(seed=5)
    restored.env.reset(seed=5)
    # The same explored actions (noise state and generator restored) and the same next updates.
    np.testing.assert_array_equal(trained.explore(obs), restored.explore(obs))
    for _ in range(3):
        metrics = trained.train_step(trained.replay.sample(32, trained.generator, trained.device))
        again = restored.train_step(restored.replay.sample(32, restored.generator, restored.device))
        trained.gradient_updates += 1
        restored.gradient_updates += 1
        for key, value in metrics.items():
            torch.testing.assert_close(again[key], value, rtol=0, atol=0, msg=key)
    for key, value in trained.state_dict().items():
        if key in ("actor", "critic", "actor_target", "critic_target"):
            for param, tensor in value.items():
                torch.testing.assert_close(restored.state_dict()[key][param], tensor, rtol=0, atol=0)


# --- batch normalisation (DDPG's, Lillicrap et al. 2015) --------------------------------------------


def batch_norm_layers(module: nn.Module) -> list[nn.BatchNorm1d]:
    return [m for m in module.modules() if isinstance(m, nn.BatchNorm1d)]


@pytest.mark.parametrize("name", ["ddpg", "td3", "sac"])
def test_each_train_step_updates_each_batch_norm_layer_once_from_the_minibatch_states(name):
    """Issue 7, item 7: a train step records each online batch-norm layer's running statistics once
    per minibatch (the critic's in its loss, the actor's in its update: TD3's only on delayed steps),
    from the minibatch's states s; the targets' forwards run in eval mode and record nothing."""
    algo = make(name, network={"hidden_sizes": [16, 16], "batch_norm": True})
    fill(algo, 300)
    online = {"actor": algo.actor, "critic": algo.critic}
    targets = [algo.critic_target] + ([algo.actor_target] if name != "sac" else [])
    assert all(batch_norm_layers(m) for m in [*online.values(), *targets])
    obs_dim = algo.env.observation_space.shape[0]
    for step in range(4):
        batch = algo.replay.sample(64, algo.generator, algo.device)
        before = {key: [(bn.num_batches_tracked.item(), bn.running_mean.clone()) for bn in batch_norm_layers(m)]
                  for key, m in online.items()}
        algo.train_step(batch)
        actor_updated = name != "td3" or step % algo.cfg.policy_delay == 0
        algo.gradient_updates += 1
        for key, module in online.items():
            expected = 1 if key == "critic" or actor_updated else 0
            for i, bn in enumerate(batch_norm_layers(module)):
                count_before, mean_before = before[key][i]
                assert bn.num_batches_tracked.item() - count_before == expected, (key, i, step)
                if bn.num_features == obs_dim:  # a layer on the state input (hidden layers have 16)
                    moved = (1 - bn.momentum) * mean_before + bn.momentum * batch["obs"].mean(0)
                    torch.testing.assert_close(bn.running_mean, moved if expected else mean_before)
        for target in targets:
            assert not target.training
            assert all(bn.num_batches_tracked.item() == 0 for bn in batch_norm_layers(target))


# --- exploration noise ----------------------------------------------------------------------------


def test_ou_noise_follows_its_recursion_and_restarts_with_the_episode():
    generator = torch.Generator().manual_seed(0)
    noise = OrnsteinUhlenbeckNoise(sigma=0.2, theta=0.15, dt=1.0, shape=(2, 1))
    reference = torch.Generator().manual_seed(0)
    x = torch.zeros(2, 1)
    for t in range(5):
        start = np.array([t == 3, False])
        out = noise(generator, start)
        x[torch.from_numpy(start)] = 0.0
        x = x - 0.15 * x + 0.2 * torch.randn(2, 1, generator=reference)
        np.testing.assert_allclose(out, x.numpy(), rtol=1e-6)
    # Correlated in time (stationary autocorrelation 1 - theta = 0.85 per step).
    long = OrnsteinUhlenbeckNoise(0.2, 0.15, 1.0, (1, 1))
    series = np.array([long(generator, np.array([False]))[0, 0] for _ in range(20_000)])
    assert np.corrcoef(series[:-1], series[1:])[0, 1] == pytest.approx(0.85, abs=0.03)


# --- replay ---------------------------------------------------------------------------------------


def test_replay_overwrites_the_oldest_and_samples_only_stored_rows_uniformly():
    space_obs = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
    space_act = gym.spaces.Box(-1, 1, (1,), np.float32)
    replay = ReplayBuffer(10, space_obs, space_act)
    for t in range(25):  # two envs, so 50 transitions into a ring of 10
        ids = np.array([2 * t, 2 * t + 1], np.float32)
        replay.add(np.stack([ids, -ids], 1), ids[:, None], ids, np.stack([ids + 0.5, ids], 1), np.zeros(2))
    assert replay.size == 10 and replay.obs.dtype == np.float32
    assert sorted(replay.rewards.tolist()) == list(range(40, 50))
    batch = replay.sample(20_000, torch.Generator().manual_seed(0), torch.device("cpu"))
    ids = batch["rewards"]
    # Every field of a sampled row comes from the same transition.
    torch.testing.assert_close(batch["obs"][:, 0], ids)
    torch.testing.assert_close(batch["actions"][:, 0], ids)
    torch.testing.assert_close(batch["next_obs"][:, 0], ids + 0.5)
    counts = torch.bincount(ids.long() - 40, minlength=10).float()
    assert counts.min() > 1700 and counts.max() < 2300  # 2000 expected each, sd ~42


class Recorder(OffPolicy):
    """The shared loop with uniform actions and no learning: what it stores is what is checked."""

    def explore(self, obs):
        return self.random_actions()

    def train_step(self, batch):
        raise AssertionError("no learning in this test")


def run_loop(env_cfg: dict, steps: int, num_envs: int = 1, seed: int = 3) -> Recorder:
    cfg = SimpleNamespace(num_envs=num_envs, buffer_size=10_000, learning_starts=10**9, batch_size=1,
                          train_frequency=1, gradient_steps=1, steps_per_iteration=steps)
    env = VecEnv(env_config(env_cfg), num_envs, seed, "sync")
    algo = Recorder(cfg, env, CPU, seed, steps)
    next(algo.learn())
    return algo


def reference_transitions(env_cfg: dict, actions: np.ndarray, seed: int) -> list[tuple]:
    """The same actions in a plain gymnasium env: (obs, reward, next_obs as the episode saw it,
    terminated, truncated)."""
    env = gym.make(env_cfg["id"], max_episode_steps=env_cfg["max_episode_steps"])
    obs, _ = env.reset(seed=seed)
    out = []
    for action in actions:
        next_obs, reward, terminated, truncated, _ = env.step(action)
        out.append((obs, reward, next_obs, terminated, truncated))
        obs = env.reset()[0] if terminated or truncated else next_obs
    return out


def test_replay_stores_the_final_observation_and_terminated_zero_across_a_time_limit():
    env_cfg = {**load_conf("env", "Pendulum"), "max_episode_steps": 7, "normalize_obs": False,
               "normalize_reward": False}
    algo = run_loop(env_cfg, 30)
    r = algo.replay
    expected = reference_transitions(env_cfg, r.actions[:30], seed=3)
    truncations = 0
    for i, (obs, reward, next_obs, terminated, truncated) in enumerate(expected):
        np.testing.assert_allclose(r.obs[i], obs, rtol=1e-6)
        np.testing.assert_allclose(r.next_obs[i], next_obs, rtol=1e-6)  # the episode's last, not the reset one
        assert r.rewards[i] == pytest.approx(reward, rel=1e-6)
        assert r.terminated[i] == 0.0 and not terminated
        truncations += truncated
        if truncated:
            assert not np.allclose(r.next_obs[i], r.obs[i + 1])  # the next row starts a new episode
    assert truncations == 4


def test_replay_stores_terminated_one_when_the_episode_really_ends():
    env_cfg = {**load_conf("env", "Hopper"), "normalize_obs": False, "normalize_reward": False}
    algo = run_loop(env_cfg, 200, seed=5)
    r = algo.replay
    expected = reference_transitions({**env_cfg, "max_episode_steps": None}, r.actions[:200], seed=5)
    ends = [i for i, e in enumerate(expected) if e[3]]
    assert ends, "random Hopper actions should fall within 200 steps"
    for i, (obs, _, next_obs, terminated, _) in enumerate(expected):
        assert r.terminated[i] == float(terminated)
        np.testing.assert_allclose(r.next_obs[i], next_obs, rtol=1e-5, atol=1e-6)
