"""Separate actor and critic MLPs: a policy pi(a|s) and a state-value function V(s)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlrun.config import ConfigError
from rlrun.nets.cnn import CNNConfig
from rlrun.nets.distributions import DiagGaussian, StateDependentGaussian, distribution_for
from rlrun.nets.mlp import MLPConfig, mlp
from rlrun.nets.numpy_mlp import numpy_layers


class ActorCritic(nn.Module):
    """pi(a|s) and V(s). A Gaussian policy's log std is one learned parameter per action dimension, or
    with `use_sde` gSDE's log sigma per (last hidden unit, action dimension): the action's std then
    depends on the state (rlrun.nets.distributions.StateDependentGaussian)."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, cfg: MLPConfig, use_sde: bool = False,
                 sde_sample_freq: int = -1, sde_use_expln: bool = False):
        super().__init__()
        if isinstance(cfg, CNNConfig):
            raise ConfigError("network=cnn: the CNN actor-critic is PPO's and A2C's (algo=ppo, algo=a2c); "
                              "this algorithm takes network=mlp")
        if not isinstance(cfg, MLPConfig) or cfg.batch_norm:
            # The acting copy (NumpyActorCritic) computes plain Linear/activation stacks.
            raise ConfigError("the on-policy actor-critics take network=mlp without batch_norm; "
                              "use network=mlp network.batch_norm=false")
        if isinstance(observation_space, gym.spaces.Dict):
            raise ConfigError("Dict observations are read by the Dict actor-critic of algo=ppo, ppo_kl and a2c "
                              "(or flatten them with env.wrappers=[gymnasium.wrappers.FlattenObservation])")
        if len(observation_space.shape) == 3:
            raise ConfigError(f"image observations of shape {observation_space.shape} need network=cnn "
                              "(with algo=ppo or algo=a2c)")
        obs_dim = int(np.prod(observation_space.shape))
        self.dist = distribution_for(action_space)
        gaussian = isinstance(self.dist, DiagGaussian)
        if use_sde and not gaussian:
            raise ConfigError(f"algo.use_sde=true: gSDE explores continuous (Box) actions, not {action_space}; "
                              "set algo.use_sde=false")
        if use_sde:
            self.dist = StateDependentGaussian(self.dist.action_dim, cfg.hidden_sizes[-1], sde_sample_freq,
                                               sde_use_expln)
        # Small policy-output gain: initial actions near zero mean with equal logits (Andrychowicz
        # et al. 2021, "What Matters in On-Policy RL", recommends 0.01).
        self.actor = mlp(obs_dim, cfg, self.dist.action_dim if gaussian else self.dist.num_params, out_gain=0.01)
        self.critic = mlp(obs_dim, cfg, 1, out_gain=1.0)
        # State-independent log standard deviation, learned (PPO paper, section 6.1); with gSDE, log sigma
        # of the exploration matrix's entries (network.log_std_init sets both, as SB3's log_std_init).
        self.log_std = None
        if gaussian:
            shape = (self.dist.feature_dim, self.dist.action_dim) if use_sde else (self.dist.action_dim,)
            self.log_std = nn.Parameter(torch.full(shape, cfg.log_std_init))

    @property
    def use_sde(self) -> bool:
        return isinstance(self.dist, StateDependentGaussian)

    def dist_params(self, obs: torch.Tensor) -> torch.Tensor:
        if self.use_sde:
            features = self.actor[:-1](obs)
            return self.head_params(self.actor[-1](features), features)
        return self.head_params(self.actor(obs))

    def head_params(self, out: torch.Tensor, features: torch.Tensor | None = None) -> torch.Tensor:
        """The distribution's parameters from the actor's output (and, for gSDE, its last hidden layer)."""
        if self.log_std is None:
            return out
        if self.use_sde:
            return self.dist.params(out, features, self.log_std)
        return torch.cat([out, self.log_std.expand_as(out)], -1)

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs).squeeze(-1)


class NumpyActorCritic:
    """A frozen numpy copy of an ActorCritic for acting (see numpy_mlp); `refresh()` after updates.

    Actor and critic run as one network, as in rlrun.nets.merged: each layer's two weight matrices
    stacked along a leading axis of 2, so a step costs one matmul per layer for both. The output
    layers write into [policy output, log std, value] columns (zeros elsewhere) and are summed: the
    distribution parameters come out whole, the state-independent log std as a bias, and the zero
    entries add exact zeros. With gSDE the log std columns are computed from the actor's last hidden
    layer phi(s), which `dist_params_value_features` also returns for the noise phi(s)^T theta_eps.
    """

    def __init__(self, net: ActorCritic):
        self.net = net
        self.num_params = net.dist.num_params
        self.refresh()

    def refresh(self) -> None:
        actor, self.activation = numpy_layers(self.net.actor)
        critic, _ = numpy_layers(self.net.critic)
        # (weights (2, in, out), biases (2, 1, out)) per hidden layer.
        self.hidden = [(np.stack([wa, wc]), np.stack([ba, bc])[:, None])
                       for (wa, ba), (wc, bc) in zip(actor[:-1], critic[:-1])]
        (actor_weight, actor_bias), (critic_weight, critic_bias) = actor[-1], critic[-1]
        self.head = np.zeros((2, actor_weight.shape[0], self.num_params + 1), np.float32)
        self.head[0, :, : actor_bias.shape[0]] = actor_weight
        self.head[1, :, -1:] = critic_weight
        log_std = [] if self.net.log_std is None else [self.net.log_std.detach().cpu().numpy()]
        self.sigma = None
        if self.net.use_sde:
            # The log std columns depend on the state: zero bias there, filled in per state below.
            self.sigma = self.net.dist.weight_std(self.net.log_std.detach()).cpu().numpy()
            self.sigma_squared = np.square(self.sigma)
            log_std = [np.zeros(self.net.dist.action_dim, np.float32)]
        self.head_bias = np.concatenate([actor_bias, *log_std, critic_bias])

    def dist_params_value_features(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """pi's parameters, V(s) and the actor's last hidden layer phi(s)."""
        x = obs  # (B, obs_dim) @ (2, obs_dim, width): both stacks read the same states
        for weight, bias in self.hidden:
            x = self.activation(x @ weight + bias)
        y = x @ self.head
        out = y[0] + y[1] + self.head_bias
        params, features = out[..., : self.num_params], x[0]
        if self.sigma is not None:  # gSDE: log std_i(s) = 1/2 log(sum_j phi_j^2 sigma_ji^2 + eps)
            action_dim = self.net.dist.action_dim
            params[..., action_dim:] = 0.5 * np.log(np.square(features) @ self.sigma_squared + self.net.dist.EPSILON)
        return params, out[..., self.num_params], features

    def dist_params_and_value(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.dist_params_value_features(obs)[:2]

    def exploration_matrices(self, count: int, generator: torch.Generator) -> np.ndarray:
        """gSDE: fresh theta_eps for `count` envs, with the current sigma."""
        return self.net.dist.exploration_matrices(self.sigma, count, generator)

    def dist_params(self, obs: np.ndarray) -> np.ndarray:
        return self.dist_params_and_value(obs)[0]

    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.dist_params_and_value(obs)[1]
