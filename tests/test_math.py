"""The mathematics of PPO and its parts, against values worked out by hand or by a slow reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.distributions import Categorical as TorchCategorical
from torch.distributions import Normal, kl_divergence

from rlrun.algos.ppo import adapt_kl_beta, clipped_surrogate_loss, kl_penalty_loss, value_loss
from rlrun.data import RolloutBuffer, compute_gae
from rlrun.envs import RunningMeanStd
from rlrun.nets import Categorical, DiagGaussian
from rlrun.nets.flat import clip_grad_norm_, flatten_parameters

GAMMA, LAM = 0.9, 0.5


def hand_example() -> dict[str, np.ndarray]:
    """Two envs, four steps. Env 0 terminates at t=1; env 1 is truncated at t=1 with V(final obs)=3."""
    return {
        "rewards": np.array([[1, 0], [1, 2], [1, 0], [1, 1]], np.float32),
        "values": np.array([[0.5, 1], [0.4, 1], [0.3, 1], [0.2, 1]], np.float32),
        # V(true next state): env 0 at t=1 terminated (7 must be ignored); env 1 at t=1 was truncated.
        "next_values": np.array([[0.4, 1], [7.0, 3.0], [0.2, 1], [0.1, 2]], np.float32),
        "terminated": np.array([[0, 0], [1, 0], [0, 0], [0, 0]], np.float32),
        "ended": np.array([[0, 0], [1, 1], [0, 0], [0, 0]], np.float32),
    }


# Worked by hand: delta_t = r + 0.9 (1 - term) V' - V, A_t = delta_t + 0.45 (1 - ended) A_{t+1}.
# env 0: deltas 0.86, 0.6, 0.88, 0.89  -> A = 0.86 + 0.45 * 0.6, 0.6, 0.88 + 0.45 * 0.89, 0.89
# env 1: deltas -0.1, 3.7, -0.1, 1.8   -> A = -0.1 + 0.45 * 3.7, 3.7, -0.1 + 0.45 * 1.8, 1.8
HAND_ADVANTAGES = np.array([[1.13, 1.565], [0.6, 3.7], [1.2805, 0.71], [0.89, 1.8]])


def test_gae_bootstraps_on_truncation_not_termination():
    advantages = compute_gae(**hand_example(), gamma=GAMMA, lam=LAM)
    np.testing.assert_allclose(advantages, HAND_ADVANTAGES, rtol=1e-5)


def test_gae_with_lambda_one_is_discounted_return_minus_value():
    rewards = np.array([[1.0], [2.0], [3.0]], np.float32)
    values = np.array([[0.5], [0.25], [0.125]], np.float32)
    zeros = np.zeros_like(rewards)
    next_values = np.array([[0.25], [0.125], [10.0]], np.float32)
    advantages = compute_gae(rewards, values, next_values, zeros, zeros, gamma=0.5, lam=1.0)
    returns = [1 + 0.5 * 2 + 0.25 * 3 + 0.125 * 10, 2 + 0.5 * 3 + 0.25 * 10, 3 + 0.5 * 10]
    np.testing.assert_allclose(advantages[:, 0], np.array(returns) - values[:, 0], rtol=1e-6)


def test_rollout_buffer_fills_next_values_from_the_following_step():
    example = hand_example()
    buf = RolloutBuffer(4, 2, (1,), (), np.int64, 2)
    for name in ("rewards", "values", "terminated", "ended"):
        getattr(buf, name)[:] = example[name]
    # During a rollout only ended steps get a next value: V(final obs) on truncation, 0 on termination.
    buf.next_values[:] = 0
    buf.next_values[1, 1] = 3.0
    buf.finish(last_values=np.array([0.1, 2.0], np.float32), gamma=GAMMA, lam=LAM)
    np.testing.assert_allclose(buf.advantages, HAND_ADVANTAGES, rtol=1e-5)
    np.testing.assert_allclose(buf.returns, HAND_ADVANTAGES + example["values"], rtol=1e-5)


def test_clipped_surrogate_takes_the_pessimistic_term():
    ratio = torch.tensor([0.5, 1.0, 1.5, 1.5])
    advantages = torch.tensor([1.0, -1.0, 1.0, -1.0])
    # Per sample max(-A r, -A clip(r, 0.8, 1.2)): -0.5, 1.0, -1.2, 1.5; mean 0.2.
    assert clipped_surrogate_loss(ratio, advantages, 0.2).item() == pytest.approx(0.2)


def test_clipped_surrogate_has_no_gradient_outside_the_trust_region():
    ratio = torch.tensor([1.5, 0.5], requires_grad=True)
    clipped_surrogate_loss(ratio, torch.tensor([1.0, -1.0]), 0.2).backward()
    assert ratio.grad.tolist() == [0.0, 0.0]



def test_clipped_surrogate_gradient_is_autograds_through_the_plain_formula_ties_included():
    # ClippedSurrogateLoss writes its backward out; the plain formula of eq. 7 through autograd is the reference.
    generator = torch.Generator().manual_seed(0)
    ratio = torch.rand(64, generator=generator, dtype=torch.float64) + 0.5
    ratio[:5] = torch.tensor([0.8, 1.2, 1.0, 0.7999, 1.2001])  # on and just beyond the clip range
    advantages = torch.randn(64, generator=generator, dtype=torch.float64)
    advantages[5:7] = 0.0  # ties between the two terms outside the range
    grads = []
    for loss_fn in (clipped_surrogate_loss,
                    lambda r, a, eps: torch.max(-a * r, -a * torch.clamp(r, 1 - eps, 1 + eps)).mean()):
        r, a = ratio.clone().requires_grad_(), advantages.clone().requires_grad_()
        loss = loss_fn(r, a, 0.2)
        loss.backward()
        grads.append((loss.detach(), r.grad, a.grad))
    for fast, reference in zip(*grads, strict=True):
        torch.testing.assert_close(fast, reference, rtol=1e-12, atol=1e-15)

def test_value_loss_clipped_and_unclipped_match_hand_values():
    values, old, returns = torch.tensor([1.0, 3.0]), torch.tensor([0.0, 2.0]), torch.tensor([2.0, 0.0])
    # unclipped squared errors 1 and 9; clipped predictions 0.5 and 2.5 give 2.25 and 6.25.
    assert value_loss(values, old, returns, None).item() == pytest.approx(0.5 * (1 + 9) / 2)
    assert value_loss(values, old, returns, 0.5).item() == pytest.approx(0.5 * (2.25 + 9) / 2)


def test_kl_penalty_loss_is_surrogate_minus_beta_kl():
    ratio, advantages, kl = torch.tensor([1.0, 2.0]), torch.tensor([1.0, 3.0]), torch.tensor([0.1, 0.3])
    assert kl_penalty_loss(ratio, advantages, kl, beta=2.0).item() == pytest.approx(-(1 + 6) / 2 + 2 * 0.2)


@pytest.mark.parametrize("kl, expected", [(0.005, 0.5), (0.0067, 1.0), (0.01, 1.0), (0.015, 1.0), (0.0151, 2.0)])
def test_kl_beta_halves_below_and_doubles_above_the_target_band(kl, expected):
    assert adapt_kl_beta(1.0, kl, kl_target=0.01) == expected


def test_running_mean_std_merges_batches_like_one_pass():
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, size=(n, 3)) for n in (1, 7, 100, 13)]
    rms = RunningMeanStd((3,), epsilon=1e-12)
    for batch in batches:
        rms.update(batch)
    everything = np.concatenate(batches)
    np.testing.assert_allclose(rms.mean, everything.mean(0), rtol=1e-9)
    np.testing.assert_allclose(rms.var, everything.var(0), rtol=1e-9)
    restored = RunningMeanStd((3,))
    restored.load_state_dict(rms.state_dict())
    np.testing.assert_array_equal(restored.mean, rms.mean)
    assert restored.count == rms.count



@pytest.mark.parametrize("shape", [(3,), ()])
def test_running_mean_std_one_row_updates_equal_the_general_formula_to_the_bit(shape):
    # The one-env fast path must be the parallel formula with batch_mean = x and batch_var = 0.
    rng = np.random.default_rng(0)
    rms = RunningMeanStd(shape)
    mean, var, count = np.zeros(shape), np.ones(shape), 1e-4
    for _ in range(300):
        batch = rng.normal(3.0, 2.0, size=(1, *shape)) * rng.choice([0.1, 100.0])
        rms.update(batch)
        batch_mean = np.add.reduce(batch, axis=0) / 1
        batch_var = np.add.reduce(np.square(batch - batch_mean), axis=0) / 1
        delta, total = batch_mean - mean, count + 1
        mean = mean + delta * (1 / total)
        var = (var * count + batch_var * 1 + delta**2 * (count * 1 / total)) / total
        count = total
    assert np.array_equal(rms.mean, mean) and np.array_equal(rms.var, var) and rms.count == count

def test_diag_gaussian_matches_torch_distributions():
    torch.manual_seed(0)
    dist = DiagGaussian(3)
    old, new = torch.randn(5, 6), torch.randn(5, 6)
    actions = torch.randn(5, 3)
    reference_old = Normal(old[:, :3], old[:, 3:].exp())
    reference_new = Normal(new[:, :3], new[:, 3:].exp())
    torch.testing.assert_close(dist.log_prob(old, actions), reference_old.log_prob(actions).sum(-1))
    torch.testing.assert_close(dist.entropy(old), reference_old.entropy().sum(-1))
    torch.testing.assert_close(dist.kl(old, new), kl_divergence(reference_old, reference_new).sum(-1))



def test_diag_gaussian_log_prob_gradient_is_that_of_torch_distributions():
    # DiagGaussian.log_prob's backward is written out: d/dmean = z / std, d/dlog_std = z^2 - 1.
    torch.manual_seed(0)
    params = torch.randn(5, 6, dtype=torch.float64, requires_grad=True)
    actions = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(5, dtype=torch.float64)
    (DiagGaussian(3).log_prob(params, actions) * weights).sum().backward()
    reference_params = params.detach().clone().requires_grad_()
    reference_actions = actions.detach().clone().requires_grad_()
    reference = Normal(reference_params[:, :3], reference_params[:, 3:].exp())
    (reference.log_prob(reference_actions).sum(-1) * weights).sum().backward()
    torch.testing.assert_close(params.grad, reference_params.grad)
    torch.testing.assert_close(actions.grad, reference_actions.grad)
    assert torch.autograd.gradcheck(lambda p, a: DiagGaussian(3).log_prob(p, a), (params, actions))

def test_categorical_matches_torch_distributions():
    torch.manual_seed(0)
    dist = Categorical(4)
    old, new = torch.randn(5, 4), torch.randn(5, 4)
    actions = torch.tensor([0, 3, 2, 1, 3])
    torch.testing.assert_close(dist.log_prob(old, actions), TorchCategorical(logits=old).log_prob(actions))
    torch.testing.assert_close(dist.entropy(old), TorchCategorical(logits=old).entropy())
    torch.testing.assert_close(dist.kl(old, new),
                               kl_divergence(TorchCategorical(logits=old), TorchCategorical(logits=new)))


def test_flat_parameter_update_equals_per_tensor_clip_and_adam():
    torch.manual_seed(0)
    reference = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    fast = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    fast.load_state_dict(reference.state_dict())
    flat = flatten_parameters(fast)
    reference_opt = torch.optim.Adam(reference.parameters(), lr=1e-2, eps=1e-5, foreach=False)
    fast_opt = torch.optim.Adam([flat], lr=1e-2, eps=1e-5, fused=True)
    for _ in range(5):
        x = torch.randn(16, 5)
        reference_opt.zero_grad()
        (reference(x).square().sum() * 10).backward()
        torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
        reference_opt.step()
        flat.grad.zero_()
        (fast(x).square().sum() * 10).backward()
        clip_grad_norm_(flat, 0.5)
        fast_opt.step()
    for p, q in zip(reference.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)
