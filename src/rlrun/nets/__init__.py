"""Networks: torsos and the heads the env's spaces call for."""

from rlrun.nets.actor_critic import ActorCritic, NumpyActorCritic
from rlrun.nets.distributions import Categorical, DiagGaussian, distribution_for
from rlrun.nets.mlp import MLPConfig, mlp, network_config

__all__ = ["ActorCritic", "Categorical", "DiagGaussian", "MLPConfig", "NumpyActorCritic", "distribution_for", "mlp",
           "network_config"]
