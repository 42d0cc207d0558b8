"""gymnasium's MuJoCo envs on MuJoCo >= 4: no deprecation warning at each env creation, and no
MUJOCO_LOG.TXT dropped into the user's working directory.

gymnasium's half_cheetah.xml sets the cheetah's total mass with `<compiler settotalmass="14">`, which
MuJoCo 4 deprecates: every HalfCheetah made printed a warning, and MuJoCo's default log handler appended
it to MUJOCO_LOG.TXT in the current directory. rlrun makes HalfCheetah-v5 from its own copy of the model
(assets/half_cheetah.xml) in which a default geom density gives the same masses and inertias, unless the
user names an `env.kwargs.xml_file`. Any other MuJoCo warning (an unstable simulation) is still printed,
but not written to a file in the working directory.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import gymnasium as gym

ASSETS = Path(__file__).resolve().parent / "assets"
# gymnasium env classes whose default model file uses an attribute MuJoCo 4 deprecates -> rlrun's equivalent.
MODELS = {"gymnasium.envs.mujoco.half_cheetah_v5:HalfCheetahEnv": "half_cheetah.xml"}


def is_mujoco(env_id: str) -> bool:
    """Whether `env_id` is one of gymnasium's MuJoCo envs."""
    try:
        entry_point = gym.spec(env_id).entry_point
    except gym.error.Error:
        return False
    return isinstance(entry_point, str) and entry_point.startswith("gymnasium.envs.mujoco")


def model_kwargs(env_id: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """`kwargs` with xml_file set to rlrun's copy of the model, for the envs of MODELS (not if one is named)."""
    if "xml_file" in kwargs:
        return kwargs
    try:
        entry_point = gym.spec(env_id).entry_point
    except gym.error.Error:
        return kwargs
    name = MODELS.get(entry_point) if isinstance(entry_point, str) else None
    return kwargs if name is None else {**kwargs, "xml_file": str(ASSETS / name)}


def no_log_file() -> None:
    """Keep MuJoCo's default log handler from writing MUJOCO_LOG.TXT into the working directory (its
    messages are still printed). Only where MuJoCo is loaded: a user's MuJoCo env, or before gymnasium's."""
    mujoco = sys.modules.get("mujoco")
    config_class = getattr(mujoco, "MjLogConfig", None)  # MuJoCo >= 4
    if config_class is None:
        return
    config = config_class.get()
    if config.logto_file:
        config.logto_file = False
        config.set()
