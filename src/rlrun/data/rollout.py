"""On-policy rollout storage and generalised advantage estimation."""

from __future__ import annotations

import numpy as np
import torch


def compute_gae(rewards: np.ndarray, values: np.ndarray, next_values: np.ndarray, terminated: np.ndarray,
                ended: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    """Generalised advantage estimates (Schulman et al. 2016, eq. 16) for arrays shaped (T, N).

    next_values[t] is V of the state that truly followed step t: the next observation, or for an
    episode that ended at t, its last observation. A terminated episode has no future (its value is
    not used); a truncated one is bootstrapped from V(last observation) but, like a terminated one,
    stops the advantage recursion, because step t+1 belongs to a new episode:

        delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - V(s_t)
        A_t     = delta_t + gamma * lam * (1 - ended_t) * A_{t+1}
    """
    not_terminated = 1.0 - terminated
    continues = 1.0 - ended
    deltas = rewards + gamma * not_terminated * next_values - values
    advantages = np.zeros_like(values)
    running = np.zeros_like(values[0])
    for t in reversed(range(len(rewards))):
        running = deltas[t] + gamma * lam * continues[t] * running
        advantages[t] = running
    return advantages


class RolloutBuffer:
    """T steps of N envs, preallocated as numpy arrays (writes cost no tensor dispatch); handed to
    the learner as torch tensors, once per update."""

    def __init__(self, num_steps: int, num_envs: int, obs_shape: tuple[int, ...], action_shape: tuple[int, ...],
                 action_dtype: np.dtype, num_dist_params: int):
        shape = (num_steps, num_envs)
        self.obs = np.zeros(shape + obs_shape, np.float32)
        self.actions = np.zeros(shape + action_shape, action_dtype)
        self.log_probs = np.zeros(shape, np.float32)
        self.dist_params = np.zeros(shape + (num_dist_params,), np.float32)
        self.values = np.zeros(shape, np.float32)
        self.rewards = np.zeros(shape, np.float32)
        self.terminated = np.zeros(shape, np.float32)
        self.ended = np.zeros(shape, np.float32)
        # V(true next state), filled for ended episodes during the rollout and for the rest in finish().
        self.next_values = np.zeros(shape, np.float32)
        self.advantages = np.zeros(shape, np.float32)
        self.returns = np.zeros(shape, np.float32)

    def finish(self, last_values: np.ndarray, gamma: float, lam: float) -> None:
        """Fill in next_values for steps whose episode went on, then advantages and returns."""
        following = np.concatenate([self.values[1:], last_values[None]], 0)
        self.next_values = np.where(self.ended > 0, self.next_values, following)
        self.advantages = compute_gae(self.rewards, self.values, self.next_values, self.terminated,
                                      self.ended, gamma, lam)
        self.returns = self.advantages + self.values

    def flat_tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Every stored array with (T, N) merged into one batch axis, as tensors on `device`."""
        names = ("obs", "actions", "log_probs", "dist_params", "values", "advantages", "returns")
        return {name: torch.from_numpy(np.ascontiguousarray(
                    getattr(self, name).reshape((-1,) + getattr(self, name).shape[2:]))).to(device)
                for name in names}
