"""Policy distributions for MultiDiscrete and MultiBinary action spaces, in the interface of
rlrun.nets.distributions (stateless families of functions of a flat parameter tensor).

An action of these spaces is a vector of D independent choices, so the policy is a product of D
distributions: one categorical per dimension (MultiDiscrete), one Bernoulli per bit (MultiBinary).
For a product distribution

    log pi(a) = sum_d log pi_d(a_d),    H[pi] = sum_d H[pi_d],    KL[p || q] = sum_d KL[p_d || q_d],

the sums over dimensions that SB3's MultiCategoricalDistribution and BernoulliDistribution compute.
tests/test_spaces_math.py checks them against values worked by hand and against torch.distributions.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F


def _log_softmax_np(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


class MultiCategorical:
    """One softmax per dimension d over nvec[d] choices; parameters are the D logit vectors
    concatenated (sum(nvec) numbers); an action is D indices."""

    def __init__(self, nvec: list[int]):
        self.nvec = [int(n) for n in nvec]
        self.action_dim = len(self.nvec)
        self.num_params = sum(self.nvec)
        self.offsets = np.cumsum([0, *self.nvec])

    def split(self, params):
        """Each dimension's logits (torch or numpy)."""
        return [params[..., a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        samples = []
        for logits, n in zip(self.split(params), self.nvec):
            probs = torch.softmax(logits, -1).reshape(-1, n)
            samples.append(torch.multinomial(probs, 1, generator=generator).reshape(params.shape[:-1]))
        return torch.stack(samples, -1)

    # Acting, in numpy: inverse-CDF sampling per dimension from uniform noise drawn from the torch generator.

    def noise(self, batch_shape: tuple[int, ...], generator: torch.Generator) -> np.ndarray:
        return torch.rand(batch_shape + (self.action_dim,), generator=generator, dtype=torch.float64).numpy()

    def sample_from_noise(self, params: np.ndarray, noise: np.ndarray) -> np.ndarray:
        actions = []
        for d, (logits, n) in enumerate(zip(self.split(params), self.nvec)):
            cdf = np.cumsum(np.exp(logits - logits.max(-1, keepdims=True)), -1)
            actions.append(np.minimum((cdf < noise[..., d, None] * cdf[..., -1:]).sum(-1), n - 1))
        return np.stack(actions, -1)

    def log_prob_from_noise(self, params: np.ndarray, actions: np.ndarray, noise: np.ndarray) -> np.ndarray:
        total = 0.0
        for d, logits in enumerate(self.split(params)):
            total = total + np.take_along_axis(_log_softmax_np(logits), actions[..., d, None], -1)[..., 0]
        return np.asarray(total, np.float32)

    def act(self, params: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        noise = self.noise(params.shape[:-1], generator)
        actions = self.sample_from_noise(params, noise)
        return actions, self.log_prob_from_noise(params, actions, noise)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return torch.stack([logits.argmax(-1) for logits in self.split(params)], -1)

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """sum_d log softmax(logits_d)[a_d]."""
        actions = actions.long()
        return sum(torch.log_softmax(logits, -1).gather(-1, actions[..., d, None]).squeeze(-1)
                   for d, logits in enumerate(self.split(params)))

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        """sum_d -sum_k p_dk log p_dk."""
        total = 0
        for logits in self.split(params):
            log_p = torch.log_softmax(logits, -1)
            total = total - (log_p.exp() * log_p).sum(-1)
        return total

    def kl(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """sum_d KL[old_d || new_d]."""
        total = 0
        for logits_p, logits_q in zip(self.split(old), self.split(new)):
            log_p, log_q = torch.log_softmax(logits_p, -1), torch.log_softmax(logits_q, -1)
            total = total + (log_p.exp() * (log_p - log_q)).sum(-1)
        return total


class Bernoulli:
    """One Bernoulli per bit with p_d = sigmoid(l_d); parameters are the D logits; an action is D bits.
    With softplus(x) = log(1 + e^x), log sigmoid(l) = -softplus(-l) and log(1 - sigmoid(l)) = -softplus(l):

        log pi(a) = sum_d a_d l_d - softplus(l_d),     H = sum_d softplus(l_d) - p_d l_d.
    """

    def __init__(self, n: int):
        self.action_dim = n
        self.num_params = n

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        uniform = torch.rand(params.shape, generator=generator, dtype=params.dtype, device=params.device)
        return (uniform < torch.sigmoid(params)).long()

    def noise(self, batch_shape: tuple[int, ...], generator: torch.Generator) -> np.ndarray:
        return torch.rand(batch_shape + (self.action_dim,), generator=generator, dtype=torch.float64).numpy()

    def sample_from_noise(self, params: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """a_d = 1 where the noise falls below p_d."""
        return (noise < 1.0 / (1.0 + np.exp(-params.astype(np.float64)))).astype(np.int64)

    def log_prob_from_noise(self, params: np.ndarray, actions: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return (actions * params - np.logaddexp(0.0, params)).sum(-1).astype(np.float32)

    def act(self, params: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        noise = self.noise(params.shape[:-1], generator)
        actions = self.sample_from_noise(params, noise)
        return actions, self.log_prob_from_noise(params, actions, noise)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return (params > 0).long()

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return (actions.to(params.dtype) * params - F.softplus(params)).sum(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        return (F.softplus(params) - torch.sigmoid(params) * params).sum(-1)

    def kl(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """sum_d p log(p / q) + (1 - p) log((1 - p) / (1 - q)), p = sigmoid(old), q = sigmoid(new)."""
        p = torch.sigmoid(old)
        log_p, log_not_p = -F.softplus(-old), -F.softplus(old)
        log_q, log_not_q = -F.softplus(-new), -F.softplus(new)
        return (p * (log_p - log_q) + (1 - p) * (log_not_p - log_not_q)).sum(-1)
