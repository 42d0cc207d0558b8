"""Discounted returns of evaluation episodes, and the value check of van Hasselt et al. (2016, Figure 3):
the network's value estimate max_a Q(s_t, a) against the discounted return actually collected from s_t.

The value estimate answers "what will I collect from here on, discounted by gamma", for the episode as the
learner sees it: up to its terminal (a lost life under the Atari "nature" protocol is one), in the reward
units it learns from (sign(r) with DQN's reward clipping). The actual return-to-go is measured in the same
terms, so the two are comparable:

    G_t = sum_{k=t}^{T-1} gamma^(k-t) r_k          (an episode of T steps, rewards r_0 .. r_{T-1})

An episode that *terminated* ends there: G_t is exact, since the value after a terminal is 0. An episode
cut by a time limit (CartPole's 500 steps, Atari's 27,000) is *truncated*: Q estimates the value of the
untruncated future (the learner bootstraps across time limits, Pardo et al. 2018), but G_t misses the tail
gamma^(T-t) V(s_T). Bootstrapping that tail from Q itself would mix the estimate being judged into the truth
it is judged against, so such states are left out instead, unless their missing tail weighs less than
TAIL_WEIGHT: gamma^(T-t) < 0.01, i.e. the tail is under 1% of a value of the same size (with gamma = 0.99,
the states at least 459 steps before the cut). The estimate is averaged over the same states as the
return, so the comparison stays like for like; the number of states counted is recorded beside them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlrun.data import discounted_returns  # G_t for every t: REINFORCE's reward-to-go

TAIL_WEIGHT = 1e-2  # gamma^(T-t) below this: the missing tail of a truncated return-to-go is negligible


def discounted_return(rewards, gamma: float) -> float:
    """sum_t gamma^t r_t over a whole episode."""
    rewards = np.asarray(rewards, dtype=float)
    return float(np.sum(rewards * gamma ** np.arange(len(rewards))))


def counted_steps(length: int, gamma: float, truncated: bool) -> np.ndarray:
    """Mask of the steps whose return-to-go is the true discounted value: all of a terminated episode;
    of a truncated one, those whose missing tail weight gamma^(T-t) is below TAIL_WEIGHT."""
    if not truncated:
        return np.ones(length, bool)
    remaining = length - np.arange(length)  # T - t
    return gamma ** remaining.astype(float) < TAIL_WEIGHT


@dataclass
class Segment:
    """One learner episode of an evaluation: max_a Q(s_t, a) and the reward r_t at each step."""
    max_q: list[float]
    rewards: list[float]
    truncated: bool


@dataclass
class ValueCheck:
    value_estimate: float   # mean of max_a Q(s_t, a) over the counted states (nan: none counted)
    return_to_go: float     # mean of the actual discounted return G_t over the same states
    states: int             # how many states were counted


def value_check(segments: list[Segment], gamma: float) -> ValueCheck:
    """Mean value estimate and mean actual return-to-go over every counted state of the segments."""
    estimates, actual = [], []
    for segment in segments:
        mask = counted_steps(len(segment.rewards), gamma, segment.truncated)
        estimates.append(np.asarray(segment.max_q, dtype=float)[mask])
        actual.append(discounted_returns(np.asarray(segment.rewards, dtype=float), gamma)[mask])
    estimates = np.concatenate(estimates) if estimates else np.zeros(0)
    actual = np.concatenate(actual) if actual else np.zeros(0)
    if not len(estimates):
        return ValueCheck(float("nan"), float("nan"), 0)
    return ValueCheck(float(estimates.mean()), float(actual.mean()), len(estimates))
