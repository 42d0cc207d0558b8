"""Networks of the off-policy actor-critics for continuous actions: DDPG, TD3 and SAC.

- `QCritic`: Q(s, a), an MLP on the state and action concatenated (the TD3 paper's architecture,
  which later DDPG implementations share; Lillicrap et al. fed the action in at the second layer).
- `TwinQ`: two independent critics Q1, Q2 (TD3's clipped double Q, SAC's two soft Q-functions), their
  layers stacked so that one batched matrix product evaluates both; checkpointed as two QCritics.
- `DeterministicActor`: mu(s) = center + half_range * tanh(MLP(s)), always inside the action bounds.
- `SquashedGaussianActor`: u ~ N(mean(s), std(s)^2), a = center + half_range * tanh(u), with the
  log-density of tanh(u) by the change of variables (Haarnoja et al. 2018, appendix C, eq. 21).

Actions are in the env's own units everywhere (replay, critic input), so the bounds live in the actors.
Log-densities, however, are those of the action in [-1, 1]: the affine map to the bounds would add
-sum_i log(half_range_i) to log pi, a constant that moves SAC's entropy by the bounds' volume (about
+15.6 nats on Humanoid-v5, +-0.4 in 17 dims) while its target stays -dim(A). The authors' softlearning
(actions normalised to [-1, 1] by a wrapper) and SB3 (which rescales actions for the env) measure
entropy in [-1, 1], so the paper's target means the same for every env.

`numpy_actor` gives an actor's MLP on numpy views of its parameters, for acting one step at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rlrun.nets.backprop import (ACTIVATION_TYPES, IN_PLACE, SequentialMLP, activation_backward_, input_grad,
                                 stacked_affine_backward)
from rlrun.nets.mlp import MLPConfig, mlp
from rlrun.nets.numpy_mlp import ACTIVATIONS

LOG_2PI = math.log(2 * math.pi)
LOG_2 = math.log(2.0)


def action_bounds(space: gym.Space) -> tuple[np.ndarray, np.ndarray]:
    """(center, half_range) of a bounded Box action space, float32."""
    if not (isinstance(space, gym.spaces.Box) and len(space.shape) == 1):
        raise ValueError(f"continuous-action networks need a 1-d Box action space (got {space})")
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise ValueError(f"tanh-bounded actors need finite action bounds (got low={space.low}, high={space.high})")
    low, high = space.low.astype(np.float64), space.high.astype(np.float64)
    return ((high + low) / 2).astype(np.float32), ((high - low) / 2).astype(np.float32)


def has_batch_norm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


def batch_norm_stats(module: nn.Module) -> list[torch.Tensor]:
    """The running means and variances of `module`'s batch-norm layers (what a target network copies)."""
    return [stat for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)
            for stat in (m.running_mean, m.running_var)]


@contextmanager
def acting(module: nn.Module) -> Iterator[None]:
    """Evaluation mode while acting: batch norm then uses its running statistics (a batch of one env
    has no batch statistics). A no-op for networks without batch norm."""
    if not has_batch_norm(module) or not module.training:
        yield
        return
    module.eval()
    try:
        yield
    finally:
        module.train()


@contextmanager
def batch_statistics_only(module: nn.Module) -> Iterator[None]:
    """Batch norm in training mode that normalises with the batch's statistics but does not record
    them. A train step forwards a minibatch through a network more than once (DDPG's critic: in its
    own loss, then under the actor's); the running statistics that acting and the targets use are a
    moving average over training minibatches (Ioffe & Szegedy 2015), and recording one twice would
    move them at 1 - (1 - momentum)^2 instead of the momentum set, or (SAC's s') mix in other states.
    Only the forward that records runs outside this context. A no-op in eval mode or without batch norm."""
    layers = [m for m in module.modules()
              if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    for layer in layers:
        layer.track_running_stats = False  # in train mode: batch statistics, running ones untouched
    try:
        yield
    finally:
        for layer in layers:
            layer.track_running_stats = True


class QCritic(nn.Module):
    """Q(s, a) -> one value per row."""

    def __init__(self, obs_dim: int, action_dim: int, cfg: MLPConfig):
        super().__init__()
        # With batch_norm, DDPG normalises "the state input and all layers of the Q network prior to
        # the action input" (Lillicrap et al. 2015, section 7): with the action at the input, that is
        # the state input alone.
        self.obs_norm = nn.BatchNorm1d(obs_dim) if cfg.batch_norm else None
        self.net = mlp(obs_dim + action_dim, replace(cfg, batch_norm=False), 1, out_gain=1.0)

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        if self.obs_norm is not None:
            obs = self.obs_norm(obs)
        return self.net(torch.cat([obs, action], -1)).squeeze(-1)


class TwinQ(nn.Module):
    """Two critics Q1, Q2 with their own parameters, on the same input, evaluated as one network.

    Each layer keeps both critics' weights stacked, [2, out, in] (nn.Linear's [out, in] per critic),
    so one batched matrix product (torch.baddbmm) computes the layer for both critics: half the
    operator calls and autograd nodes of two separate QCritics, the same function. forward returns
    a [2, batch] tensor, (Q1, Q2) when unpacked. Initialised as two QCritics would be (the same draws
    from torch's RNG), and state_dict()/load_state_dict() use two QCritics' keys (q1.net.0.weight, ...,
    q2.obs_norm.running_mean): checkpoints have the same format as before the critics were stacked.
    """

    def __init__(self, obs_dim: int, action_dim: int, cfg: MLPConfig):
        super().__init__()
        self.obs_dim, self.action_dim, self.cfg = obs_dim, action_dim, cfg
        critics = [QCritic(obs_dim, action_dim, cfg) for _ in range(2)]
        linears = [[m for m in critic.net if isinstance(m, nn.Linear)] for critic in critics]
        self.num_layers = len(linears[0])
        for k, (first, second) in enumerate(zip(*linears)):
            self.register_parameter(f"weight{k}", nn.Parameter(torch.stack([first.weight.detach(),
                                                                            second.weight.detach()])))
            # [2, 1, out]: broadcast over the batch rows by baddbmm.
            self.register_parameter(f"bias{k}", nn.Parameter(torch.stack([first.bias.detach(),
                                                                          second.bias.detach()])[:, None]))
        self.activation_type = ACTIVATION_TYPES[cfg.activation]
        self.activation = IN_PLACE[self.activation_type]
        # Batch norm on the state input (QCritic's, DDPG section 7), one layer per critic.
        self.obs_norms = nn.ModuleList([c.obs_norm for c in critics]) if cfg.batch_norm else None
        # The backward written out (`backward`, `q1_action_grad`) covers the plain MLP critics;
        # with batch norm, autograd differentiates through its statistics.
        self.has_manual_backward = self.obs_norms is None
        self.register_state_dict_post_hook(_twin_q_state_dict_to_critics)
        self.register_load_state_dict_pre_hook(_twin_q_state_dict_from_critics)

    def layers(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [(getattr(self, f"weight{k}"), getattr(self, f"bias{k}")) for k in range(self.num_layers)]

    def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return self.forward_saving(obs, action, saving=False)[0]

    def forward_saving(self, obs: torch.Tensor, action: torch.Tensor, saving: bool = True
                       ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """[Q1; Q2](s, a) and each layer's input, then the last hidden layer's output (what `backward`
        needs, under torch.no_grad). Not saving (forward), each [2, batch, hidden] buffer is freed as soon
        as the next layer is computed: a target network's forward holds no more memory than it needs."""
        if self.obs_norms is None:
            x = torch.cat([obs, action], -1).expand(2, -1, -1)  # one input, shared (no copy)
        else:
            x = torch.stack([torch.cat([norm(obs), action], -1) for norm in self.obs_norms])
        layers, inputs = self.layers(), []
        for weight, bias in layers[:-1]:
            if saving:
                inputs.append(x)
            # In place: the product's backward needs its inputs, not its output, and the
            # activation's backward needs only its output; no second [2, batch, hidden] buffer.
            x = self.activation(torch.baddbmm(bias, x, weight.transpose(1, 2)))
        if saving:
            inputs.append(x)
        weight, bias = layers[-1]
        return torch.baddbmm(bias, x, weight.transpose(1, 2)).squeeze(-1), inputs

    def backward(self, inputs: list[torch.Tensor], grad_q: torch.Tensor) -> None:
        """Write every parameter's .grad given grad_q = d loss / d [Q1; Q2] ([2, batch]) and what
        forward_saving kept: each critic's chain rule, both in one batched product per step (see
        rlrun.nets.backprop). Without batch norm (`has_manual_backward`)."""
        grad = grad_q.unsqueeze(-1)
        layers = self.layers()
        for k in range(self.num_layers - 1, -1, -1):
            weight, bias = layers[k]
            grad = stacked_affine_backward(weight, bias, inputs[k], grad, need_input_grad=k > 0)
            if k > 0:
                activation_backward_(self.activation_type, grad, inputs[k])

    def q1(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """The first critic alone (TD3's actor loss): its slices of the stacked parameters."""
        return self.q1_saving(obs, action, saving=False)[0]

    def q1_saving(self, obs: torch.Tensor, action: torch.Tensor, saving: bool = True
                  ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Q1(s, a) and each layer's input, then the last hidden layer's output (for `q1_action_grad`)."""
        if self.obs_norms is not None:
            obs = self.obs_norms[0](obs)
        x = torch.cat([obs, action], -1)
        layers, inputs = self.layers(), []
        for weight, bias in layers[:-1]:
            if saving:
                inputs.append(x)
            x = self.activation(torch.addmm(bias[0], x, weight[0].t()))
        if saving:
            inputs.append(x)
        weight, bias = layers[-1]
        return torch.addmm(bias[0], x, weight[0].t()).squeeze(-1), inputs

    def q1_action_grad(self, inputs: list[torch.Tensor], grad_q1: torch.Tensor) -> torch.Tensor:
        """d loss / d a given grad_q1 = d loss / d Q1(s, a) ([batch]) and what q1_saving kept, with the
        critic's weights constants (TD3's actor update needs grad_a Q1 only, DDPG eq. 6): the products
        for the input gradients alone, the first layer's with its action columns only."""
        grad = grad_q1.unsqueeze(-1)
        layers = self.layers()
        for k in range(self.num_layers - 1, 0, -1):
            grad = activation_backward_(self.activation_type, input_grad(grad, layers[k][0][0]), inputs[k])
        return input_grad(grad, layers[0][0][0, :, self.obs_dim:])

    def checkpoint_order(self) -> torch.Tensor:
        """Index into the concatenated parameters (parameters() order, as in a flat buffer) that lists
        them in the order of two QCritics' (q1's, then q2's): what an optimiser's state of the flat
        parameter is saved in, so that checkpoints keep one layout."""
        positions, offset = {}, 0
        for name, p in self.named_parameters():
            positions[name] = torch.arange(offset, offset + p.numel()).view(p.shape)
            offset += p.numel()
        _twin_q_state_dict_to_critics(self, positions, "", {})  # now two QCritics' keys, in their order
        return torch.cat([index.reshape(-1) for index in positions.values()])


def inplace_activations(net: nn.Sequential) -> nn.Sequential:
    """`net` with its ReLU/ELU layers computing in place (what they follow, a Linear or a batch norm,
    keeps what its backward needs; the activation's own backward reads only its output): one
    [batch, hidden] buffer fewer to allocate and fill per layer. The same function."""
    for layer in net:
        if isinstance(layer, (nn.ReLU, nn.ELU)):
            layer.inplace = True
    return net


def _critic_key(k: int, critic: int, kind: str) -> str:
    # QCritic.net is mlp(): Linear, activation, Linear, ... so linear layer k is module 2k.
    return f"q{critic + 1}.net.{2 * k}.{kind}"


def _twin_q_state_dict_to_critics(module: TwinQ, state: dict, prefix: str, local_metadata) -> None:
    """state_dict hook: the stacked tensors as two QCritics' entries, q1's then q2's."""
    stacked = {key: state.pop(prefix + key) for key in list(_stacked_keys(module))}
    norms = {key[len(prefix):]: state.pop(key) for key in list(state)
             if key.startswith(prefix + "obs_norms.")}
    for c in range(2):
        for key, value in norms.items():
            if key.startswith(f"obs_norms.{c}."):
                state[f"{prefix}q{c + 1}.obs_norm.{key[len(f'obs_norms.{c}.'):]}"] = value
        for k in range(module.num_layers):
            state[prefix + _critic_key(k, c, "weight")] = stacked[f"weight{k}"][c]
            state[prefix + _critic_key(k, c, "bias")] = stacked[f"bias{k}"][c, 0]


def _twin_q_state_dict_from_critics(module: TwinQ, state: dict, prefix: str, local_metadata, strict, missing_keys,
                                    unexpected_keys, error_msgs) -> None:
    """load_state_dict pre-hook: two QCritics' entries (a checkpoint's) stacked into this module's."""
    for k in range(module.num_layers):
        for kind in ("weight", "bias"):
            keys = [prefix + _critic_key(k, c, kind) for c in range(2)]
            if all(key in state for key in keys):
                pair = torch.stack([state.pop(key) for key in keys])
                state[f"{prefix}{kind}{k}"] = pair[:, None] if kind == "bias" else pair
    for c in range(2):
        old = f"{prefix}q{c + 1}.obs_norm."
        for key in [key for key in state if key.startswith(old)]:
            state[f"{prefix}obs_norms.{c}.{key[len(old):]}"] = state.pop(key)


def _stacked_keys(module: TwinQ) -> list[str]:
    return [f"{kind}{k}" for k in range(module.num_layers) for kind in ("weight", "bias")]


class DeterministicActor(nn.Module):
    """mu(s) inside the action bounds: tanh of the MLP's output, scaled and shifted."""

    def __init__(self, obs_dim: int, action_space: gym.Space, cfg: MLPConfig):
        super().__init__()
        center, half_range = action_bounds(action_space)
        self.net = inplace_activations(mlp(obs_dim, cfg, len(center), out_gain=1.0))
        # Not learned and not checkpointed (they come from the env): buffers only to follow .to(device).
        self.register_buffer("center", torch.from_numpy(center), persistent=False)
        self.register_buffer("half_range", torch.from_numpy(half_range), persistent=False)
        # The backward written out (`forward_saving`, `backward`) for MLPs without batch norm.
        self.written_out = SequentialMLP(self.net) if SequentialMLP.supports(self.net) else None
        self.has_manual_backward = self.written_out is not None

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.center + self.half_range * torch.tanh(self.net(obs))

    def forward_saving(self, obs: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """mu(s) and what `backward` needs: each layer's input, then tanh of the MLP's output (under
        torch.no_grad; `has_manual_backward` actors only)."""
        out, saved = self.written_out.forward_saving(obs)
        squashed = out.tanh_()  # in place: saved[-1], the MLP's output, becomes tanh of it
        return self.center + self.half_range * squashed, saved

    def backward(self, saved: list[torch.Tensor], grad_action: torch.Tensor) -> None:
        """Write every parameter's .grad given grad_action = d loss / d mu(s) (consumed): through the
        bounds' scale and tanh, then the MLP layer by layer."""
        grad = activation_backward_(nn.Tanh, grad_action.mul_(self.half_range), saved[-1])
        self.written_out.backward(saved, grad)


def squashed_gaussian_sample(mean: torch.Tensor, log_std: torch.Tensor, noise: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """A reparameterised sample y = tanh(mean + std * noise) in [-1, 1] (SAC eq. 11) and its
    log-density log pi(y|s), summed over action dimensions.

    Change of variables for u -> tanh(u) (SAC appendix C, eq. 21):
        log pi(y|s) = log N(u; mean, std) - sum_i log(1 - tanh(u_i)^2)
    with log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)), which stays finite where tanh(u) rounds
    to +-1 (the form `log(1 - tanh(u)^2 + 1e-6)` of some implementations biases it there).
    """
    u = mean + log_std.exp() * noise
    # (u - mean) / std is the noise itself: no division.
    gaussian = (-0.5 * noise.square() - log_std).sum(-1) - 0.5 * LOG_2PI * mean.shape[-1]
    log_det = (2 * (LOG_2 - u - F.softplus(-2 * u))).sum(-1)
    return torch.tanh(u), gaussian - log_det


class SquashedGaussianActor(nn.Module):
    """pi(a|s): a state-dependent diagonal Gaussian, squashed by tanh into the action bounds."""

    # log std clipped to [-20, 2], as in the authors' softlearning and SB3: wide enough not to bind
    # in practice, narrow enough to keep exp(log_std) finite early in training.
    LOG_STD_MIN, LOG_STD_MAX = -20.0, 2.0

    def __init__(self, obs_dim: int, action_space: gym.Space, cfg: MLPConfig):
        super().__init__()
        center, half_range = action_bounds(action_space)
        self.action_dim = len(center)
        # One output layer of 2 * action_dim units is the mean head and the log-std head side by side
        # (the same function as two heads on the shared torso, one matrix product instead of two).
        self.net = inplace_activations(mlp(obs_dim, cfg, 2 * self.action_dim, out_gain=1.0))
        self.register_buffer("center", torch.from_numpy(center), persistent=False)
        self.register_buffer("half_range", torch.from_numpy(half_range), persistent=False)

    def dist_params(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_std = self.net(obs).split(self.action_dim, -1)
        return mean, log_std.clamp(self.LOG_STD_MIN, self.LOG_STD_MAX)

    def sample(self, obs: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """A reparameterised action in the env's bounds (gradients flow to the parameters through it)
        and the log-density of that action in [-1, 1] (see the module's docstring)."""
        noise = torch.randn((*obs.shape[:-1], self.action_dim), generator=generator, dtype=obs.dtype,
                            device=obs.device)
        return self.sample_with(obs, noise)

    def sample_with(self, obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """sample() with the standard normal noise given (drawn outside a compiled update)."""
        mean, log_std = self.dist_params(obs)
        squashed, log_prob = squashed_gaussian_sample(mean, log_std, noise)
        return self.center + self.half_range * squashed, log_prob

    def mode(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic action used for evaluation: the squashed mean."""
        return self.center + self.half_range * torch.tanh(self.dist_params(obs)[0])


class SharedNumpyMLP:
    """An actor's MLP on numpy arrays, for acting one env step at a time (torch spends ~100 us of
    dispatch on a batch of one; numpy a few us per layer), reading the module's parameters in place:
    numpy views of their memory, not copies. The off-policy actor changes after every env step, and
    its parameters are updated in place (fused Adam on the flat buffer, load_state_dict's copy), so
    the views always hold the learner's current function and need no refresh. Build it after the
    parameters are re-seated (flatten_parameters): views of the old storage would go stale."""

    def __init__(self, net: nn.Sequential):
        self.layers = [(m.weight.detach().numpy().T, m.bias.detach().numpy()) if isinstance(m, nn.Linear)
                       else ACTIVATIONS[type(m)] for m in net]

    def __call__(self, x: np.ndarray) -> np.ndarray:
        for layer in self.layers:
            x = x @ layer[0] + layer[1] if isinstance(layer, tuple) else layer(x)
        return x


def numpy_actor(net: nn.Sequential, device: torch.device) -> SharedNumpyMLP | None:
    """The numpy acting copy of an actor's MLP where it computes the same function: on the CPU, and
    without batch norm (which acts with running statistics, in torch); else None (act in torch)."""
    if device.type != "cpu" or has_batch_norm(net):
        return None
    return SharedNumpyMLP(net)
