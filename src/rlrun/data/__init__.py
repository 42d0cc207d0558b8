"""Experience storage: on-policy rollouts with GAE, off-policy replay."""

from rlrun.data.replay import ReplayBuffer
from rlrun.data.rollout import RolloutBuffer, compute_gae

__all__ = ["ReplayBuffer", "RolloutBuffer", "compute_gae"]
