"""Multi-layer perceptron torsos with orthogonal initialisation."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from torch import nn

from rlrun.config import POSITIVE, ConfigError, from_config, one_of, rule
from rlrun.nets.cnn import CNNConfig

ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


@dataclass
class MLPConfig:
    hidden_sizes: list[int]
    activation: str = rule(one_of(*ACTIVATIONS))
    ortho_init: bool
    log_std_init: float
    # DDPG's batch normalisation (Lillicrap et al. 2015): on the input and every hidden layer. Off by
    # default; the numpy acting copies of the on-policy algorithms do not support it.
    batch_norm: bool = False
    # Dict observations (rlrun.nets.dict_encoder): features of the Nature CNN that encodes each
    # image key (SB3's CombinedExtractor: 256). A default, so network files without the key stay valid.
    image_features_dim: int = field(default=256, metadata={"rule": POSITIVE})


NETWORK_TYPES = ("mlp", "cnn")


def network_config(cfg) -> MLPConfig | CNNConfig:
    """The network group checked: an MLPConfig, or a CNNConfig for `type: cnn` (the `type` key picks
    the dataclass; a config without it is an MLP, as before the key existed)."""
    fields = {key: value for key, value in cfg.items() if key != "type"}
    kind = cfg.get("type", "mlp")
    if kind == "cnn":
        return from_config(CNNConfig, fields, "network")
    if kind != "mlp":
        raise ConfigError(f"network.type must be one of {', '.join(NETWORK_TYPES)} (got {kind!r})")
    net = from_config(MLPConfig, fields, "network")
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
    """in_dim -> hidden_sizes (with activation) -> out_dim (linear); with cfg.batch_norm, batch
    normalisation of the input and of each hidden layer before its activation (Ioffe & Szegedy 2015)."""
    layers: list[nn.Module] = [nn.BatchNorm1d(in_dim)] if cfg.batch_norm else []
    sizes = [in_dim, *cfg.hidden_sizes]
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers.append(linear(a, b, math.sqrt(2), cfg.ortho_init))
        if cfg.batch_norm:
            layers.append(nn.BatchNorm1d(b))
        layers.append(ACTIVATIONS[cfg.activation]())
    layers.append(linear(sizes[-1], out_dim, out_gain, cfg.ortho_init))
    return nn.Sequential(*layers)
