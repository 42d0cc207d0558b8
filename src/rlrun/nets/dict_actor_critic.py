"""Dict observations: one encoder per key, concatenated, then the actor and critic MLPs.

The encoder follows SB3's CombinedExtractor: an image key (3 dimensions, channels first: rlrun.envs.
spaces transposes channels-last ones) goes through its own Nature CNN (`network.image_features_dim`
features; pixels scaled by 1/255 inside it), every other key is flattened as it is, and the pieces
are concatenated in the Dict's key order. As in SB3's on-policy MultiInputPolicy, actor and critic
share the encoder and have separate MLP heads (`network.hidden_sizes`); learning and acting run in
torch (rlrun.nets.cnn_actor_critic.TorchActorCritic).
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from rlrun.config import ConfigError
from rlrun.nets.actor_critic import ActorCritic
from rlrun.nets.cnn import CNNConfig, NatureCNN
from rlrun.nets.distributions import DiagGaussian, distribution_for
from rlrun.nets.mlp import MLPConfig, mlp


class DictEncoder(nn.Module):
    """{key: batch} -> features (B, features_dim): a Nature CNN per image key, flatten for the others."""

    def __init__(self, space: gym.spaces.Dict, image_features_dim: int, ortho_init: bool):
        super().__init__()
        self.keys = list(space.spaces)
        self.cnns = nn.ModuleDict()
        self.features_dim = 0
        for key, sub in space.spaces.items():
            if len(sub.shape) == 3:
                self.cnns[key] = NatureCNN(sub.shape, CNNConfig(image_features_dim, ortho_init), what=f"Dict key {key!r}")
                self.features_dim += image_features_dim
            else:
                self.features_dim += int(torch.Size(sub.shape).numel())

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.cnns[key](obs[key]) if key in self.cnns else obs[key].float().flatten(1)
                          for key in self.keys], -1)


class DictActorCritic(ActorCritic):
    """pi(a|s) and V(s) for Dict observations: a shared DictEncoder, separate MLP heads."""

    def __init__(self, observation_space: gym.spaces.Dict, action_space: gym.Space, cfg: MLPConfig):
        nn.Module.__init__(self)  # not ActorCritic's: it builds two MLPs on a flat input
        if not isinstance(cfg, MLPConfig) or cfg.batch_norm:
            raise ConfigError("Dict observations take network=mlp (without batch_norm): its MLPs read the "
                              "concatenated features of every key, a Nature CNN encoding each image key")
        self.dist = distribution_for(action_space)
        gaussian = isinstance(self.dist, DiagGaussian)
        self.encoder = DictEncoder(observation_space, cfg.image_features_dim, cfg.ortho_init)
        # The encoder is one module held by both Sequentials: parameters() counts it once.
        self.actor = nn.Sequential(self.encoder, mlp(self.encoder.features_dim, cfg,
                                                     self.dist.action_dim if gaussian else self.dist.num_params, 0.01))
        self.critic = nn.Sequential(self.encoder, mlp(self.encoder.features_dim, cfg, 1, 1.0))
        self.log_std = nn.Parameter(torch.full((self.dist.action_dim,), cfg.log_std_init)) if gaussian else None
        self.shared_torso = True

    def forward(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Distribution parameters and V(s), the encoder run once for both heads."""
        features = self.encoder(obs)
        out = self.actor[1](features)
        params = out if self.log_std is None else torch.cat([out, self.log_std.expand_as(out)], -1)
        return params, self.critic[1](features).squeeze(-1)
