"""Running mean and variance, for observation and reward normalisation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch


class RunningMeanStd:
    """Mean and variance of every sample seen so far, merged batch by batch.

    Uses the parallel combination of Chan, Golub and LeVeque (1979), so updating with batches gives
    the same statistics as one pass over all samples. float64 keeps millions of updates accurate.
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4):
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        # A tiny prior count keeps the first update from dividing by zero (as in OpenAI baselines).
        self.count = epsilon

    def update(self, batch: np.ndarray) -> None:
        """Fold in a batch of samples laid out along the first axis."""
        batch_count = batch.shape[0]
        if batch_count == 1:
            # One env: the formula below with batch_mean = x and batch_var = 0, to the same bits, in
            # half the numpy calls (this runs twice per env step; a scalar statistic stays scalar).
            delta = batch[0] - self.mean
            total = self.count + 1
            self.mean = self.mean + delta * (1 / total)
            self.var = (self.var * self.count + np.square(delta) * (self.count / total)) / total
            self.count = total
            return
        # add.reduce rather than mean/var: this runs every env step on a handful of numbers, where
        # numpy's Python-level wrappers cost more than the arithmetic.
        batch_mean = np.add.reduce(batch, axis=0) / batch_count
        batch_var = np.add.reduce(np.square(batch - batch_mean), axis=0) / batch_count
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * (batch_count / total)
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * (self.count * batch_count / total)
        self.var = m2 / total
        self.count = total

    def normalize(self, obs: np.ndarray, bound: float) -> np.ndarray:
        """(obs - mean) / std, clipped to [-bound, bound], as float32."""
        normalized = (obs - self.mean) / np.sqrt(self.var + 1e-8)
        return np.minimum(np.maximum(normalized, -bound), bound).astype(np.float32)

    def state_dict(self) -> dict:
        return {"mean": torch.from_numpy(np.array(self.mean)), "var": torch.from_numpy(np.array(self.var)),
                "count": float(self.count)}

    def load_state_dict(self, state: dict) -> None:
        self.mean = state["mean"].numpy().astype(np.float64)
        self.var = state["var"].numpy().astype(np.float64)
        self.count = float(state["count"])


class DictRunningMeanStd:
    """The statistics of each vector key of Dict observations; image keys (3 dimensions) are left as
    they are, as SB3's VecNormalize does: the CNN scales pixels itself."""

    def __init__(self, space: gym.spaces.Dict):
        self.stats = {name: RunningMeanStd(sub.shape) for name, sub in space.spaces.items() if len(sub.shape) != 3}

    def update(self, obs: dict[str, np.ndarray]) -> None:
        for name, stats in self.stats.items():
            stats.update(obs[name])

    def normalize(self, obs: dict[str, np.ndarray], bound: float) -> dict[str, np.ndarray]:
        return {name: self.stats[name].normalize(value, bound) if name in self.stats
                else (value if value.dtype == np.uint8 else value.astype(np.float32, copy=False))
                for name, value in obs.items()}

    def state_dict(self) -> dict:
        return {"keys": {name: stats.state_dict() for name, stats in self.stats.items()}}

    def load_state_dict(self, state: dict) -> None:
        for name, stats in self.stats.items():
            stats.load_state_dict(state["keys"][name])


def obs_statistics(space: gym.Space) -> RunningMeanStd | DictRunningMeanStd:
    """Running statistics for observations of `space` (as the networks read them)."""
    if isinstance(space, gym.spaces.Dict):
        return DictRunningMeanStd(space)
    return RunningMeanStd(space.shape)
