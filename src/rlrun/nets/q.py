"""Action-value networks for discrete actions: a torso, then one output per action, Q(s, .).

Plain (Mnih et al. 2015): torso -> linear head with |A| outputs.
Dueling (Wang et al. 2016): torso -> a state-value stream V(s) and an advantage stream A(s, a),
combined by eq. 9, Q(s, a) = V(s) + (A(s, a) - mean_a' A(s, a')). Subtracting the mean (rather than
eq. 8's max) makes V and A identifiable up to a constant and, as the paper reports, stabilises
learning. Here each stream is one linear layer on the shared torso's features; the paper's Atari
network gives each stream its own 512-unit hidden layer.

An MLP Q network also has its backward pass written out (`forward_saving`, `backward`, on
rlrun.nets.backprop): DQN's loss touches one output per row, and on a 256x256 network autograd's graph
bookkeeping was ~20% of an update on a 2-core CPU. The gradients are autograd's (tests/test_dqn_math.py
compares them).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from rlrun.nets.backprop import SequentialMLP, affine_backward
from rlrun.nets.cnn import CNNConfig, NatureCNN
from rlrun.nets.dict_encoder import DictEncoder, check_dict_network
from rlrun.nets.mlp import ACTIVATIONS, MLPConfig, linear
from rlrun.nets.numpy_mlp import ACTIVATIONS as NUMPY_ACTIVATIONS


def dueling_combine(value: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """Wang et al. 2016, eq. 9: Q = V + (A - mean_a A); value (..., 1), advantages (..., |A|)."""
    return value + advantages - advantages.mean(-1, keepdim=True)


def mlp_torso(in_dim: int, cfg: MLPConfig) -> nn.Sequential:
    """in_dim -> hidden_sizes, each layer followed by the activation (no output layer)."""
    layers: list[nn.Module] = [nn.Flatten()]
    sizes = [in_dim, *cfg.hidden_sizes]
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [linear(a, b, np.sqrt(2), cfg.ortho_init), ACTIVATIONS[cfg.activation]()]
    return nn.Sequential(*layers)


class QNetwork(nn.Module):
    def __init__(self, observation_space: gym.Space, action_space: gym.Space, cfg: MLPConfig | CNNConfig,
                 dueling: bool):
        super().__init__()
        if not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"a Q network needs a discrete action space (got {action_space})")
        if getattr(cfg, "batch_norm", False):
            raise ValueError("network.batch_norm is DDPG's (Lillicrap et al. 2015); Q networks do not take it")
        n_actions = int(action_space.n)
        if isinstance(observation_space, gym.spaces.Dict):
            # SB3's MultiInputPolicy: one encoder per key, concatenated, then the MLP torso on its features.
            check_dict_network(cfg)
            encoder = DictEncoder(observation_space, cfg.image_features_dim, cfg.ortho_init)
            self.torso = nn.Sequential(encoder, *mlp_torso(encoder.features_dim, cfg))
            features = cfg.hidden_sizes[-1]
        elif isinstance(cfg, CNNConfig):
            self.torso: nn.Module = NatureCNN(observation_space.shape, cfg)
            features = cfg.features_dim
        else:
            self.torso = mlp_torso(int(np.prod(observation_space.shape)), cfg)
            features = cfg.hidden_sizes[-1]
        # An MLP torso through torch's functions, for the cheaper forward and the backward written out.
        self.written_out = SequentialMLP(self.torso) if SequentialMLP.supports(self.torso) else None
        self.has_manual_backward = self.written_out is not None
        self.dueling = dueling
        if dueling:
            self.value_head = linear(features, 1, 1.0, cfg.ortho_init)
            self.advantage_head = linear(features, n_actions, 1.0, cfg.ortho_init)
        else:
            self.q_head = linear(features, n_actions, 1.0, cfg.ortho_init)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """Q(s, .) for a batch of observations: shape (batch, |A|)."""
        if self.has_manual_backward:
            return self.forward_saving(obs)[0]
        features = self.torso(obs)
        if self.dueling:
            return dueling_combine(self.value_head(features), self.advantage_head(features))
        return self.q_head(features)

    # --- the backward pass written out, for MLP torsos --------------------------------------------------

    def forward_saving(self, obs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Q(s, .) and the input of each torso layer, then the features, which `backward` needs (call under
        torch.no_grad). The same function as forward, through torch's functions rather than module calls
        (cheaper)."""
        x, inputs = self.written_out.forward_saving(obs)  # x: the features the heads read
        if self.dueling:
            value = F.linear(x, self.value_head.weight, self.value_head.bias)
            return dueling_combine(value, F.linear(x, self.advantage_head.weight, self.advantage_head.bias)), inputs
        return F.linear(x, self.q_head.weight, self.q_head.bias), inputs

    def backward(self, inputs: list[torch.Tensor], grad_q: torch.Tensor) -> None:
        """Set every parameter's .grad to d loss / d parameter, given grad_q = d loss / d Q(s, .) and what
        forward_saving kept: the chain rule, layer by layer, from the heads down to the first layer."""
        features = inputs[-1]
        if self.dueling:
            # Q = V + A - mean_a A (eq. 9): dV = sum_a dQ, dA = dQ - mean_a dQ.
            grad_v = grad_q.sum(1, keepdim=True)
            grad_a = grad_q - grad_q.mean(1, keepdim=True)
            grad = affine_backward(self.value_head.weight, self.value_head.bias, features, grad_v)
            grad += affine_backward(self.advantage_head.weight, self.advantage_head.bias, features, grad_a)
        else:
            grad = affine_backward(self.q_head.weight, self.q_head.bias, features, grad_q)
        self.written_out.backward(inputs, grad)


class NumpyQ:
    """Q(s, .) of an MLP QNetwork in numpy, for acting one env step at a time.

    A torch forward on a batch of one is mostly dispatch (~40 us for a 2-layer MLP here); the same
    layers in numpy take a few microseconds. On the CPU the arrays are views of the network's own
    parameters (numpy shares their memory; optimisers update them in place), so acting always uses
    the current weights and nothing is copied after a gradient step. On another device `refresh()`
    copies them, which DQN does lazily, at most once per env step and only after an update.
    """

    def __init__(self, net: QNetwork):
        if isinstance(net.torso, NatureCNN):
            raise ValueError("NumpyQ computes MLP Q networks only")
        self.net = net
        self.live = all(p.device.type == "cpu" for p in net.parameters())
        self.layers: list = []
        self.refresh()

    def refresh(self) -> None:
        def array(t: torch.Tensor) -> np.ndarray:
            return t.detach().numpy() if self.live else t.detach().cpu().numpy()

        def affine(layer: nn.Linear) -> tuple[np.ndarray, np.ndarray]:
            return array(layer.weight).T, array(layer.bias)  # a transposed view; BLAS reads it as is

        self.layers = [affine(layer) if isinstance(layer, nn.Linear) else NUMPY_ACTIVATIONS[type(layer)]
                       for layer in self.net.torso if not isinstance(layer, nn.Flatten)]
        heads = ((self.net.value_head, self.net.advantage_head) if self.net.dueling else (self.net.q_head,))
        self.heads = [affine(head) for head in heads]

    def __call__(self, obs: np.ndarray) -> np.ndarray:
        x = obs.reshape(len(obs), -1)
        for layer in self.layers:
            x = x @ layer[0] + layer[1] if isinstance(layer, tuple) else layer(x)
        if self.net.dueling:
            (wv, bv), (wa, ba) = self.heads
            advantages = x @ wa + ba
            return x @ wv + bv + advantages - advantages.mean(-1, keepdims=True)
        w, b = self.heads[0]
        return x @ w + b
