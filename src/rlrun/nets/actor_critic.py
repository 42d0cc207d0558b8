"""Separate actor and critic MLPs: a policy pi(a|s) and a state-value function V(s)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlrun.config import ConfigError
from rlrun.nets.distributions import DiagGaussian, distribution_for
from rlrun.nets.mlp import MLPConfig, mlp
from rlrun.nets.numpy_mlp import NumpyMLP


class ActorCritic(nn.Module):
    def __init__(self, observation_space: gym.Space, action_space: gym.Space, cfg: MLPConfig):
        super().__init__()
        if not isinstance(cfg, MLPConfig) or cfg.batch_norm:
            # The acting copy (NumpyActorCritic) computes plain Linear/activation stacks.
            raise ConfigError("the on-policy actor-critics take network=mlp without batch_norm; "
                              "use network=mlp network.batch_norm=false")
        obs_dim = int(np.prod(observation_space.shape))
        self.dist = distribution_for(action_space)
        gaussian = isinstance(self.dist, DiagGaussian)
        # Small policy-output gain: initial actions near zero mean with equal logits (Andrychowicz
        # et al. 2021, "What Matters in On-Policy RL", recommends 0.01).
        self.actor = mlp(obs_dim, cfg, self.dist.action_dim if gaussian else self.dist.n, out_gain=0.01)
        self.critic = mlp(obs_dim, cfg, 1, out_gain=1.0)
        # State-independent log standard deviation, learned (PPO paper, section 6.1).
        self.log_std = nn.Parameter(torch.full((self.dist.action_dim,), cfg.log_std_init)) if gaussian else None

    def dist_params(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.actor(obs)
        if self.log_std is None:
            return out
        return torch.cat([out, self.log_std.expand_as(out)], -1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)


class NumpyActorCritic:
    """A frozen numpy copy of an ActorCritic for acting (see numpy_mlp); `refresh()` after updates."""

    def __init__(self, net: ActorCritic):
        self.net = net
        self.actor = NumpyMLP(net.actor)
        self.critic = NumpyMLP(net.critic)
        self.refresh()

    def refresh(self) -> None:
        self.actor.refresh()
        self.critic.refresh()
        self.log_std = None if self.net.log_std is None else self.net.log_std.detach().cpu().numpy().copy()

    def dist_params(self, obs: np.ndarray) -> np.ndarray:
        out = self.actor(obs)
        if self.log_std is None:
            return out
        params = np.empty(out.shape[:-1] + (2 * out.shape[-1],), out.dtype)
        params[..., : out.shape[-1]] = out
        params[..., out.shape[-1] :] = self.log_std
        return params

    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.critic(obs)[..., 0]
