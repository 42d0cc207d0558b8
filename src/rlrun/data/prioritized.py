"""Prioritized experience replay, proportional variant (Schaul et al. 2016, "Prioritized Experience Replay").

Transition i is sampled with probability P(i) = p_i / sum_k p_k (eq. 1), where p_i = (|delta_i| + eps)^alpha
is its last TD error's magnitude raised to alpha (alpha = 0: uniform). A new transition gets the largest
priority seen so far, so that each is replayed at least once soon after it is stored (Algorithm 1, line 6).
The priorities live in a sum tree: each inner node holds the sum of its two children, so that a prefix
sum is found, and a leaf changed, in O(log N). A min tree beside it gives min_i P(i), which normalises
the importance-sampling weights (computed by the learner, rlrun.algos.dqn.importance_weights).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from rlrun.data.replay import ReplayBuffer


class SumTree:
    """A complete binary tree over `capacity` leaves (rounded up to a power of two; the extra leaves hold
    0), in one array: node 1 is the root, node k's children are 2k and 2k + 1, leaf i is node L + i.
    Every operation works on a batch of leaves at once, one numpy operation per level of the tree.
    A min tree is kept alongside (extra leaves hold +inf) for the smallest priority."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.depth = max(0, (capacity - 1).bit_length())  # levels above the leaves
        self.leaves = 1 << self.depth  # L, the first leaf's node
        self.sums = np.zeros(2 * self.leaves, np.float64)
        self.mins = np.full(2 * self.leaves, np.inf, np.float64)

    @property
    def total(self) -> float:
        return float(self.sums[1])

    @property
    def min(self) -> float:
        return float(self.mins[1])

    def priorities(self, index: np.ndarray | slice) -> np.ndarray:
        """The leaves' priorities at `index` (leaf numbers 0 .. capacity - 1)."""
        return self.sums[self.leaves:][index]

    def update(self, index: np.ndarray, priorities: np.ndarray) -> None:
        """Set the leaves `index` to `priorities` (a repeated leaf keeps its last value, as sequential
        updates would), then recompute their ancestors from their children, level by level. Each node is
        always its children's sum computed afresh (never adjusted by a difference), so the tree's values
        depend only on its leaves: one rebuilt from saved leaves (load) is the same bit for bit."""
        nodes = np.array(index, np.int64) + self.leaves  # a copy: shifted in place below
        self.sums[nodes] = priorities
        self.mins[nodes] = priorities
        # A node that appears twice (two changed leaves below it) is set twice to the same value: no
        # need to deduplicate. All the nodes are on one level, so the loop ends at the root, node 1.
        sums, mins = self.sums.reshape(-1, 2), self.mins.reshape(-1, 2)  # row k: node k's children
        for _ in range(self.depth):
            nodes >>= 1
            children = sums[nodes]
            self.sums[nodes] = children[:, 0] + children[:, 1]
            children = mins[nodes]
            self.mins[nodes] = np.minimum(children[:, 0], children[:, 1])

    def find(self, mass: np.ndarray) -> np.ndarray:
        """For each value m in [0, total), the leaf i with sum_{k<i} p_k <= m < sum_{k<=i} p_k: descend
        from the root, going right (and subtracting the left child's sum) where m >= the left sum."""
        nodes = np.ones(len(mass), np.int64)
        mass = np.array(mass, np.float64)
        for _ in range(self.depth):
            left = 2 * nodes
            left_sum = self.sums[left]
            right = mass >= left_sum
            mass = np.where(right, mass - left_sum, mass)
            nodes = left + right
        return nodes - self.leaves


class PrioritizedReplayBuffer(ReplayBuffer):
    """ReplayBuffer whose samples are drawn in proportion to priority (Schaul et al. 2016, proportional).

    sample() adds to the minibatch "indices" (the slots drawn, for update_priorities), "probabilities"
    (P(i) of each) and "min_probability" (min_k P(k) over the stored transitions, 0-d): the learner
    turns them into importance-sampling weights with its annealed beta, then sends the new TD errors
    back with update_priorities.
    """

    def __init__(self, capacity: int, observation_space: gym.Space, action_space: gym.Space,
                 alpha: float, eps: float, n_step: int = 1, gamma: float = 1.0):
        super().__init__(capacity, observation_space, action_space, n_step, gamma)
        self.alpha = alpha
        self.eps = eps
        self.tree = SumTree(capacity)
        self.max_priority = 1.0  # the largest p_i so far, given to new transitions (1 before any update)

    def priority(self, td_errors: np.ndarray) -> np.ndarray:
        """p_i = (|delta_i| + eps)^alpha (Schaul et al. 2016, section 3.3, the proportional variant)."""
        return (np.abs(td_errors).astype(np.float64) + self.eps) ** self.alpha

    def add(self, obs, actions, rewards, next_obs, terminated, truncated=None) -> None:
        n = len(rewards)
        slots = (self.pos + np.arange(n)) % self.capacity
        super().add(obs, actions, rewards, next_obs, terminated, truncated)
        self.tree.update(slots, np.full(n, self.max_priority))

    def sample(self, batch_size: int, generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
        """Stratified sampling (Schaul et al. 2016, Appendix B.2.1): the total priority is split into
        batch_size equal segments and one value is drawn uniformly in each, so a minibatch spreads over
        the whole range of priorities. The uniforms come from the run's generator (reproducible, resumable)."""
        total = self.tree.total
        segment = total / batch_size
        uniforms = torch.rand(batch_size, generator=generator, dtype=torch.float64).numpy()
        mass = (np.arange(batch_size) + uniforms) * segment
        # Rounding can carry a value just past the last stored leaf (onto a 0 leaf): keep it on the last one.
        index = np.minimum(self.tree.find(mass), self.size - 1)
        batch = self.gather(index, device)
        batch["indices"] = torch.from_numpy(index)
        batch["probabilities"] = torch.from_numpy(self.tree.priorities(index) / total).to(device)
        batch["min_probability"] = torch.tensor(self.tree.min / total, dtype=torch.float64, device=device)
        return batch

    def sample_many(self, count, batch_size, generator, device):
        raise NotImplementedError("prioritized replay draws each minibatch after the previous one's priority update")

    def update_priorities(self, index: np.ndarray, td_errors: np.ndarray) -> None:
        """After a gradient step: the sampled transitions' priorities become (|delta| + eps)^alpha."""
        priorities = self.priority(td_errors)
        self.tree.update(index, priorities)
        self.max_priority = max(self.max_priority, float(priorities.max()))

    def state_dict(self) -> dict:
        """The replay's arrays, the stored transitions' priorities (the tree is rebuilt from them) and the
        largest priority so far."""
        return {**super().state_dict(), "priorities": torch.from_numpy(self.tree.priorities(slice(0, self.size)).copy()),
                "max_priority": self.max_priority}

    def load_state_dict(self, state: dict) -> None:
        if "priorities" not in state:
            raise ValueError("checkpoint replay has no priorities: it was saved without algo.prioritized_replay")
        super().load_state_dict(state)
        self.tree = SumTree(self.capacity)
        if self.size:
            self.tree.update(np.arange(self.size), state["priorities"].numpy())
        self.max_priority = float(state["max_priority"])
