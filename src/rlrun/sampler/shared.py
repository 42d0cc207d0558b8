"""Rollout arrays in shared memory: written by the sampler's worker processes, read by the learner.

Each array is a torch tensor in shared memory (torch's file-descriptor sharing, the mechanism A3C's
shared model uses), seen as a numpy view on both sides: a worker writes its slice of envs step by
step, and nothing is pickled per step; only a short command and reply cross a pipe per rollout.
"""

from __future__ import annotations

import numpy as np
import torch


def shared_array(shape: tuple[int, ...], dtype: np.dtype) -> torch.Tensor:
    """A zeroed tensor in shared memory with numpy's `dtype` (numpy -> torch through an empty array)."""
    return torch.zeros(shape, dtype=torch.from_numpy(np.empty(0, dtype)).dtype).share_memory_()


class SharedRollout:
    """One rollout of T steps of N envs, plus what the learner hands the workers for it.

    Written by the workers (their columns `lo:hi` of every (T, N, ...) array):
      obs, actions, dist_params, values, rewards, terminated, ended, next_values   as rlrun.data.RolloutBuffer
      last_values (N,)        V(s_T) of the behaviour policy, for GAE's bootstrap
      obs_record (T, N, ...)  the raw observations the env's normaliser would have folded in (normalize_obs)
      return_record (T, N)    the discounted returns the reward scaler would have folded in (normalize_reward)
    Written by the learner before the rollout:
      params (P,)             the behaviour policy's parameters, module order (nn.Module.parameters())
      noise (T, N, ...)       the sampling noise of every step (the learner's generator draws it, as in-process)
      obs_mean, obs_var, return_var   the normalisation statistics, frozen for the rollout
    """

    def __init__(self, num_steps: int, num_envs: int, obs_shape: tuple[int, ...], obs_dtype: np.dtype,
                 action_shape: tuple[int, ...], action_dtype: np.dtype, num_dist_params: int, num_params: int,
                 noise: np.ndarray, normalize_obs: bool, normalize_reward: bool):
        steps = (num_steps, num_envs)
        self.tensors = {
            "obs": shared_array(steps + obs_shape, obs_dtype),
            "actions": shared_array(steps + action_shape, action_dtype),
            "dist_params": shared_array(steps + (num_dist_params,), np.float32),
            **{name: shared_array(steps, np.float32)
               for name in ("values", "rewards", "terminated", "ended", "next_values")},
            "last_values": shared_array((num_envs,), np.float32),
            "params": shared_array((num_params,), np.float32),
            "noise": shared_array(noise.shape, noise.dtype),
        }
        if normalize_obs:
            self.tensors |= {"obs_mean": shared_array(obs_shape, np.float64),
                             "obs_var": shared_array(obs_shape, np.float64),
                             "obs_record": shared_array(steps + obs_shape, np.float64)}
        if normalize_reward:
            self.tensors |= {"return_var": shared_array((), np.float64),
                             "return_record": shared_array(steps, np.float64)}
        self.arrays = {name: tensor.numpy() for name, tensor in self.tensors.items()}

    # Pickled for a 'spawn' worker as its shared tensors (torch passes their memory, not their contents).
    def __getstate__(self) -> dict:
        return {"tensors": self.tensors}

    def __setstate__(self, state: dict) -> None:
        self.tensors = state["tensors"]
        self.arrays = {name: tensor.numpy() for name, tensor in self.tensors.items()}
