"""Deep Deterministic Policy Gradient (Lillicrap et al. 2015, arXiv:1509.02971), built on the
deterministic policy gradient of Silver et al. 2014.

Algorithm 1 of Lillicrap et al., with its equations:
    act a_t = mu(s_t) + N_t (exploration noise: Gaussian, or Ornstein-Uhlenbeck as in the paper),
    store (s_t, a_t, r_t, s_t+1) in the replay buffer R, sample a minibatch of N transitions;
    critic: y_i = r_i + gamma Q'(s_i+1, mu'(s_i+1))                              (eq. 5)
            minimise L = 1/N sum_i (y_i - Q(s_i, a_i))^2                          (eq. 4)
    actor:  grad J ~= 1/N sum_i grad_a Q(s, a)|s=s_i, a=mu(s_i) grad_theta mu(s)|s_i    (eq. 6;
            Silver et al. 2014 eq. 15, the off-policy deterministic policy gradient)
    targets: theta' <- tau theta + (1 - tau) theta'                               (section 3)
The first `learning_starts` steps act uniformly at random (the shared loop in offpolicy.py). Defaults
in conf/algo/ddpg.yaml are the modern ones (Fujimoto et al. 2018's "OurDDPG", CleanRL); the paper's
values are noted beside each key.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rlrun.algos.offpolicy import OffPolicy
from rlrun.config import NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, ConfigError, from_config, one_of, rule
from rlrun.envs import VecEnv
from rlrun.hardware import Hardware
from rlrun.nets.continuous import (DeterministicActor, QCritic, SharedNumpyMLP, TwinQ, acting, batch_norm_stats,
                                  batch_statistics_only, numpy_actor)
from rlrun.nets.flat import flatten_parameters
from rlrun.nets.mlp import MLPConfig
from rlrun.optim import Adam


@dataclass
class DDPGConfig:
    num_envs: int = rule(POSITIVE)
    buffer_size: int = rule(POSITIVE)
    learning_starts: int = rule(NON_NEGATIVE)
    batch_size: int = rule(POSITIVE)
    train_frequency: int = rule(POSITIVE)
    gradient_steps: int = rule(POSITIVE)
    steps_per_iteration: int = rule(POSITIVE)
    gamma: float = rule(UNIT_INTERVAL)
    tau: float = rule(UNIT_INTERVAL)
    actor_lr: float = rule(POSITIVE)
    critic_lr: float = rule(POSITIVE)
    critic_weight_decay: float = rule(NON_NEGATIVE)
    noise: str = rule(one_of("gaussian", "ou"))
    noise_std: float = rule(NON_NEGATIVE)
    ou_theta: float = rule(NON_NEGATIVE)
    ou_dt: float = rule(POSITIVE)


# --- pieces TD3 and SAC share -------------------------------------------------------------------------


def check_env(env: VecEnv, cfg) -> int | None:
    """The observation size, after checking what these actor-critics need of the env; None for Dict
    observations (SAC reads them through per-key encoders, rlrun.nets.dict_continuous)."""
    if env.num_envs != cfg.num_envs:
        raise ValueError(f"env has {env.num_envs} copies, algo.num_envs is {cfg.num_envs}")
    if isinstance(env.observation_space, gym.spaces.Dict):
        return None
    if len(env.observation_space.shape) != 1:
        raise ConfigError(f"MLP actor-critics need flat observations (got shape {env.observation_space.shape})")
    return env.observation_space.shape[0]


def target_network(module: nn.Module) -> tuple[nn.Module, list[torch.Tensor]]:
    """A frozen copy of `module` (Lillicrap et al. section 3) whose parameters are views of one flat
    tensor, so that a soft update is one op; returns it and the tensors a soft update moves (the flat
    parameters, then any batch-norm running statistics)."""
    target = copy.deepcopy(module).requires_grad_(False)
    params = list(target.parameters())
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    offset = 0
    for p in params:
        p.data = flat[offset : offset + p.numel()].view_as(p)
        offset += p.numel()
    # A target network is only evaluated: batch norm uses the running statistics it follows.
    return target.eval(), [flat, *batch_norm_stats(target)]


def online_tensors(module: nn.Module, flat: nn.Parameter) -> list[torch.Tensor]:
    """The tensors of a trained network in the order `target_network` lists its target's."""
    return [flat.detach(), *batch_norm_stats(module)]


@torch.no_grad()
def soft_update(targets: list[torch.Tensor], sources: list[torch.Tensor], tau: float) -> None:
    """theta' <- tau theta + (1 - tau) theta' = lerp(theta', theta, tau), for every pair in one call."""
    torch._foreach_lerp_(targets, sources, tau)


@torch.no_grad()
def twin_critic_regression_by_hand(critic: TwinQ, obs: torch.Tensor, actions: torch.Tensor, y: torch.Tensor,
                                   scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """scale * sum_i mean (Q_i(s, a) - y)^2 over the twin critics (TD3's scale 1, SAC's eq. 5 with 1/2)
    and its backward without autograd's graph (rlrun.nets.backprop): d loss / d Q_i = 2 scale (Q_i - y) / N,
    then each critic's chain rule. Writes the critics' gradients; returns the loss and [Q1; Q2](s, a)."""
    q, saved = critic.forward_saving(obs, actions)
    error = q - y
    loss = scale * error.square().mean(-1).sum()
    critic.backward(saved, error.mul_(2.0 * scale / y.shape[-1]))
    return loss, q


@contextmanager
def frozen(params: list[nn.Parameter]) -> Iterator[None]:
    """Parameters that autograd treats as constants. The actor's loss goes through the critic, but
    its update needs only grad_a Q, not the critic's weight gradients: skipping them saves a third of
    the critic's backward (SB3 computes them and throws them away)."""
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def optimizer_state_in_order(optimizer: Adam, order: torch.Tensor) -> dict:
    """The state of an optimiser of one flat parameter with its per-element tensors (Adam's moments)
    permuted by `order`: TwinQ's stacked parameters saved in two QCritics' layout (TwinQ.checkpoint_order),
    the layout of checkpoints."""
    state = optimizer.state_dict()
    return {**state, "state": {i: {key: value[order] if _per_element(value, order) else value
                                   for key, value in s.items()} for i, s in state["state"].items()}}


def load_optimizer_state_in_order(optimizer: Adam, state: dict, order: torch.Tensor) -> None:
    """Load a state saved by optimizer_state_in_order (the inverse permutation)."""
    def unpermute(value: torch.Tensor) -> torch.Tensor:
        restored = torch.empty_like(value)
        restored[order] = value
        return restored

    optimizer.load_state_dict({**state, "state": {
        i: {key: unpermute(value) if _per_element(value, order) else value for key, value in s.items()}
        for i, s in state["state"].items()}})


def _per_element(value, order: torch.Tensor) -> bool:
    return isinstance(value, torch.Tensor) and value.shape == order.shape


def compiled(algo, names: tuple[str, ...], enabled: bool, device: torch.device) -> SimpleNamespace:
    """The update's loss functions (methods of `algo` by name), through torch.compile when enabled:
    Inductor fuses each forward and, through AOTAutograd, its backward, and on CUDA replays them as
    CUDA graphs (mode="reduce-overhead", as LeanRL does), which removes the per-kernel launch cost that
    dominates small networks on a GPU. Optimiser steps stay eager (fused Adam is one kernel already).
    On a CPU, Inductor is measured slower than eager for these networks (see the algo configs)."""
    fns = {name: getattr(algo, name) for name in names}
    # CUDA graphs reuse their output memory on the next replay: each update marks a new step, and
    # reads what it reports from a graph's outputs before running the next graph.
    step_begin = lambda: None  # noqa: E731
    if enabled:
        cuda_graphs = device.type == "cuda"
        fns = {name: torch.compile(fn, mode="reduce-overhead" if cuda_graphs else None) for name, fn in fns.items()}
        if cuda_graphs:
            step_begin = torch.compiler.cudagraph_mark_step_begin
    return SimpleNamespace(**fns, step_begin=step_begin)


def noise_generator(cpu_generator: torch.Generator, device: torch.device, seed: int) -> torch.Generator:
    """The generator of the noise drawn inside an update: the run's own on the CPU, a seeded one on an
    accelerator (torch cannot draw CUDA tensors from a CPU generator)."""
    if device.type == "cpu":
        return cpu_generator
    return torch.Generator(device).manual_seed(seed + 1)


class GaussianNoise:
    """N(0, std^2) per action dimension, independent over time (TD3 and later DDPG implementations)."""

    def __init__(self, std: float, shape: tuple[int, int]):
        self.std = std
        self.shape = shape

    def __call__(self, generator: torch.Generator, episode_start: np.ndarray) -> np.ndarray:
        return self.std * torch.randn(self.shape, generator=generator).numpy()

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class OrnsteinUhlenbeckNoise:
    """Temporally correlated noise: dx = theta (0 - x) dt + sigma sqrt(dt) dW, one process per env,
    restarted at zero when its episode starts (Lillicrap et al. section 7: theta 0.15, sigma 0.2).
    Its state is a tensor in the checkpoint; its draws come from the run's generator."""

    def __init__(self, sigma: float, theta: float, dt: float, shape: tuple[int, int]):
        self.sigma, self.theta, self.dt = sigma, theta, dt
        self.x = torch.zeros(shape)

    def __call__(self, generator: torch.Generator, episode_start: np.ndarray) -> np.ndarray:
        self.x[torch.from_numpy(episode_start)] = 0.0
        dw = torch.randn(self.x.shape, generator=generator)
        self.x += -self.theta * self.x * self.dt + self.sigma * self.dt ** 0.5 * dw
        return self.x.numpy().copy()

    def state_dict(self) -> dict:
        return {"x": self.x.clone()}

    def load_state_dict(self, state: dict) -> None:
        self.x.copy_(state["x"])


def deterministic_act(actor: DeterministicActor, numpy_net: SharedNumpyMLP | None, obs: np.ndarray,
                      device: torch.device) -> np.ndarray:
    """mu(s) for a batch of observations, in numpy where the actor has a numpy acting copy."""
    if numpy_net is not None:
        return actor.center.numpy() + actor.half_range.numpy() * np.tanh(numpy_net(np.asarray(obs, np.float32)))
    with torch.inference_mode(), acting(actor):
        return actor(torch.as_tensor(obs, device=device)).cpu().numpy()


def make_noise(cfg: DDPGConfig, shape: tuple[int, int]) -> GaussianNoise | OrnsteinUhlenbeckNoise:
    if cfg.noise == "ou":
        return OrnsteinUhlenbeckNoise(cfg.noise_std, cfg.ou_theta, cfg.ou_dt, shape)
    return GaussianNoise(cfg.noise_std, shape)


# --- DDPG ---------------------------------------------------------------------------------------------


class DDPG(OffPolicy):
    """DDPG as a generator of metrics (the loop is OffPolicy.learn)."""

    action_spaces = ("continuous",)

    def __init__(self, cfg: DDPGConfig, env: VecEnv, network: MLPConfig, hardware: Hardware, seed: int,
                 total_steps: int):
        obs_dim = check_env(env, cfg)
        super().__init__(cfg, env, hardware, seed, total_steps)
        space = env.action_space
        self.actor = DeterministicActor(obs_dim, space, network).to(self.device)
        self.critic = QCritic(obs_dim, space.shape[0], network).to(self.device)
        self.actor_target, self.actor_target_tensors = target_network(self.actor)
        self.critic_target, self.critic_target_tensors = target_network(self.critic)
        self.actor_flat = flatten_parameters(self.actor)
        self.critic_flat = flatten_parameters(self.critic)
        self.critic_params = list(self.critic.parameters())
        self.actor_optimizer = Adam(self.actor_flat, lr=cfg.actor_lr)
        # The paper's L2 penalty on the critic (1e-2 there): Adam's coupled weight decay is exactly that.
        self.critic_optimizer = Adam(self.critic_flat, lr=cfg.critic_lr,
                                                 weight_decay=cfg.critic_weight_decay)
        self.targets = self.actor_target_tensors + self.critic_target_tensors
        self.sources = online_tensors(self.actor, self.actor_flat) + online_tensors(self.critic, self.critic_flat)
        # Noise in units of the action half-range, so that noise_std means the same for any bounds.
        self.half_range = ((space.high - space.low) / 2).astype(np.float32)
        self.noise = make_noise(cfg, (env.num_envs, space.shape[0]))
        self.numpy_actor = numpy_actor(self.actor.net, self.device)  # after flattening: it views the parameters

    @classmethod
    def parse_config(cls, cfg) -> DDPGConfig:
        return from_config(DDPGConfig, cfg, "algo")

    # --- acting -------------------------------------------------------------------------------------

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return deterministic_act(self.actor, self.numpy_actor, obs, self.device)

    def explore(self, obs: np.ndarray) -> np.ndarray:
        """a_t = mu(s_t) + N_t, clipped to the bounds (the action stored is the one the env gets)."""
        space = self.env.action_space
        # An env whose episode length is 0 has just started an episode: OU noise restarts there.
        noise = self.noise(self.generator, self.env.episode_length == 0)
        return np.clip(self.act(obs) + self.half_range * noise, space.low, space.high)

    # --- learning -----------------------------------------------------------------------------------

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        obs, actions, next_obs = batch["obs"], batch["actions"], batch["next_obs"]
        with torch.no_grad():
            # eq. 5; a terminal s_i+1 has no future (a time-limit cut is stored with terminated = 0).
            next_q = self.critic_target(next_obs, self.actor_target(next_obs))
            y = batch["rewards"] + self.cfg.gamma * (1.0 - batch["terminated"]) * next_q
        q = self.critic(obs, actions)
        critic_loss = F.mse_loss(q, y)  # eq. 4
        self.critic_flat.grad.zero_()
        critic_loss.backward()
        self.critic_optimizer.step()

        # eq. 6: ascend Q(s, mu(s)) through the chain rule grad_a Q * grad_theta mu. The critic's batch
        # norm recorded this minibatch's states in its loss above: here it only normalises with them.
        with frozen(self.critic_params), batch_statistics_only(self.critic):
            actor_loss = -self.critic(obs, self.actor(obs)).mean()
            self.actor_flat.grad.zero_()
            actor_loss.backward()
        self.actor_optimizer.step()

        soft_update(self.targets, self.sources, self.cfg.tau)
        return {"train/critic_loss": critic_loss.detach(), "train/actor_loss": actor_loss.detach(),
                "train/q": q.detach().mean()}

    # --- checkpointing ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        return {**super().state_dict(), "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                "actor_target": self.actor_target.state_dict(), "critic_target": self.critic_target.state_dict(),
                "actor_optimizer": self.actor_optimizer.state_dict(),
                "critic_optimizer": self.critic_optimizer.state_dict(), "noise": self.noise.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        # load_state_dict copies into the existing tensors, so the flat views stay in place.
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_optimizer", "critic_optimizer",
                     "noise"):
            getattr(self, name).load_state_dict(state[name])
