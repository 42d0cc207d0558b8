"""Experience storage: on-policy rollouts with GAE and n-step returns, replay buffer."""

from rlrun.data.replay import ReplayBuffer
from rlrun.data.rollout import RolloutBuffer, compute_gae, discounted_returns, nstep_returns

__all__ = ["ReplayBuffer", "RolloutBuffer", "compute_gae", "discounted_returns", "nstep_returns"]
