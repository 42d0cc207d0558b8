"""Dict observations: one encoder per key, concatenated (SB3's CombinedExtractor), for every algorithm
that reads them (rlrun.nets.dict_actor_critic for PPO and A2C, rlrun.nets.dict_continuous for SAC,
rlrun.nets.q for the DQN family).

An image key (3 dimensions, channels first: rlrun.envs.spaces transposes channels-last ones) goes
through its own Nature CNN (`network.image_features_dim` features; pixels scaled by 1/255 inside it),
every other key is flattened as it is, and the pieces are concatenated in the Dict's key order.
"""

from __future__ import annotations

import gymnasium as gym
import torch
from torch import nn

from rlrun.config import ConfigError
from rlrun.nets.cnn import CNNConfig, NatureCNN
from rlrun.nets.mlp import MLPConfig


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


def check_dict_network(cfg) -> None:
    """Dict observations are read by MLPs on the encoder's features: refuse network=cnn and batch norm."""
    if not isinstance(cfg, MLPConfig) or cfg.batch_norm:
        raise ConfigError("Dict observations take network=mlp (without batch_norm): its MLPs read the "
                          "concatenated features of every key, a Nature CNN encoding each image key")

