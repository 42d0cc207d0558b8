"""The sampler: worker processes that step the envs of on-policy algorithms into shared-memory rollouts.

Infrastructure beside envs/: no algorithm imports it. rlrun.algos.onpolicy.rollouts_for chooses it
when `hardware.workers` > 1 or `algo.overlap=true`; the algorithm still receives a filled
RolloutBuffer. Architecture, switches, the overlap's policy lag and resume guarantees: docs/sampler.md.
"""

from rlrun.sampler.sampler import Sampler, SamplerError, env_slices

__all__ = ["Sampler", "SamplerError", "env_slices"]
