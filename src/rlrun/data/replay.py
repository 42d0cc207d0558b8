"""Replay memory for off-policy algorithms: a ring of preallocated numpy arrays (per key for Dict observations)."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from rlrun.envs import spaces

FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated")


def stored_dtype(dtype) -> np.dtype:
    """Floats as float32, what the networks take (the env's float64 would double the memory); others as they are."""
    return np.dtype(np.float32) if np.issubdtype(dtype, np.floating) else np.dtype(dtype)


def storage(space: gym.Space, capacity: int) -> spaces.Obs:
    """Zeros for `capacity` observations of `space`: an array, or a dict of arrays for a Dict space."""
    if isinstance(space, gym.spaces.Dict):
        return {key: storage(sub, capacity) for key, sub in space.spaces.items()}
    return np.zeros((capacity, *space.shape), stored_dtype(space.dtype))


def per_key(fn, value):
    """fn(value), or fn of each value of a dict (a Dict observation's arrays)."""
    return {key: fn(part) for key, part in value.items()} if isinstance(value, dict) else fn(value)


class ReplayBuffer:
    """Transitions (s, a, r, s', terminated) from N envs, the oldest overwritten once `capacity` is full.

    s' is the observation that truly followed s: for a step that ended an episode, the episode's last
    observation (not the first one of the next episode, which the vector env returns in its place).
    Only termination is stored: a transition cut by a time limit is bootstrapped like any other, since
    the state it reached still has a future (Pardo et al. 2018, "Time Limits in RL").

    With `n_step` > 1 a sampled transition is the n-step one (Sutton 1988; Hessel et al. 2018, eq. 2):
    r = sum_{k<m} gamma^k r_{t+k}, s' = s_{t+m}, terminated at t+m-1, and "discounts" = gamma^m, where m
    is n or fewer: the walk stops at the end of the episode (terminated or cut by a time limit) and at
    the newest stored step (`n_step_walk`). The transitions are stored one step each, as always: the sum
    is made when sampled, so n is one number of the sampler, and the memory holds no overlapping copies.
    """

    def __init__(self, capacity: int, observation_space: gym.Space, action_space: gym.Space, n_step: int = 1,
                 gamma: float = 1.0):
        self.capacity = capacity
        self.n_step = n_step
        self.gamma = gamma
        # A Dict observation space: a dict of arrays, one per key (uint8 images stay uint8).
        self.obs = storage(observation_space, capacity)
        self.next_obs = storage(observation_space, capacity)
        discrete = isinstance(action_space, gym.spaces.Discrete)
        self.actions = np.zeros((capacity, *action_space.shape), np.int64 if discrete else np.float32)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        # For n-step sums only: where an episode ended (terminated or truncated), the walk stops.
        self.episode_ends = np.zeros(capacity if n_step > 1 else 0, bool)
        self.rows_per_step = 1  # transitions added per env step (the number of envs), set by add
        self.pos = 0
        self.size = 0

    def fields(self) -> tuple[str, ...]:
        """The arrays a checkpoint holds."""
        return FIELDS + ("episode_ends",) if self.n_step > 1 else FIELDS

    @staticmethod
    def nbytes(capacity: int, observation_space: gym.Space, action_space: gym.Space) -> int:
        """The bytes the arrays take once full: s and s' whole, action, reward, terminated."""
        subspaces = (observation_space.spaces.values() if isinstance(observation_space, gym.spaces.Dict)
                     else [observation_space])
        obs = sum(int(np.prod(sub.shape)) * stored_dtype(sub.dtype).itemsize for sub in subspaces)
        action = int(np.prod(action_space.shape)) * (8 if isinstance(action_space, gym.spaces.Discrete) else 4)
        return capacity * (2 * obs + action + 4 + 4)

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray | None = None) -> None:
        """Store one transition per env (arrays with the env index first). `truncated` marks an episode's
        end for n-step sums; s' itself is stored whole (rlrun.data.frames.FrameStackReplay rebuilds it)."""
        n = spaces.batch_size(obs)
        self.rows_per_step = n
        # A slice where the envs' slots do not wrap around the ring (nearly always): cheaper than an index array.
        index = (slice(self.pos, self.pos + n) if self.pos + n <= self.capacity
                 else (self.pos + np.arange(n)) % self.capacity)
        spaces.set_row(self.obs, index, obs)
        self.actions[index] = actions
        self.rewards[index] = rewards
        spaces.set_row(self.next_obs, index, next_obs)
        self.terminated[index] = terminated
        if self.n_step > 1:
            self.episode_ends[index] = terminated if truncated is None else np.logical_or(terminated, truncated)
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
        """A uniform sample with replacement, as tensors on `device`."""
        return self.gather(torch.randint(self.size, (batch_size,), generator=generator).numpy(), device)

    def gather(self, index: np.ndarray, device: torch.device) -> dict[str, torch.Tensor]:
        """The transitions at `index`, as tensors on `device` (n-step ones with n_step > 1, plus "discounts")."""
        if self.n_step == 1:
            return {name: per_key(lambda array: torch.from_numpy(array[index]).to(device), getattr(self, name))
                    for name in FIELDS}
        rewards, last, discounts = self.n_step_walk(index)
        first = lambda array: torch.from_numpy(array[index]).to(device)  # noqa: E731 (the rows s, a come from)
        closing = lambda array: torch.from_numpy(array[last]).to(device)  # noqa: E731 (the row s' comes from)
        return {"obs": per_key(first, self.obs), "actions": first(self.actions),
                "rewards": torch.from_numpy(rewards).to(device), "next_obs": per_key(closing, self.next_obs),
                "terminated": closing(self.terminated), "discounts": torch.from_numpy(discounts).to(device)}

    def n_step_walk(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For the transitions at `index`: the n-step return sum_{k<m} gamma^k r_{t+k}, the row of the
        step t+m-1 whose s' and termination close it, and gamma^m. The same env's next step is
        `rows_per_step` rows on (add writes one row per env, in env order, every step); a row exists if
        it was written after t (at most (pos - 1 - t) mod capacity rows on). The sum stops after a step
        that ended the episode: past it the row belongs to the next episode."""
        stride = self.rows_per_step
        newer = (self.pos - 1 - index) % self.capacity  # rows written after each sampled one
        returns = self.rewards[index].astype(np.float64)
        last = index.copy()
        discounts = np.full(len(index), self.gamma)
        going = ~self.episode_ends[index]
        for k in range(1, self.n_step):
            going &= newer >= k * stride
            row = (index + k * stride) % self.capacity
            returns += np.where(going, discounts * self.rewards[row], 0.0)
            last = np.where(going, row, last)
            discounts = np.where(going, discounts * self.gamma, discounts)
            going &= ~self.episode_ends[row]
        return returns.astype(np.float32), last, discounts.astype(np.float32)

    def sample_many(self, count: int, batch_size: int, generator: torch.Generator, device: torch.device
                    ) -> list[dict[str, torch.Tensor]]:
        """`count` samples of `batch_size`, those that `count` calls of sample() would draw one after
        another (torch draws count * batch_size integers in one call as it draws them in count calls),
        gathered together: views of one sample of count * batch_size rows."""
        whole = self.sample(count * batch_size, generator, device)
        parts = {name: per_key(lambda tensor: tensor.split(batch_size), value) for name, value in whole.items()}
        return [{name: per_key(lambda pieces: pieces[i], split) for name, split in parts.items()} for i in range(count)]

    def state_dict(self) -> dict:
        """The filled part only, as tensors sharing the arrays' memory (no copy until written)."""
        arrays = {name: per_key(lambda array: torch.from_numpy(array[: self.size]), getattr(self, name))
                  for name in self.fields()}
        return {**arrays, "pos": self.pos, "size": self.size, "rows_per_step": self.rows_per_step}

    def load_state_dict(self, state: dict) -> None:
        size = state["size"]
        if size > self.capacity:
            raise ValueError(f"checkpoint replay holds {size} transitions, more than buffer_size={self.capacity}")
        if self.n_step > 1 and "episode_ends" not in state:
            raise ValueError(f"checkpoint replay has no episode ends, which algo.n_step={self.n_step} needs: it was "
                             "saved with algo.n_step=1; resume with algo.n_step=1 or checkpoint.replay=false")
        self.rows_per_step = state.get("rows_per_step", 1)
        for name in self.fields():
            spaces.set_row(getattr(self, name), slice(0, size), per_key(lambda tensor: tensor.numpy(), state[name]))
        self.pos, self.size = state["pos"] % self.capacity, size
