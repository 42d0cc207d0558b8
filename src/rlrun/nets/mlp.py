"""Multi-layer perceptron torsos with orthogonal initialisation."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import nn

from rlrun.config import ConfigError, from_config, one_of, rule

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


@dataclass
class MLPConfig:
    hidden_sizes: list[int]
    activation: str = rule(one_of(*ACTIVATIONS))
    ortho_init: bool
    log_std_init: float


def network_config(cfg) -> MLPConfig:
    net = from_config(MLPConfig, cfg, "network")
    if not net.hidden_sizes or min(net.hidden_sizes) <= 0:
        raise ConfigError(f"network.hidden_sizes must be a non-empty list of positive ints (got {net.hidden_sizes})")
    return net


def linear(in_dim: int, out_dim: int, gain: float, ortho_init: bool) -> nn.Linear:
    layer = nn.Linear(in_dim, out_dim)
    if ortho_init:
        # Orthogonal weights, zero biases: the initialisation of OpenAI baselines that PPO's MuJoCo
        # results depend on (Engstrom et al. 2020, "Implementation Matters").
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
    return layer


def mlp(in_dim: int, cfg: MLPConfig, out_dim: int, out_gain: float) -> nn.Sequential:
    """in_dim -> hidden_sizes (with activation) -> out_dim (linear)."""
    layers: list[nn.Module] = []
    sizes = [in_dim, *cfg.hidden_sizes]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [linear(a, b, math.sqrt(2), cfg.ortho_init), ACTIVATIONS[cfg.activation]()]
    layers.append(linear(sizes[-1], out_dim, out_gain, cfg.ortho_init))
    return nn.Sequential(*layers)
