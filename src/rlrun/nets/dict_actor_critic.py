"""Dict observations for the on-policy actor-critics: one encoder per key, concatenated
(rlrun.nets.dict_encoder, SB3's CombinedExtractor), then the actor and critic MLPs. As in SB3's
on-policy MultiInputPolicy, actor and critic share the encoder and have separate MLP heads
(`network.hidden_sizes`); learning and acting run in torch (rlrun.nets.cnn_actor_critic.TorchActorCritic).
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from rlrun.nets.actor_critic import ActorCritic
from rlrun.nets.dict_encoder import DictEncoder, check_dict_network
from rlrun.nets.distributions import DiagGaussian, distribution_for
from rlrun.nets.mlp import MLPConfig, mlp


class DictActorCritic(ActorCritic):
    """pi(a|s) and V(s) for Dict observations: a shared DictEncoder, separate MLP heads."""

    def __init__(self, observation_space: gym.spaces.Dict, action_space: gym.Space, cfg: MLPConfig):
        nn.Module.__init__(self)  # not ActorCritic's: it builds two MLPs on a flat input
        check_dict_network(cfg)
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
