"""What the actor-critic on-policy algorithms (A2C, A3C, TRPO) share: collecting a rollout, acting,
and an optional torso shared between actor and critic.

PPO's `collect_rollout` is the same loop; it can use this one (see ppo.py).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rlrun.data import RolloutBuffer
from rlrun.envs import VecEnv
from rlrun.nets import ActorCritic, MLPConfig, NumpyActorCritic
from rlrun.nets.mlp import linear


def collect_rollout(env: VecEnv, buffer: RolloutBuffer, acting_net: NumpyActorCritic, generator: torch.Generator,
                    next_obs: np.ndarray) -> np.ndarray:
    """Run the policy for the buffer's T steps in each env; returns the observation after the last step.

    Acting is numpy on the CPU (NumpyActorCritic): a torch forward on a batch of a few rows costs more
    in dispatch than in arithmetic. The sampling noise of all T steps is drawn in one call, and the
    log-probabilities are computed once for the whole rollout. `buffer.finish*` is left to the caller
    (GAE or n-step returns).
    """
    dist = acting_net.net.dist
    noise = dist.noise(buffer.log_probs.shape, generator)
    buffer.next_values[:] = 0.0  # V(final observation) is filled in below where an episode is truncated
    for t in range(buffer.obs.shape[0]):
        params, value = acting_net.dist_params_and_value(next_obs)
        action = dist.sample_from_noise(params, noise[t])
        buffer.obs[t] = next_obs
        buffer.actions[t] = action
        buffer.dist_params[t] = params
        buffer.values[t] = value
        next_obs, reward, terminated, truncated, final_obs = env.step(action)
        buffer.rewards[t] = reward
        buffer.terminated[t] = terminated
        buffer.ended[t] = terminated | truncated
        if final_obs is not None and truncated.any():
            # Time ran out, the episode did not end: bootstrap from V(final observation).
            buffer.next_values[t, truncated] = acting_net.value(final_obs[truncated])
    buffer.log_probs[:] = dist.log_prob_from_noise(buffer.dist_params, buffer.actions, noise)
    return next_obs


def make_buffer(env: VecEnv, num_steps: int, num_envs: int, net: ActorCritic) -> RolloutBuffer:
    action_dtype = np.float32 if env.continuous else np.int64
    return RolloutBuffer(num_steps, num_envs, env.observation_space.shape, env.action_space.shape, action_dtype,
                         net.dist.num_params)


def build_actor_critic(env: VecEnv, network: MLPConfig, shared_torso: bool) -> ActorCritic:
    """ActorCritic with separate torsos, or with the critic's hidden layers those of the actor (Mnih
    et al. 2016 share all but the output layers: one softmax and one linear value output)."""
    net = ActorCritic(env.observation_space, env.action_space, network)
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
    out = net.actor[-1](features)
    params = out if net.log_std is None else torch.cat([out, net.log_std.expand_as(out)], -1)
    return params, net.critic[-1](features).squeeze(-1)


@torch.inference_mode()
def act(acting_net: NumpyActorCritic, obs: np.ndarray, deterministic: bool, generator: torch.Generator) -> np.ndarray:
    """The evaluation action: the distribution's mode, or a sample."""
    params = acting_net.dist_params(obs)
    if deterministic:
        return acting_net.net.dist.mode(torch.from_numpy(params)).numpy()
    return acting_net.net.dist.act(params, generator)[0]
