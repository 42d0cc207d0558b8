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



def nstep_returns(rewards: np.ndarray, next_values: np.ndarray, terminated: np.ndarray, ended: np.ndarray,
                  gamma: float) -> np.ndarray:
    """n-step returns of Mnih et al. 2016 (Algorithm S3) for arrays shaped (T, N), next_values as in
    `compute_gae`. Each step's return sums the rewards up to the end of the rollout or of its episode
    and bootstraps from V there: from V(s_T) after the last step, from V(last observation) after a
    truncation, from nothing after a termination:

        R_t = r_t + gamma * (1 - terminated_t) * (next_values_t if ended_t else R_{t+1}),  R_T = V(s_T)

    (It equals GAE with lambda = 1 plus V(s_t); written out because A2C/A3C read this way.)
    """
    returns = np.zeros_like(rewards)
    following = next_values[-1]  # R_T := V(s_T), the value of the state after the rollout
    for t in reversed(range(len(rewards))):
        bootstrap = np.where(ended[t] > 0, next_values[t], following)
        following = rewards[t] + gamma * (1.0 - terminated[t]) * bootstrap
        returns[t] = following
    return returns


def discounted_returns(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Reward-to-go of one whole episode: G_t = sum_{k >= t} gamma^(k - t) r_k, for every t."""
    returns = np.zeros(len(rewards), np.float64)
    running = 0.0
    for t in reversed(range(len(rewards))):
        running = rewards[t] + gamma * running
        returns[t] = running
    return returns

class RolloutBuffer:
    """T steps of N envs, preallocated as numpy arrays (writes cost no tensor dispatch); handed to
    the learner as torch tensors, once per update. Observations keep `obs_dtype` (uint8 pixels stay
    uint8 up to the network, which scales them)."""

    def __init__(self, num_steps: int, num_envs: int, obs_shape: tuple[int, ...] | dict[str, tuple[int, ...]],
                 action_shape: tuple[int, ...], action_dtype: np.dtype, num_dist_params: int,
                 obs_dtype: np.dtype | dict[str, np.dtype] = np.float32):
        shape = (num_steps, num_envs)
        # Dict observations: a dict of arrays, one per key (obs_shape and obs_dtype dicts too).
        self.obs = ({key: np.zeros(shape + key_shape, obs_dtype[key]) for key, key_shape in obs_shape.items()}
                    if isinstance(obs_shape, dict) else np.zeros(shape + obs_shape, obs_dtype))
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

    def bootstrap(self, last_values: np.ndarray) -> None:
        """Fill in next_values for steps whose episode went on: V(s_{t+1}), and V(s_T) for the last."""
        following = np.concatenate([self.values[1:], last_values[None]], 0)
        self.next_values = np.where(self.ended > 0, self.next_values, following)

    def finish(self, last_values: np.ndarray, gamma: float, lam: float) -> None:
        """Fill in next_values for steps whose episode went on, then advantages and returns."""
        self.bootstrap(last_values)
        self.advantages = compute_gae(self.rewards, self.values, self.next_values, self.terminated,
                                      self.ended, gamma, lam)
        self.returns = self.advantages + self.values

    def finish_nstep(self, last_values: np.ndarray, gamma: float) -> None:
        """Like `finish`, with n-step returns and advantages R_t - V(s_t) (A2C/A3C) instead of GAE."""
        self.bootstrap(last_values)
        self.returns = nstep_returns(self.rewards, self.next_values, self.terminated, self.ended, gamma)
        self.advantages = self.returns - self.values

    def flat_tensors(self, device: torch.device) -> dict[str, torch.Tensor]:
        """Every stored array with (T, N) merged into one batch axis, as tensors on `device`."""
        def flat(array: np.ndarray) -> torch.Tensor:
            return torch.from_numpy(np.ascontiguousarray(array.reshape((-1,) + array.shape[2:]))).to(device)

        names = ("actions", "log_probs", "dist_params", "values", "advantages", "returns")
        obs = {key: flat(array) for key, array in self.obs.items()} if isinstance(self.obs, dict) else flat(self.obs)
        return {"obs": obs, **{name: flat(getattr(self, name)) for name in names}}


def minibatches(batch: dict, order: torch.Tensor, size: int) -> list[dict]:
    """`batch` (flat_tensors' dict; a Dict observation is a dict of tensors) shuffled by `order` and cut
    into minibatches of `size` rows."""
    def chunks(tensor: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tensor[order].split(size)

    cut = {name: ({key: chunks(t) for key, t in value.items()} if isinstance(value, dict) else chunks(value))
           for name, value in batch.items()}
    count = len(cut["values"])
    return [{name: ({key: parts[i] for key, parts in value.items()} if isinstance(value, dict) else value[i])
             for name, value in cut.items()} for i in range(count)]
