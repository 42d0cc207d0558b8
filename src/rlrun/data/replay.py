"""Replay memory for off-policy algorithms: a ring of preallocated numpy arrays."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch


class ReplayBuffer:
    """Transitions (s, a, r, s', terminated) from N envs, the oldest overwritten once `capacity` is full.

    s' is the observation that truly followed s: for a step that ended an episode, the episode's last
    observation (not the first one of the next episode, which the vector env returns in its place).
    Only termination is stored: a transition cut by a time limit is bootstrapped like any other, since
    the state it reached still has a future (Pardo et al. 2018, "Time Limits in RL").
    """

    def __init__(self, capacity: int, observation_space: gym.Space, action_space: gym.Space):
        self.capacity = capacity
        obs_shape, obs_dtype = observation_space.shape, observation_space.dtype
        if np.issubdtype(obs_dtype, np.floating):
            obs_dtype = np.float32  # what the networks take; the env's float64 would double the memory
        self.obs = np.zeros((capacity, *obs_shape), obs_dtype)
        self.next_obs = np.zeros((capacity, *obs_shape), obs_dtype)
        discrete = isinstance(action_space, gym.spaces.Discrete)
        self.actions = np.zeros((capacity, *action_space.shape), np.int64 if discrete else np.float32)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminated = np.zeros(capacity, np.float32)
        self.pos = 0
        self.size = 0

    @staticmethod
    def nbytes(capacity: int, observation_space: gym.Space, action_space: gym.Space) -> int:
        """The bytes the arrays take once full: s and s' whole, action, reward, terminated."""
        itemsize = np.dtype(np.float32 if np.issubdtype(observation_space.dtype, np.floating)
                            else observation_space.dtype).itemsize
        action = int(np.prod(action_space.shape)) * (8 if isinstance(action_space, gym.spaces.Discrete) else 4)
        return capacity * (2 * int(np.prod(observation_space.shape)) * itemsize + action + 4 + 4)

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray | None = None) -> None:
        """Store one transition per env (arrays with the env index first). `truncated` is not needed here:
        s' is stored whole (rlrun.data.frames.FrameStackReplay, which rebuilds it, needs it)."""
        n = len(obs)
        # A slice where the envs' slots do not wrap around the ring (nearly always): cheaper than an index array.
        index = (slice(self.pos, self.pos + n) if self.pos + n <= self.capacity
                 else (self.pos + np.arange(n)) % self.capacity)
        self.obs[index] = obs
        self.actions[index] = actions
        self.rewards[index] = rewards
        self.next_obs[index] = next_obs
        self.terminated[index] = terminated
        self.pos = (self.pos + n) % self.capacity
        self.size = min(self.size + n, self.capacity)

    def sample(self, batch_size: int, generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
        """A uniform sample with replacement, as tensors on `device`."""
        index = torch.randint(self.size, (batch_size,), generator=generator).numpy()
        return {name: torch.from_numpy(getattr(self, name)[index]).to(device)
                for name in ("obs", "actions", "rewards", "next_obs", "terminated")}

    def sample_many(self, count: int, batch_size: int, generator: torch.Generator, device: torch.device
                    ) -> list[dict[str, torch.Tensor]]:
        """`count` samples of `batch_size`, those that `count` calls of sample() would draw one after
        another (torch draws count * batch_size integers in one call as it draws them in count calls),
        gathered together: views of one sample of count * batch_size rows."""
        whole = self.sample(count * batch_size, generator, device)
        parts = {name: tensor.split(batch_size) for name, tensor in whole.items()}
        return [{name: split[i] for name, split in parts.items()} for i in range(count)]

    def state_dict(self) -> dict:
        """The filled part only, as tensors sharing the arrays' memory (no copy until written)."""
        arrays = {name: torch.from_numpy(getattr(self, name)[: self.size])
                  for name in ("obs", "actions", "rewards", "next_obs", "terminated")}
        return {**arrays, "pos": self.pos, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        size = state["size"]
        if size > self.capacity:
            raise ValueError(f"checkpoint replay holds {size} transitions, more than buffer_size={self.capacity}")
        for name in ("obs", "actions", "rewards", "next_obs", "terminated"):
            getattr(self, name)[:size] = state[name].numpy()
        self.pos, self.size = state["pos"] % self.capacity, size
