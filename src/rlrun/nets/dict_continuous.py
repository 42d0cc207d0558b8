"""SAC's networks on Dict observations: rlrun.nets.continuous's actor and twin critics, each reading
the observation through its own per-key encoder (rlrun.nets.dict_encoder).

As SB3's SAC with its MultiInputPolicy (share_features_extractor=False): the actor has one
CombinedExtractor, the critics another, which both Q-functions read (SB3's ContinuousCritic gives its
Q-networks one extractor), and the target critics a copy of it that follows by Polyak averaging. The
critics' encoder learns from the critics' loss only, the actor's from the actor's loss only. For vector
keys the encoders have no parameters and the split costs nothing; for image keys each network trains
its own CNN on its own loss.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from rlrun.nets.continuous import SquashedGaussianActor, TwinQ
from rlrun.nets.dict_encoder import DictEncoder, check_dict_network
from rlrun.nets.mlp import MLPConfig


class DictSquashedGaussianActor(SquashedGaussianActor):
    """pi(a|s) on Dict observations: a DictEncoder, then SquashedGaussianActor's MLP on its features."""

    def __init__(self, observation_space: gym.spaces.Dict, action_space: gym.Space, cfg: MLPConfig):
        check_dict_network(cfg)
        encoder = DictEncoder(observation_space, cfg.image_features_dim, cfg.ortho_init)
        super().__init__(encoder.features_dim, action_space, cfg)
        self.encoder = encoder

    def dist_params(self, obs: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        return super().dist_params(self.encoder(obs))


class DictTwinQ(nn.Module):
    """[Q1; Q2](s, a) on Dict observations: one DictEncoder, then TwinQ on its features and the action.

    Its parameters are the encoder's, then TwinQ's; checkpoints name them encoder.*, twin.q1.*, twin.q2.*
    (TwinQ's own layout). The critics' backward goes through autograd (no written-out backward)."""

    has_manual_backward = False

    def __init__(self, observation_space: gym.spaces.Dict, action_dim: int, cfg: MLPConfig):
        super().__init__()
        check_dict_network(cfg)
        self.encoder = DictEncoder(observation_space, cfg.image_features_dim, cfg.ortho_init)
        self.twin = TwinQ(self.encoder.features_dim, action_dim, cfg)

    def forward(self, obs: dict[str, torch.Tensor], action: torch.Tensor) -> torch.Tensor:
        return self.twin(self.encoder(obs), action)

    def checkpoint_order(self) -> torch.Tensor:
        """TwinQ.checkpoint_order after the encoder's entries (which keep their place)."""
        encoder_size = sum(p.numel() for p in self.encoder.parameters())
        return torch.cat([torch.arange(encoder_size), encoder_size + self.twin.checkpoint_order()])
