"""Action distributions as stateless families of functions of a parameter tensor.

A policy network outputs one flat tensor of distribution parameters per state; these families turn
it into samples, log-probabilities, entropies and KL divergences. Keeping parameters as plain tensors
(rather than torch.distributions objects) lets rollouts store them for an exact KL[pi_old, pi] and
costs no per-call object construction or argument validation.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch.autograd.function import once_differentiable

LOG_2PI = math.log(2 * math.pi)


class DiagGaussian:
    """Independent Gaussian per action dimension; parameters are [mean, log_std] concatenated."""

    def __init__(self, action_dim: int):
        self.action_dim = action_dim
        self.num_params = 2 * action_dim

    def split(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return params[..., : self.action_dim], params[..., self.action_dim :]

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        mean, log_std = self.split(params)
        noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype, device=mean.device)
        return mean + log_std.exp() * noise

    # Acting, in numpy: a sample is a deterministic function of noise drawn from the torch generator
    # (one RNG state covers the run), so a rollout draws all its noise in one call.

    def noise(self, batch_shape: tuple[int, ...], generator: torch.Generator) -> np.ndarray:
        """Standard normal noise for `batch_shape` samples."""
        return torch.randn(batch_shape + (self.action_dim,), generator=generator).numpy()

    def sample_from_noise(self, params: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """a = mean + std * noise."""
        return params[..., : self.action_dim] + np.exp(params[..., self.action_dim :]) * noise

    def log_prob_from_noise(self, params: np.ndarray, actions: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """log pi(a) of samples drawn from `noise`: for a fresh sample, (a - mean) / std is the noise itself."""
        log_std = params[..., self.action_dim :]
        log_prob = (-0.5 * np.square(noise) - log_std).sum(-1) - 0.5 * LOG_2PI * self.action_dim
        return log_prob.astype(np.float32)

    def act(self, params: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A sample and its log-probability, in numpy."""
        noise = self.noise(params.shape[:-1], generator)
        actions = self.sample_from_noise(params, noise)
        return actions, self.log_prob_from_noise(params, actions, noise)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return self.split(params)[0]

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """sum_i -z_i^2 / 2 - log std_i - log(2 pi) / 2, with z = (a - mean) / std."""
        return _GaussianLogProb.apply(params, actions)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        log_std = self.split(params)[1]
        return log_std.sum(-1) + 0.5 * (1.0 + LOG_2PI) * self.action_dim

    def kl(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """KL[old || new], summed over action dimensions."""
        mean0, log_std0 = self.split(old)
        mean1, log_std1 = self.split(new)
        var_ratio = torch.exp(2 * (log_std0 - log_std1))
        mean_term = (mean0 - mean1).square() * torch.exp(-2 * log_std1)
        return 0.5 * (var_ratio + mean_term - 1).sum(-1) + (log_std1 - log_std0).sum(-1)


class _GaussianLogProb(torch.autograd.Function):
    """DiagGaussian.log_prob with its gradient written out, one autograd node instead of ten (an
    update of a small network is bound by per-op overhead): with z = (a - mean) / std,

        d log pi / d mean = z / std,     d log pi / d log std = z^2 - 1.
    """

    @staticmethod
    def forward(ctx, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        action_dim = params.shape[-1] // 2
        mean, log_std = params[..., :action_dim], params[..., action_dim:]
        inv_std = torch.exp(-log_std)
        z = (actions - mean) * inv_std
        ctx.save_for_backward(z, inv_std)
        return (-0.5 * z.square() - log_std).sum(-1) - 0.5 * LOG_2PI * action_dim

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        z, inv_std = ctx.saved_tensors
        grad = grad.unsqueeze(-1)
        grad_mean = grad * z * inv_std
        return torch.cat([grad_mean, grad * (z.square() - 1)], -1), -grad_mean if ctx.needs_input_grad[1] else None


class StateDependentGaussian(DiagGaussian):
    """Generalized State-Dependent Exploration, gSDE (Raffin, Kober & Stulp 2021, "Smooth Exploration
    for Robotic Reinforcement Learning").

    The exploration noise is a linear function of the policy's features phi(s) (its last hidden layer):

        a = mu(s) + eps(s),   eps(s) = phi(s)^T theta_eps,   theta_eps[j, i] ~ N(0, sigma_ji^2),

    with theta_eps (feature_dim x action_dim) held fixed between resamplings (`sample_freq`): for a
    fixed matrix the action is a deterministic function of the state, so exploration is smooth in
    time instead of white noise per step. At a state, a is Gaussian with independent dimensions and

        Var[a_i | s] = sum_j phi_j(s)^2 sigma_ji^2      (+ 1e-6, as SB3, which keeps log std finite at phi = 0),

    so the distribution's parameters per state are DiagGaussian's, [mu(s), log std_i(s)], and its
    log-probability, entropy, mode and KL are DiagGaussian's. The learned parameter is log sigma, one per
    (feature, action) entry (SB3's full_std); sigma = exp(log sigma), or with `use_expln` SB3's expln
    (exp below 0, log1p(x) + 1 above: sigma stays positive and grows slowly). phi is detached in the
    variance (SB3's learn_features=False): the noise scale is learned through sigma alone.
    """

    EPSILON = 1e-6

    def __init__(self, action_dim: int, feature_dim: int, sample_freq: int = -1, use_expln: bool = False):
        super().__init__(action_dim)
        self.feature_dim = feature_dim
        self.sample_freq = sample_freq  # -1: one matrix per rollout; n > 0: a new one every n steps
        self.use_expln = use_expln

    def weight_std(self, log_sigma: torch.Tensor) -> torch.Tensor:
        """sigma (feature_dim, action_dim), the standard deviation of each entry of theta_eps."""
        if not self.use_expln:
            return log_sigma.exp()
        # Each branch on its own side of 0 only, so that neither overflows nor takes log1p of < -1.
        return torch.where(log_sigma <= 0, log_sigma.clamp(max=0).exp(), torch.log1p(log_sigma.clamp(min=0)) + 1)

    def state_log_std(self, features: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
        """log std_i(s) = 1/2 log(sum_j phi_j(s)^2 sigma_ji^2 + eps), for features (B, feature_dim)."""
        variance = features.square() @ self.weight_std(log_sigma).square()
        return 0.5 * torch.log(variance + self.EPSILON)

    def params(self, mean: torch.Tensor, features: torch.Tensor, log_sigma: torch.Tensor) -> torch.Tensor:
        """[mu(s), log std(s)]: the Gaussian the action has at s, with the features detached."""
        return torch.cat([mean, self.state_log_std(features.detach(), log_sigma)], -1)

    # Acting, in numpy: exploration matrices from the torch generator (one RNG state covers the run).

    def exploration_matrices(self, sigma: np.ndarray, count: int, generator: torch.Generator) -> np.ndarray:
        """`count` matrices theta_eps (count, feature_dim, action_dim), entries ~ N(0, sigma^2): one per env."""
        return sigma * torch.randn((count, self.feature_dim, self.action_dim), generator=generator).numpy()

    def sample_from_features(self, params: np.ndarray, features: np.ndarray, matrices: np.ndarray) -> np.ndarray:
        """a = mu(s) + phi(s)^T theta_eps, each env's row with its own matrix."""
        return params[..., : self.action_dim] + np.einsum("bf,bfa->ba", features, matrices)

    def log_prob_from_noise(self, params: np.ndarray, actions: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        """log N(a; mu(s), std(s)^2) of actions from `sample_from_features` (no noise array: z from a)."""
        log_std = params[..., self.action_dim :]
        z = (actions - params[..., : self.action_dim]) * np.exp(-log_std)
        log_prob = (-0.5 * np.square(z) - log_std).sum(-1) - 0.5 * LOG_2PI * self.action_dim
        return log_prob.astype(np.float32)

    # act() and sample() (evaluation with deterministic=False) are DiagGaussian's: a draw from the
    # Gaussian at s, the same law as phi(s)^T theta_eps with a fresh matrix.


class Categorical:
    """Softmax over `n` actions; parameters are the logits."""

    def __init__(self, n: int):
        self.n = n
        self.num_params = n

    def sample(self, params: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        probs = torch.softmax(params, -1).reshape(-1, self.n)
        return torch.multinomial(probs, 1, generator=generator).reshape(params.shape[:-1])

    # Acting, in numpy: inverse-CDF sampling from uniform noise drawn from the torch generator.

    def noise(self, batch_shape: tuple[int, ...], generator: torch.Generator) -> np.ndarray:
        """Uniform noise on [0, 1) for `batch_shape` samples."""
        return torch.rand(batch_shape, generator=generator, dtype=torch.float64).numpy()

    def sample_from_noise(self, params: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """The first action whose cumulative probability exceeds the noise."""
        cdf = np.cumsum(np.exp(params - params.max(-1, keepdims=True)), -1)
        return np.minimum((cdf < noise[..., None] * cdf[..., -1:]).sum(-1), self.n - 1)

    def log_prob_from_noise(self, params: np.ndarray, actions: np.ndarray, noise: np.ndarray) -> np.ndarray:
        """log softmax(params)[a]."""
        log_probs = params - params.max(-1, keepdims=True)
        log_probs = log_probs - np.log(np.exp(log_probs).sum(-1, keepdims=True))
        return np.take_along_axis(log_probs, actions[..., None], -1)[..., 0].astype(np.float32)

    def act(self, params: np.ndarray, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """A sample and its log-probability, in numpy."""
        noise = self.noise(params.shape[:-1], generator)
        actions = self.sample_from_noise(params, noise)
        return actions, self.log_prob_from_noise(params, actions, noise)

    def mode(self, params: torch.Tensor) -> torch.Tensor:
        return params.argmax(-1)

    def log_prob(self, params: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        log_probs = torch.log_softmax(params, -1)
        return log_probs.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    def entropy(self, params: torch.Tensor) -> torch.Tensor:
        log_probs = torch.log_softmax(params, -1)
        return -(log_probs.exp() * log_probs).sum(-1)

    def kl(self, old: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(old, -1)
        log_q = torch.log_softmax(new, -1)
        return (log_p.exp() * (log_p - log_q)).sum(-1)


def distribution_for(action_space: gym.Space):
    """The policy distribution for an action space: Categorical, DiagGaussian, or (rlrun.nets.
    discrete_distributions) MultiCategorical or Bernoulli."""
    from rlrun.config import ConfigError
    from rlrun.nets.discrete_distributions import Bernoulli, MultiCategorical

    if isinstance(action_space, gym.spaces.Discrete):
        return Categorical(int(action_space.n))
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return DiagGaussian(action_space.shape[0])
    if isinstance(action_space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)) and len(action_space.shape) != 1:
        raise ConfigError(f"action space {action_space}: rlrun's policies take {type(action_space).__name__} "
                          f"actions of one dimension (got shape {action_space.shape}); reshape them in a wrapper")
    if isinstance(action_space, gym.spaces.MultiDiscrete):
        return MultiCategorical(action_space.nvec.tolist())
    if isinstance(action_space, gym.spaces.MultiBinary):
        return Bernoulli(int(action_space.shape[0]))
    raise ConfigError(f"no policy distribution for action space {action_space}: rlrun's policies act in Discrete, "
                      "MultiDiscrete, MultiBinary and one-dimensional Box spaces")
