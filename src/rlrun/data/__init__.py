"""Experience storage: on-policy rollouts with GAE."""

from rlrun.data.rollout import RolloutBuffer, compute_gae

__all__ = ["RolloutBuffer", "compute_gae"]
