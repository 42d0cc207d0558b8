"""gSDE, generalized state-dependent exploration (Raffin, Kober & Stulp 2021): the Gaussian it defines
at each state (worked by hand, and against torch.distributions.Normal), the noise phi(s)^T theta_eps
as a function of the state, the resampling schedule, the written-out learner's gradient, exact resume,
and the refusals."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from helpers import CPU, assert_merged_matches_autograd, load_conf
from test_resume_exact import split_equals_whole

from rlrun.algos.a2c import A2C
from rlrun.algos.onpolicy import SDESettings, build_actor_critic, collect_rollout, make_buffer
from rlrun.config import ConfigError
from rlrun.envs import VecEnv, env_config
from rlrun.nets import NumpyActorCritic, network_config
from rlrun.nets.distributions import StateDependentGaussian
from rlrun.nets.merged import MergedActorCritic



def gsde(action_dim: int, log_sigma: list[list[float]], use_expln: bool = False):
    dist = StateDependentGaussian(action_dim, feature_dim=len(log_sigma), use_expln=use_expln)
    return dist, torch.tensor(log_sigma, dtype=torch.float64)


def test_one_action_two_features_log_prob_and_entropy_worked_by_hand():
    # phi = (1, 2), sigma = (0.5, 1): Var = 1^2 0.5^2 + 2^2 1^2 = 4.25 (+ 1e-6).
    dist, log_sigma = gsde(1, [[math.log(0.5)], [0.0]])
    params = dist.params(torch.tensor([[0.3]], dtype=torch.float64), torch.tensor([[1.0, 2.0]], dtype=torch.float64),
                         log_sigma)
    assert params[0, 1].item() == pytest.approx(0.5 * math.log(4.25), abs=1e-6)  # log std
    # a = 1.3: z^2 = 1 / 4.25; log N = -z^2/2 - log std - log(2 pi)/2 = -0.117647 - 0.723459 - 0.918939
    log_prob = dist.log_prob(params, torch.tensor([[1.3]], dtype=torch.float64))
    assert log_prob.item() == pytest.approx(-1.760045, abs=1e-5)
    # H = (1 + log 2 pi)/2 + log std = 1.418939 + 0.723459
    assert dist.entropy(params).item() == pytest.approx(2.142398, abs=1e-5)


def test_two_actions_two_features_variance_log_prob_and_entropy_worked_by_hand():
    # phi = (1, -2), sigma = [[0.5, 1], [1, 0.25]] (feature x action):
    # Var_1 = 1 * 0.25 + 4 * 1 = 4.25, Var_2 = 1 * 1 + 4 * 0.0625 = 1.25.
    dist, log_sigma = gsde(2, [[math.log(0.5), 0.0], [0.0, math.log(0.25)]])
    features = torch.tensor([[1.0, -2.0]], dtype=torch.float64)
    params = dist.params(torch.tensor([[0.0, 1.0]], dtype=torch.float64), features, log_sigma)
    variance = torch.exp(2 * params[0, 2:])
    torch.testing.assert_close(variance, torch.tensor([4.25, 1.25], dtype=torch.float64), atol=2e-6, rtol=0)
    # a = (2.125, 0.5): z = (2.125 / sqrt(4.25), -0.5 / sqrt(1.25)), z^2 = (1.0625, 0.2)
    # log pi = -(1.0625 + 0.2)/2 - (log 4.25 + log 1.25)/2 - log 2 pi = -0.63125 - 0.835031 - 1.837877
    log_prob = dist.log_prob(params, torch.tensor([[2.125, 0.5]], dtype=torch.float64))
    assert log_prob.item() == pytest.approx(-3.304158, abs=1e-5)
    # H = 2 (1 + log 2 pi)/2 + (log 4.25 + log 1.25)/2 = 2.837877 + 0.835031
    assert dist.entropy(params).item() == pytest.approx(3.672908, abs=1e-5)


def test_expln_keeps_exp_below_zero_and_grows_as_log1p_above():
    dist, log_sigma = gsde(1, [[-1.0], [2.0]], use_expln=True)
    sigma = dist.weight_std(log_sigma)
    torch.testing.assert_close(sigma, torch.tensor([[math.exp(-1.0)], [math.log(3.0) + 1]], dtype=torch.float64))
    # phi = (2, 1): Var = 4 e^-2 + (log 3 + 1)^2
    params = dist.params(torch.zeros(1, 1, dtype=torch.float64), torch.tensor([[2.0, 1.0]], dtype=torch.float64),
                         log_sigma)
    expected = 4 * math.exp(-2.0) + (math.log(3.0) + 1) ** 2
    assert math.exp(2 * params[0, 1].item()) == pytest.approx(expected, abs=1e-5)


def test_log_prob_and_entropy_equal_torch_normal_with_the_state_dependent_std():
    generator = torch.Generator().manual_seed(0)
    dist = StateDependentGaussian(3, feature_dim=5)
    log_sigma = torch.randn(5, 3, generator=generator, dtype=torch.float64) * 0.5 - 1
    features = torch.randn(11, 5, generator=generator, dtype=torch.float64)
    mean = torch.randn(11, 3, generator=generator, dtype=torch.float64)
    actions = torch.randn(11, 3, generator=generator, dtype=torch.float64)
    params = dist.params(mean, features, log_sigma)
    std = torch.sqrt(features.square() @ torch.exp(2 * log_sigma) + dist.EPSILON)
    normal = torch.distributions.Normal(mean, std)
    torch.testing.assert_close(dist.log_prob(params, actions), normal.log_prob(actions).sum(-1))
    torch.testing.assert_close(dist.entropy(params), normal.entropy().sum(-1))
    # The noise phi^T theta_eps over many matrices has that variance (1e5 draws: a few per cent at most).
    draws = torch.randn(100_000, 5, 3, generator=generator, dtype=torch.float64) * log_sigma.exp()
    noise = torch.einsum("f,nfa->na", features[0], draws)
    torch.testing.assert_close(noise.var(0), std[0].square(), rtol=0.03, atol=0)


def test_gradient_reaches_log_sigma_but_not_the_features():
    dist = StateDependentGaussian(2, feature_dim=3)
    log_sigma = torch.zeros(3, 2, dtype=torch.float64, requires_grad=True)
    features = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    params = dist.params(torch.zeros(4, 2, dtype=torch.float64), features, log_sigma)
    dist.log_prob(params, torch.ones(4, 2, dtype=torch.float64)).sum().backward()
    assert log_sigma.grad is not None and log_sigma.grad.abs().sum() > 0
    assert features.grad is None  # SB3's learn_features=False: phi is detached


def make_env(name: str = "Pendulum", num_envs: int = 2, seed: int = 0) -> VecEnv:
    return VecEnv(env_config(load_conf("env", name)), num_envs, seed, "sync", 0.99)


def make_net(env: VecEnv, sample_freq: int = -1, hidden=(8, 8)):
    network = network_config(load_conf("network", "mlp", hidden_sizes=list(hidden), log_std_init=-0.5))
    torch.manual_seed(0)
    return build_actor_critic(env, network, False, SDESettings(use_sde=True, sde_sample_freq=sample_freq))


def test_numpy_acting_copy_computes_the_learners_gaussian_and_features():
    env = make_env()
    net = make_net(env)
    acting = NumpyActorCritic(net)
    obs = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    params, values, features = acting.dist_params_value_features(obs)
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(params), net.dist_params(torch.from_numpy(obs)))
        torch.testing.assert_close(torch.from_numpy(values), net.value(torch.from_numpy(obs)))
        torch.testing.assert_close(torch.from_numpy(features), net.actor[:-1](torch.from_numpy(obs)))


def test_with_a_fixed_matrix_the_action_is_a_deterministic_function_of_the_state():
    env = make_env()
    net = make_net(env)
    acting = NumpyActorCritic(net)
    generator = torch.Generator().manual_seed(1)
    matrices = acting.exploration_matrices(2, generator)
    rng = np.random.default_rng(0)
    s, s_other = rng.normal(size=(2, 3)).astype(np.float32)

    def action(states):
        params, _, features = acting.dist_params_value_features(states)
        return net.dist.sample_from_features(params, features, matrices)

    first, again = action(np.stack([s, s])), action(np.stack([s, s]))
    np.testing.assert_array_equal(first, again)  # the same state, the same matrix: the same action
    assert not np.allclose(first[0], first[1])  # each env its own matrix
    assert not np.allclose(action(np.stack([s_other, s_other]))[0], first[0])  # another state, another action
    # A fresh matrix moves the action at the same state (what plain Gaussian noise does at every step).
    matrices = acting.exploration_matrices(2, generator)
    assert not np.allclose(action(np.stack([s, s])), first)


@pytest.mark.parametrize("sample_freq", [-1, 1, 4, 5])
def test_rollout_draws_a_matrix_per_env_at_its_start_and_every_sample_freq_steps(sample_freq):
    num_steps = 16
    env = make_env()
    net = make_net(env, sample_freq)
    acting = NumpyActorCritic(net)
    buffer = make_buffer(env, num_steps, 2, net)
    generator = torch.Generator().manual_seed(3)
    replay = torch.Generator().manual_seed(3)
    collect_rollout(env, buffer, acting, generator, env.reset())
    # Replay the draws: a block of steps shares one matrix per env; blocks start at 0, sample_freq, ...
    starts = [0] if sample_freq == -1 else list(range(0, num_steps, sample_freq))
    for t in range(num_steps):
        if t in starts:
            matrices = acting.exploration_matrices(2, replay)
        params, _, features = acting.dist_params_value_features(buffer.obs[t])
        np.testing.assert_allclose(buffer.actions[t], net.dist.sample_from_features(params, features, matrices),
                                   rtol=1e-6, atol=1e-6, err_msg=f"step {t}")
    # Nothing else was drawn: both generators are at the same point.
    assert torch.equal(generator.get_state(), replay.get_state())
    # The stored log-probabilities are those of the stored actions under the Gaussian at each state.
    with torch.no_grad():
        obs = torch.from_numpy(buffer.obs.reshape(-1, 3))
        expected = net.dist.log_prob(net.dist_params(obs), torch.from_numpy(buffer.actions.reshape(-1, 1)))
    torch.testing.assert_close(torch.from_numpy(buffer.log_probs.reshape(-1)), expected, rtol=1e-4, atol=1e-4)


def test_merged_learner_computes_the_modules_function_and_gradient():
    env = make_env()
    net = make_net(env).double()
    reference = copy.deepcopy(net)
    merged = MergedActorCritic(net)
    assert_merged_matches_autograd(merged, reference, torch.randn(7, 3, dtype=torch.float64))
    assert net.log_std.grad.abs().sum() > 0


def test_a2c_state_dict_round_trip_continues_identically():
    # The matrix is drawn at the start of each rollout from the algorithm's generator, which the
    # checkpoint keeps: a restored A2C collects and learns exactly as the original.
    def make(seed):
        cfg = A2C.parse_config({**{k: v for k, v in load_conf("algo", "a2c").items() if k != "_target_"},
                                "use_sde": True, "sde_sample_freq": 3, "num_envs": 2, "log_interval": 2})
        network = network_config(load_conf("network", "mlp", log_std_init=-2.0))
        return A2C(cfg, make_env(seed=seed), network, CPU, seed, 10_000)

    original = make(0)
    steps = original.learn()
    next(steps)
    restored = make(7)
    restored.load_state_dict(copy.deepcopy(original.state_dict()))
    restored.env.load_state_dict(original.env.state_dict())
    restored.rollouts.next_obs = original.rollouts.next_obs.copy()
    # (learn() would reset the envs: one rollout and update of each, by hand, as learn() runs them.)
    for algo in (original, restored):
        last_values = algo.rollouts.collect(algo.buffer, algo.generator)
        algo.global_step += 2 * algo.cfg.num_steps
        algo.update(last_values)
    np.testing.assert_array_equal(original.buffer.actions, restored.buffer.actions)
    for key, value in original.state_dict()["net"].items():
        assert torch.equal(value, restored.state_dict()["net"][key]), key


# Through the real command line (three runs each): in the slow set, as test_resume_exact.py's others.
@pytest.mark.slow
def test_a2c_with_gsde_split_run_equals_one_run(rlrun, tmp_path):
    # 16 envs (tuned/a2c_Pendulum.yaml): 2 x 2560 steps let each env end a 200-step episode, which the
    # comparison of episodes.csv needs.
    split_equals_whole(rlrun, tmp_path, 2560, "algo=a2c", "env=Pendulum", "algo.log_interval=10",
                       "algo.sde_sample_freq=3")


@pytest.mark.slow
def test_ppo_with_gsde_split_run_equals_one_run(rlrun, tmp_path):
    split_equals_whole(rlrun, tmp_path, 1024, "algo=ppo", "env=Pendulum", "algo.use_sde=true", "algo.num_envs=2",
                       "algo.num_steps=128", "algo.num_minibatches=4", "algo.update_epochs=2")


@pytest.mark.parametrize(("overrides", "message"), [
    (("algo=ppo", "env=CartPole", "algo.use_sde=true"), "gSDE explores continuous actions"),
    (("algo=sac", "env=Pendulum", "+algo.use_sde=true"), "gSDE explores continuous actions"),
    (("algo=a2c", "env=Pendulum", "algo.sde_sample_freq=0"), "algo.sde_sample_freq must be -1"),
])
def test_use_sde_where_it_cannot_apply_is_one_line_error_before_anything_runs(rlrun, tmp_path, overrides, message):
    run_dir = tmp_path / "run"
    result = rlrun(*overrides, "logger=csv", cwd=tmp_path, run_dir=run_dir)
    assert result.returncode != 0
    errors = [line for line in result.stderr_lines() if line.startswith("rlrun: error:")]
    assert len(errors) == 1 and message in errors[0], result.describe()
    assert not (run_dir / "checkpoints").exists()


def test_discrete_actor_critic_refuses_use_sde():
    with pytest.raises(ConfigError, match="gSDE"):
        make_net(make_env("CartPole"))
