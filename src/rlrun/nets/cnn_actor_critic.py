"""The actor-critic of PPO's Atari experiments (Schulman et al. 2017, section 6.2; OpenAI baselines'
`cnn` policy, CleanRL's ppo_atari): one Nature CNN torso (Mnih et al. 2015) whose 512 features feed
a categorical policy head (orthogonal init, gain 0.01: near-uniform initial logits) and a value head
(gain 1). Pixels arrive as uint8 and are scaled by 1/255 inside the torso, on the network's device.

`CNNActorCritic` is an ActorCritic (`actor` = torso + policy head, `critic` = the same torso + value
head, as A2C's `shared_torso`), so checkpoints, `dist_params`/`value` and rlrun-eval's export treat it
like the MLP one. `TorchActorCritic` gives it the interface the on-policy algorithms use for the MLP
(rlrun.nets.merged for learning, NumpyActorCritic for acting): pi and V in one pass, the parameters
one flat buffer, numpy in and out for acting. A CNN forward is real work, so acting stays in torch
on the learner's device, where the rollout's uint8 batch goes in one transfer per step.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlrun.config import ConfigError
from rlrun.nets.actor_critic import ActorCritic
from rlrun.nets.cnn import CNNConfig, NatureCNN
from rlrun.nets.distributions import DiagGaussian, distribution_for
from rlrun.nets.flat import flatten_parameters
from rlrun.nets.mlp import linear


class CNNActorCritic(ActorCritic):
    """pi(a|s) and V(s) on a shared Nature CNN torso, for image observations and discrete actions."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, cfg: CNNConfig):
        nn.Module.__init__(self)  # not ActorCritic's: it builds two MLPs
        self.dist = distribution_for(action_space)
        if isinstance(self.dist, DiagGaussian):
            raise ConfigError(f"network=cnn has a policy head for discrete actions (Discrete, MultiDiscrete, "
                              f"MultiBinary); got {action_space}")
        torso = NatureCNN(observation_space.shape, cfg)
        # The torso is one module held by both Sequentials: parameters() counts it once (and so does the
        # flat buffer); a checkpoint names it twice (actor.0, critic.0) but torch.save writes it once.
        self.actor = nn.Sequential(torso, linear(cfg.features_dim, self.dist.num_params, 0.01, cfg.ortho_init))
        self.critic = nn.Sequential(torso, linear(cfg.features_dim, 1, 1.0, cfg.ortho_init))
        self.log_std = None
        self.shared_torso = True

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits (B, |A|) and V(s) (B,), the torso computed once for both heads."""
        features = self.actor[0](obs)
        return self.actor[1](features), self.critic[1](features).squeeze(-1)


class TorchActorCritic:
    """A torch actor-critic (`net(obs)` -> (dist params, values)) with the interface of
    MergedActorCritic (learning) and NumpyActorCritic (acting).

    Construction re-seats `net`'s parameters (moved to their device beforehand) as views of `self.flat`
    (rlrun.nets.flat): give `flat` to the optimiser and the gradient clip. Acting reads those same
    parameters, so `refresh()` has nothing to copy.
    """

    def __init__(self, net: nn.Module):
        self.net = net
        self.flat = flatten_parameters(net)
        self.device = self.flat.device

    def __call__(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The minibatch pass, with autograd: distribution parameters (B, num_params) and V(s) (B,)."""
        return self.net(obs)

    def refresh(self) -> None:
        """Nothing to do: acting uses the learner's parameters themselves."""

    @torch.inference_mode()
    def dist_params_and_value(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # One transfer in (the observations as they are: uint8 pixels, 4x fewer bytes than float32) and
        # one out (parameters and values side by side).
        params, values = self.net(to_tensor(obs, self.device))
        out = torch.cat([params, values[:, None]], 1).cpu().numpy()
        return out[:, :-1], out[:, -1]

    def dist_params(self, obs: np.ndarray) -> np.ndarray:
        return self.dist_params_and_value(obs)[0]

    def value(self, obs: np.ndarray) -> np.ndarray:
        return self.dist_params_and_value(obs)[1]


def to_tensor(obs: np.ndarray | dict[str, np.ndarray], device: torch.device) -> torch.Tensor | dict[str, torch.Tensor]:
    """Numpy observations (a dict of arrays for Dict spaces) as tensors on `device`, dtypes kept."""
    if isinstance(obs, dict):
        return {key: torch.from_numpy(value).to(device) for key, value in obs.items()}
    return torch.from_numpy(obs).to(device)
