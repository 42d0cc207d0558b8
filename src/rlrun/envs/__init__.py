"""Environments: config, construction, vectorisation and normalisation.

The names below are imported on first use (PEP 562), so that `rlrun.envs.ids`, which the command
line reads before anything is composed, does not import torch and gymnasium with the package."""

from __future__ import annotations

import importlib

_EXPORTS = {"RunningMeanStd": "rlrun.envs.normalize", "EnvConfig": "rlrun.envs.vector", "VecEnv": "rlrun.envs.vector",
            "env_config": "rlrun.envs.vector", "make_env": "rlrun.envs.vector", "spaces_of": "rlrun.envs.vector"}

__all__ = ["EnvConfig", "RunningMeanStd", "VecEnv", "env_config", "make_env", "spaces_of"]


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rlrun.envs' has no attribute {name!r}")
