"""Networks: torsos and the heads the env's spaces call for."""

from rlrun.nets.actor_critic import ActorCritic, NumpyActorCritic
from rlrun.nets.cnn import CNNConfig, NatureCNN
from rlrun.nets.cnn_actor_critic import CNNActorCritic, TorchActorCritic
from rlrun.nets.continuous import DeterministicActor, QCritic, SquashedGaussianActor, TwinQ
from rlrun.nets.distributions import Categorical, DiagGaussian, distribution_for
from rlrun.nets.mlp import MLPConfig, mlp, network_config
from rlrun.nets.q import NumpyQ, QNetwork, dueling_combine

__all__ = ["ActorCritic", "CNNActorCritic", "CNNConfig", "Categorical", "DiagGaussian", "MLPConfig", "NatureCNN",
           "NumpyActorCritic", "NumpyQ", "QNetwork", "TorchActorCritic", "distribution_for", "dueling_combine", "mlp",
           "network_config"]
__all__ += ["DeterministicActor", "QCritic", "SquashedGaussianActor", "TwinQ"]
