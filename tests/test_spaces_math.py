"""The MultiDiscrete and MultiBinary policy distributions (rlrun.nets.discrete_distributions): log-probs,
entropies and KL divergences summed over dimensions, worked by hand and against torch.distributions;
acting in numpy samples from the same distribution and records the same log-probs."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch import distributions as D

from rlrun.config import ConfigError
from rlrun.nets.discrete_distributions import Bernoulli, MultiCategorical
from rlrun.nets.distributions import Categorical, DiagGaussian, distribution_for

LN2, LN3 = math.log(2), math.log(3)


def test_distribution_for_each_action_space():
    assert isinstance(distribution_for(gym.spaces.Discrete(4)), Categorical)
    assert isinstance(distribution_for(gym.spaces.Box(-1, 1, (2,))), DiagGaussian)
    multi = distribution_for(gym.spaces.MultiDiscrete([3, 2]))
    assert isinstance(multi, MultiCategorical) and multi.num_params == 5 and multi.action_dim == 2
    bits = distribution_for(gym.spaces.MultiBinary(3))
    assert isinstance(bits, Bernoulli) and bits.num_params == 3
    with pytest.raises(ConfigError, match="one dimension"):
        distribution_for(gym.spaces.MultiDiscrete([[2, 2], [2, 2]]))
    with pytest.raises(ConfigError, match="Discrete, MultiDiscrete, MultiBinary"):
        distribution_for(gym.spaces.Tuple([gym.spaces.Discrete(2)]))


# MultiDiscrete([3, 2]): dimension 0 with probabilities (1/4, 1/2, 1/4) (logits log 1, log 2, log 1),
# dimension 1 uniform (1/2, 1/2).
MULTI = MultiCategorical([3, 2])
MULTI_PARAMS = torch.tensor([[0.0, LN2, 0.0, 0.0, 0.0]])


def test_multi_categorical_by_hand():
    # log pi((1, 0)) = log 1/2 + log 1/2
    assert MULTI.log_prob(MULTI_PARAMS, torch.tensor([[1, 0]])).item() == pytest.approx(-2 * LN2)
    # log pi((2, 1)) = log 1/4 + log 1/2
    assert MULTI.log_prob(MULTI_PARAMS, torch.tensor([[2, 1]])).item() == pytest.approx(-3 * LN2)
    # H = H(1/4, 1/2, 1/4) + H(1/2, 1/2) = 1.5 ln 2 + ln 2
    assert MULTI.entropy(MULTI_PARAMS).item() == pytest.approx(2.5 * LN2)
    # KL against (1/3, 1/3, 1/3) x (1/2, 1/2): 2 * 1/4 ln(3/4) + 1/2 ln(3/2) + 0 = 1/2 ln(9/8)
    uniform = torch.zeros(1, 5)
    assert MULTI.kl(MULTI_PARAMS, uniform).item() == pytest.approx(0.5 * math.log(9 / 8))
    assert MULTI.mode(MULTI_PARAMS).tolist() == [[1, 0]]


# MultiBinary(3): logits (0, ln 3, -ln 3), so p(bit = 1) = (1/2, 3/4, 1/4).
BITS = Bernoulli(3)
BIT_PARAMS = torch.tensor([[0.0, LN3, -LN3]])


def test_bernoulli_by_hand():
    # log pi((1, 1, 0)) = log 1/2 + log 3/4 + log 3/4 = log 9/32
    assert BITS.log_prob(BIT_PARAMS, torch.tensor([[1, 1, 0]])).item() == pytest.approx(math.log(9 / 32))
    # log pi((0, 0, 1)) = log 1/2 + log 1/4 + log 1/4
    assert BITS.log_prob(BIT_PARAMS, torch.tensor([[0, 0, 1]])).item() == pytest.approx(math.log(1 / 32))
    # H = ln 2 + 2 H(3/4), H(3/4) = -(3/4 ln 3/4 + 1/4 ln 1/4) = 2 ln 2 - 3/4 ln 3
    assert BITS.entropy(BIT_PARAMS).item() == pytest.approx(5 * LN2 - 1.5 * LN3)
    # KL against p = 1/2 everywhere: 0 + 2 (3/4 ln(3/2) + 1/4 ln(1/2)) = 1.5 ln 3 - 2 ln 2
    assert BITS.kl(BIT_PARAMS, torch.zeros(1, 3)).item() == pytest.approx(1.5 * LN3 - 2 * LN2)
    assert BITS.mode(BIT_PARAMS).tolist() == [[0, 1, 0]]  # sigmoid(0) = 1/2 is not above 1/2


def reference_multi(params: torch.Tensor) -> list[D.Categorical]:
    return [D.Categorical(logits=logits) for logits in MULTI.split(params)]


def test_against_torch_distributions():
    generator = torch.Generator().manual_seed(0)
    params = torch.randn(64, 5, generator=generator, dtype=torch.float64) * 2
    other = torch.randn(64, 5, generator=generator, dtype=torch.float64) * 2
    actions = MULTI.sample(params, generator)
    assert actions.shape == (64, 2) and (actions[:, 0] < 3).all() and (actions[:, 1] < 2).all()
    ref, ref_other = reference_multi(params), reference_multi(other)
    torch.testing.assert_close(MULTI.log_prob(params, actions),
                               sum(d.log_prob(actions[:, i]) for i, d in enumerate(ref)))
    torch.testing.assert_close(MULTI.entropy(params), sum(d.entropy() for d in ref))
    torch.testing.assert_close(MULTI.kl(params, other),
                               sum(D.kl_divergence(p, q) for p, q in zip(ref, ref_other)))

    logits = torch.randn(64, 3, generator=generator, dtype=torch.float64) * 2
    logits_other = torch.randn(64, 3, generator=generator, dtype=torch.float64) * 2
    bits = BITS.sample(logits, generator)
    ref_bits = D.Independent(D.Bernoulli(logits=logits), 1)
    torch.testing.assert_close(BITS.log_prob(logits, bits), ref_bits.log_prob(bits.double()))
    torch.testing.assert_close(BITS.entropy(logits), ref_bits.entropy())
    torch.testing.assert_close(BITS.kl(logits, logits_other),
                               D.kl_divergence(ref_bits, D.Independent(D.Bernoulli(logits=logits_other), 1)))


@pytest.mark.parametrize("dist, params", [(MULTI, MULTI_PARAMS), (BITS, BIT_PARAMS)], ids=["multi_discrete", "multi_binary"])
def test_numpy_acting_samples_the_distribution_and_records_its_log_probs(dist, params):
    """What a rollout does (rlrun.algos.onpolicy.collect_rollout): noise for every step, actions from it,
    log-probs once; frequencies match the probabilities worked by hand above."""
    generator = torch.Generator().manual_seed(1)
    n = 40_000
    batch = np.repeat(params.numpy(), n, 0)
    noise = dist.noise((n,), generator)
    actions = dist.sample_from_noise(batch, noise)
    log_probs = dist.log_prob_from_noise(batch, actions, noise)
    np.testing.assert_allclose(log_probs, dist.log_prob(torch.from_numpy(batch), torch.from_numpy(actions)).numpy(),
                               rtol=1e-5, atol=1e-5)
    if dist is MULTI:
        np.testing.assert_allclose(np.bincount(actions[:, 0], minlength=3) / n, [0.25, 0.5, 0.25], atol=0.01)
        np.testing.assert_allclose(np.bincount(actions[:, 1], minlength=2) / n, [0.5, 0.5], atol=0.01)
    else:
        np.testing.assert_allclose(actions.mean(0), [0.5, 0.75, 0.25], atol=0.01)
    # act(): a sample and its log-prob in one call
    acted, acted_log_probs = dist.act(batch[:5], torch.Generator().manual_seed(1))
    np.testing.assert_allclose(acted_log_probs, dist.log_prob(torch.from_numpy(batch[:5]), torch.from_numpy(acted)),
                               rtol=1e-5, atol=1e-5)
