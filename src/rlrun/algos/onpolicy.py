"""What the actor-critic on-policy algorithms (PPO, A2C, A3C, TRPO) share: the networks, collecting
a rollout, acting, and an optional torso shared between actor and critic.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from rlrun.config import ConfigError
from rlrun.data import RolloutBuffer
from rlrun.envs import VecEnv, spaces
from rlrun.nets import ActorCritic, CNNConfig, MLPConfig, NumpyActorCritic
from rlrun.nets.cnn_actor_critic import CNNActorCritic, TorchActorCritic
from rlrun.nets.dict_actor_critic import DictActorCritic
from rlrun.nets.flat import flatten_parameters
from rlrun.nets.merged import MergedActorCritic
from rlrun.nets.mlp import linear


@dataclass(kw_only=True)  # keyword-only: the algorithms' configs subclass it, their own fields first
class SDESettings:
    """gSDE, generalized state-dependent exploration (rlrun.nets.distributions.StateDependentGaussian):
    the keys that PPO's, A2C's and TRPO's configs share, with defaults so that configs saved before
    they existed still load."""

    use_sde: bool = False  # explore with phi(s)^T theta_eps instead of independent Gaussian noise per step
    sde_sample_freq: int = field(default=-1, metadata={"rule": ("-1 (once per rollout) or > 0",
                                                                lambda v: v == -1 or v > 0)})
    sde_use_expln: bool = False  # sigma = expln(log sigma) instead of exp(log sigma)


@dataclass
class ActorCriticNetworks:
    """An actor-critic as PPO and A2C learn and act with it, whichever torso the network config names."""

    net: ActorCritic  # the modules: checkpoints, evaluation, export
    # (obs tensor) -> (distribution parameters, V(s)) with autograd: the loss's pass over a minibatch
    forward: MergedActorCritic | TorchActorCritic | Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
    flat: nn.Parameter  # every parameter in one buffer (and its gradient): the optimiser's, the gradient clip's
    acting: NumpyActorCritic | TorchActorCritic  # numpy obs -> numpy (params, V); refresh() after each update
    layout: str  # the order of flat's entries: "merged" (MergedActorCritic's) or "module" (net.parameters())

    def optimizer_state(self, state: dict, saved_layout: str | None) -> dict:
        """An optimiser state_dict saved with `saved_layout` (None: before checkpoints recorded it, when
        flat was always in module order), its per-entry statistics moved to this layout."""
        if self.layout == "merged" and saved_layout != "merged":
            return self.forward.optimizer_state_from_module_order(state)
        return state


def build_networks(env: VecEnv, network: MLPConfig | CNNConfig, device: torch.device,
                   shared_torso: bool = False, sde: SDESettings | None = None) -> ActorCriticNetworks:
    """The actor-critic that `network` names, on `device`: the one place where an on-policy algorithm
    picks the network by type.

    MLP: separate actor and critic evaluated as one network (rlrun.nets.merged: small networks are bound
    by per-op overhead), or with `shared_torso` the modules themselves; acting in numpy on the CPU
    (NumpyActorCritic: a torch forward on a few rows costs more in dispatch than in arithmetic).
    CNN: the Nature CNN shared by both heads (rlrun.nets.cnn_actor_critic), learning and acting in torch
    on `device`. `sde`: gSDE exploration (Box actions, MLP only).
    """
    if isinstance(env.observation_space, gym.spaces.Dict):
        # One encoder per key, concatenated (rlrun.nets.dict_actor_critic), learning and acting in torch.
        torch_net = TorchActorCritic(DictActorCritic(env.observation_space, env.action_space, network).to(device))
        return ActorCriticNetworks(torch_net.net, torch_net, torch_net.flat, torch_net, "module")
    if isinstance(network, CNNConfig):
        if sde is not None and sde.use_sde:
            raise ConfigError("algo.use_sde=true: gSDE is implemented for network=mlp; set algo.use_sde=false")
        shape = env.observation_space.shape
        if len(shape) != 3:
            raise ConfigError(f"network=cnn takes image observations (channels, height, width); {env.cfg.id}'s "
                              f"have shape {shape}: use network=mlp")
        torch_net = TorchActorCritic(CNNActorCritic(env.observation_space, env.action_space, network).to(device))
        return ActorCriticNetworks(torch_net.net, torch_net, torch_net.flat, torch_net, "module")
    net = build_actor_critic(env, network, shared_torso, sde).to(device)
    if shared_torso:
        flat = flatten_parameters(net)
        return ActorCriticNetworks(net, partial(dist_params_and_value, net), flat, NumpyActorCritic(net), "module")
    merged = MergedActorCritic(net)
    return ActorCriticNetworks(net, merged, merged.flat, NumpyActorCritic(net), "merged")


def collect_rollout(env: VecEnv, buffer: RolloutBuffer, acting_net: NumpyActorCritic | TorchActorCritic,
                    generator: torch.Generator, next_obs: np.ndarray, clip_reward: bool = False) -> np.ndarray:
    """Run the policy for the buffer's T steps in each env; returns the observation after the last step.

    `acting_net` maps numpy observations to numpy distribution parameters and values (see
    build_networks). The sampling noise of all T steps is drawn in one call, and the log-probabilities
    are computed once for the whole rollout. With `clip_reward` the buffer holds sign(r) (Mnih et al.
    2015's reward clipping, which PPO's and A3C's Atari results use too); the env still counts the
    game's score. `buffer.finish*` is left to the caller (GAE or n-step returns).

    With gSDE the noise is phi(s)^T theta_eps (rlrun.nets.distributions.StateDependentGaussian): one
    matrix theta_eps per env, drawn at the rollout's first step and every `dist.sample_freq` steps
    after it if that is > 0 (SB3's sde_sample_freq).
    """
    dist = acting_net.net.dist
    gsde = getattr(acting_net.net, "use_sde", False)  # CNN and Dict networks have no gSDE
    noise = None if gsde else dist.noise(buffer.log_probs.shape, generator)
    buffer.next_values[:] = 0.0  # V(final observation) is filled in below where an episode is truncated
    for t in range(buffer.values.shape[0]):
        if gsde:
            if t == 0 or (dist.sample_freq > 0 and t % dist.sample_freq == 0):
                matrices = acting_net.exploration_matrices(env.num_envs, generator)
            params, value, features = acting_net.dist_params_value_features(next_obs)
            action = dist.sample_from_features(params, features, matrices)
        else:
            params, value = acting_net.dist_params_and_value(next_obs)
            action = dist.sample_from_noise(params, noise[t])
        spaces.set_row(buffer.obs, t, next_obs)
        buffer.actions[t] = action
        buffer.dist_params[t] = params
        buffer.values[t] = value
        next_obs, reward, terminated, truncated, final_obs = env.step(action)
        buffer.rewards[t] = np.sign(reward) if clip_reward else reward
        buffer.terminated[t] = terminated
        buffer.ended[t] = terminated | truncated
        if final_obs is not None and truncated.any():
            # Time ran out, the episode did not end: bootstrap from V(final observation).
            buffer.next_values[t, truncated] = acting_net.value(spaces.rows(final_obs, truncated))
    buffer.log_probs[:] = dist.log_prob_from_noise(buffer.dist_params, buffer.actions, noise)
    return next_obs


class InProcessRollouts:
    """Rollouts stepped in this process, acting between env steps (hardware.workers=1, algo.overlap=false):
    the interface of rlrun.sampler.Sampler, which steps them in worker processes instead."""

    def __init__(self, env: VecEnv, acting_net: NumpyActorCritic | TorchActorCritic):
        self.env = env
        self.acting_net = acting_net
        self.next_obs: np.ndarray | None = None

    def start(self) -> None:
        self.next_obs = self.env.reset()

    def collect(self, buffer: RolloutBuffer, generator: torch.Generator, clip_reward: bool = False) -> np.ndarray:
        """Fill `buffer` (collect_rollout); returns V(s_T), GAE's bootstrap after the last step."""
        self.next_obs = collect_rollout(self.env, buffer, self.acting_net, generator, self.next_obs, clip_reward)
        return self.acting_net.value(self.next_obs)

    def close(self) -> None:
        pass


def rollouts_for(env: VecEnv, net: ActorCritic, acting_net: NumpyActorCritic | TorchActorCritic,
                 network: MLPConfig | CNNConfig, hardware, overlap: bool, buffer: RolloutBuffer,
                 shared_torso: bool = False):
    """Where an on-policy algorithm's rollouts come from: this process (InProcessRollouts), or with
    `hardware.workers` > 1 or `overlap` the sampler's worker processes (rlrun.sampler, docs/sampler.md),
    which fill the same RolloutBuffer (one worker process per env at most: with one env and no overlap,
    this process). `net`: the learner's modules, which the workers copy."""
    if min(hardware.workers, env.num_envs) == 1 and not overlap:
        return InProcessRollouts(env, acting_net)
    # The workers' policy copies act with the plain distributions of Box and Discrete actions on array observations.
    unsupported = ("gSDE (algo.use_sde=true)" if getattr(net, "use_sde", False) else
                   "Dict observations" if isinstance(env.observation_space, gym.spaces.Dict) else
                   f"{type(env.action_space).__name__} actions"
                   if not isinstance(env.action_space, (gym.spaces.Discrete, gym.spaces.Box)) else None)
    if unsupported is not None:
        raise ConfigError(f"hardware.workers={hardware.workers} algo.overlap={str(overlap).lower()}: the sampler's "
                          f"worker processes do not act with {unsupported}; set hardware.workers=1 "
                          "algo.overlap=false")
    from rlrun.sampler import Sampler  # its processes only when asked for

    return Sampler(env, net, network, shared_torso, hardware.workers, overlap, buffer.obs.shape[0],
                   buffer.obs.dtype, buffer.actions.dtype, build_networks)


def make_buffer(env: VecEnv, num_steps: int, num_envs: int, net: ActorCritic) -> RolloutBuffer:
    # Discrete, MultiDiscrete and MultiBinary actions are stored as int64 indices or bits.
    action_dtype = np.float32 if env.continuous else np.int64
    # Observations as the VecEnv hands them over: uint8 pixels stay uint8 (8 envs x 128 steps of Atari
    # stacks are 29 MB instead of 116 MB; the CNN scales them), anything normalised or not uint8 is float32.
    # A Dict is a dict of arrays, each key by the same rule (its normalisation leaves images alone).
    space = env.observation_space
    if isinstance(space, gym.spaces.Dict):
        normalized = env.obs_rms.stats if env.obs_rms is not None else {}
        obs_shape = {key: sub.shape for key, sub in space.spaces.items()}
        obs_dtype = {key: np.uint8 if sub.dtype == np.uint8 and key not in normalized else np.float32
                     for key, sub in space.spaces.items()}
    else:
        obs_shape = space.shape
        obs_dtype = np.uint8 if space.dtype == np.uint8 and env.obs_rms is None else np.float32
    return RolloutBuffer(num_steps, num_envs, obs_shape, env.action_space.shape, action_dtype,
                         net.dist.num_params, obs_dtype=obs_dtype)


def build_actor_critic(env: VecEnv, network: MLPConfig, shared_torso: bool,
                       sde: SDESettings | None = None) -> ActorCritic:
    """ActorCritic with separate torsos, or with the critic's hidden layers those of the actor (Mnih
    et al. 2016 share all but the output layers: one softmax and one linear value output)."""
    sde = sde or SDESettings()
    net = ActorCritic(env.observation_space, env.action_space, network, sde.use_sde, sde.sde_sample_freq,
                      sde.sde_use_expln)
    if shared_torso:
        torso = net.actor[:-1]
        # Assigned as a child module, and the critic reuses the same layer objects: one set of
        # parameters, which module.parameters() (and so flatten_parameters) counts once.
        net.critic = nn.Sequential(*torso, linear(network.hidden_sizes[-1], 1, 1.0, network.ortho_init))
        net.shared_torso = True
    return net


def dist_params_and_value(net: ActorCritic, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """pi's parameters and V(s); with a shared torso, its features are computed once for both heads."""
    if not getattr(net, "shared_torso", False):
        return net.dist_params(obs), net.value(obs)
    features = obs
    for layer in net.actor[:-1]:
        features = layer(features)
    return net.head_params(net.actor[-1](features), features), net.critic[-1](features).squeeze(-1)


@torch.inference_mode()
def act(acting_net: NumpyActorCritic, obs: np.ndarray, deterministic: bool, generator: torch.Generator) -> np.ndarray:
    """The evaluation action: the distribution's mode, or a sample."""
    params = acting_net.dist_params(obs)
    if deterministic:
        return acting_net.net.dist.mode(torch.from_numpy(params)).numpy()
    return acting_net.net.dist.act(params, generator)[0]
