"""Environments: config, construction, vectorisation and normalisation."""

from rlrun.envs.normalize import RunningMeanStd
from rlrun.envs.vector import EnvConfig, VecEnv, env_config, make_env, spaces_of

__all__ = ["EnvConfig", "RunningMeanStd", "VecEnv", "env_config", "make_env", "spaces_of"]
