"""The loop that DQN, DDPG, TD3 and SAC share: act, store in replay, learn from replayed minibatches.

An algorithm subclasses `OffPolicy` and supplies what its paper specifies: `explore` (the behaviour
policy: epsilon-greedy, action noise, a stochastic actor), `act` (the evaluation policy) and
`train_step` (one gradient step on a replayed minibatch), plus its networks in `state_dict`.
"""

from __future__ import annotations

from collections.abc import Iterator

import gymnasium as gym
import numpy as np
import torch

from rlrun.data import ReplayBuffer
from rlrun.envs import VecEnv, spaces
from rlrun.hardware import Hardware


class MetricMeans:
    """Each metric's mean over an iteration's updates (some metrics come from only some updates: TD3's
    delayed actor), as numbers, with one host sync per metric at the end. The 0-d tensors are summed
    `chunk` at a time, one stack and sum, rather than one add per update (DQN's 128 updates a phase);
    not all kept to the end either: SAC's loop held 6,000 of them through an iteration and ran ~1%
    slower, the heap holding them among the updates' large buffers."""

    def __init__(self, chunk: int = 32):
        self.chunk = chunk
        self.pending: dict[str, list[torch.Tensor]] = {}
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def add(self, metrics: dict[str, torch.Tensor]) -> None:
        for key, value in metrics.items():
            pending = self.pending.setdefault(key, [])
            pending.append(value)
            if len(pending) == self.chunk:
                self.fold(key)

    def fold(self, key: str) -> None:
        pending = self.pending[key]
        total = torch.stack(pending).sum()
        self.sums[key] = self.sums[key] + total if key in self.sums else total
        self.counts[key] = self.counts.get(key, 0) + len(pending)
        pending.clear()

    def result(self) -> dict[str, float]:
        for key, pending in self.pending.items():
            if pending:
                self.fold(key)
        return {key: (total / self.counts[key]).item() for key, total in self.sums.items()}


class OffPolicy:
    """Subclasses set `self.cfg` with: num_envs, buffer_size, learning_starts (env steps of uniform random
    actions before the behaviour policy takes over, and transitions stored before learning starts),
    batch_size, train_frequency (env steps per vector env, between learning phases), gradient_steps
    (per learning phase) and steps_per_iteration (env steps between yielded metrics)."""

    # Set by a subclass whose train_step draws nothing from self.generator (DQN): a learning phase's
    # minibatches are then drawn in one go, the same indices as drawn one by one (see minibatches).
    samples_phase_at_once = False

    def __init__(self, cfg, env: VecEnv, hardware: Hardware, seed: int, total_steps: int):
        self.cfg = cfg
        self.env = env
        self.device = hardware.device
        self.total_steps = total_steps
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        self.replay = self.make_replay(cfg, env)
        self.global_step = 0
        self.gradient_updates = 0

    # --- what an algorithm supplies -----------------------------------------------------------------

    def make_replay(self, cfg, env: VecEnv) -> ReplayBuffer:
        """The replay memory (DQN on Atari takes one that stores each frame once)."""
        return ReplayBuffer(cfg.buffer_size, env.observation_space, env.action_space)

    def explore(self, obs: np.ndarray) -> np.ndarray:
        """Actions of the behaviour policy for a batch of observations."""
        raise NotImplementedError

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """Actions of the evaluation policy."""
        raise NotImplementedError

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """One gradient step on a replayed minibatch; returns its metrics as 0-d tensors (no host sync).
        A metric may be left out of a step that does not compute it; each is averaged over the steps
        that report it, once per iteration (so a tensor returned must not be changed in place later)."""
        raise NotImplementedError

    # --- the loop -------------------------------------------------------------------------------------

    def random_actions(self) -> np.ndarray:
        """Uniform actions from the run's generator (so a resumed or repeated run draws the same ones)."""
        space, n = self.env.action_space, self.env.num_envs
        if isinstance(space, gym.spaces.Discrete):
            return torch.randint(int(space.n), (n,), generator=self.generator).numpy()
        uniform = torch.rand((n, *space.shape), generator=self.generator).numpy()
        return (space.low + (space.high - space.low) * uniform).astype(np.float32)

    def learn(self) -> Iterator[dict]:
        cfg = self.cfg
        n = self.env.num_envs
        obs = self.env.reset()
        while True:
            means = MetricMeans()
            for _ in range(max(1, cfg.steps_per_iteration // n)):
                actions = self.random_actions() if self.global_step < cfg.learning_starts else self.explore(obs)
                next_obs, reward, terminated, truncated, final_obs = self.env.step(actions)
                true_next = next_obs
                if final_obs is not None:
                    true_next = spaces.where_rows(terminated | truncated, final_obs, next_obs)
                self.replay.add(obs, actions, reward, true_next, terminated, truncated)
                obs = next_obs
                self.global_step += n
                # Learning waits for learning_starts stored transitions, which also covers a run resumed
                # without its replay buffer: it refills before it trains again.
                if self.replay.size >= cfg.learning_starts and (self.global_step // n) % cfg.train_frequency == 0:
                    for batch in self.minibatches(cfg.gradient_steps):
                        means.add(self.train_step(batch))
                        self.gradient_updates += 1
            returns, lengths = self.env.pop_episodes()
            yield {"global_step": self.global_step, "episodic_returns": returns, "episodic_lengths": lengths,
                   **means.result(),
                   "train/gradient_updates": float(self.gradient_updates)}

    def minibatches(self, count: int) -> Iterator[dict[str, torch.Tensor]]:
        """The `count` minibatches of one learning phase, each drawn just before its update; or, where
        train_step draws no random numbers (`samples_phase_at_once`) and the replay can, all drawn at
        once: one randint and one gather per array instead of `count` of each, which after each update's
        matrix products (which leave the caches cold) cost DQN ~40 us a sample here."""
        if self.samples_phase_at_once and count > 1 and hasattr(self.replay, "sample_many"):
            yield from self.replay.sample_many(count, self.cfg.batch_size, self.generator, self.device)
            return
        for _ in range(count):
            yield self.replay.sample(self.cfg.batch_size, self.generator, self.device)

    # --- checkpointing --------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The loop's state; subclasses add their networks and optimisers. The runner keeps "replay"
        only with checkpoint.replay=true."""
        return {"global_step": self.global_step, "gradient_updates": self.gradient_updates,
                "generator": self.generator.get_state(), "replay": self.replay.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.global_step = state["global_step"]
        self.gradient_updates = state["gradient_updates"]
        self.generator.set_state(state["generator"])
        if "replay" in state:
            self.replay.load_state_dict(state["replay"])
