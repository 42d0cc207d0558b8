"""A running environment's state as plain tensors and Python values, so that a resumed run continues
its episodes exactly where the checkpoint left them.

What one env's future depends on, beyond its config (which the resumed run rebuilds):
  - the simulator: MuJoCo's integration state, classic control's state attributes, the ALE's
    emulator state (with its RNG: sticky actions draw from it), or a user's env's own `get_state()`
    (a dict of numbers, strings and numpy arrays) that its `set_state()` takes back;
  - the env's own generator (`np_random`: reset noise, Atari no-op starts) and its action space's;
  - the wrappers' counters: TimeLimit's elapsed steps, and whatever an rlrun wrapper holds (it
    exposes `get_state()`/`set_state()`, as the Atari wrappers do for their frames and lives).
A wrapper or simulator this module does not know raises `EnvStateError`: the caller then says so and
starts fresh episodes rather than silently continuing from a state it only half restored.

Everything is stored as tensors, Python numbers, strings, lists and dicts, so that a checkpoint
holding it loads with torch.load(weights_only=True).
"""

from __future__ import annotations

import sys
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers import OrderEnforcing, PassiveEnvChecker, TimeLimit


class EnvStateError(Exception):
    """An env (or one of its wrappers) whose state this module cannot save or restore."""


# Classic control envs keep their whole dynamic state in these attributes (gymnasium 1.x sources);
# everything else they hold is a constant of the env's definition.
CLASSIC_CONTROL_STATE = {
    "CartPoleEnv": ("state", "steps_beyond_terminated"),
    "PendulumEnv": ("state", "last_u"),
    "AcrobotEnv": ("state",),
    "MountainCarEnv": ("state",),
    "Continuous_MountainCarEnv": ("state",),
}

# Quantities of MuJoCo's last forward pass that an env reads between steps. mj_step computes them for
# the positions *before* it integrates, so after a step they lag the state by one step; mj_forward on
# the restored state would compute them for the current positions instead. gymnasium's Ant-v5 and
# Humanoid-v5 read xpos / xipos before stepping (forward reward from the change of the torso's or
# centre of mass's position): recomputed, their first reward after a restore differed by ~1e-3.
# Restored as saved, the continuation is bit-for-bit (tests/test_resume_exact.py).
MUJOCO_LAGGED = ("xpos", "xquat", "xmat", "xipos", "ximat", "geom_xpos", "geom_xmat", "site_xpos", "site_xmat",
                 "subtree_com")


# --- values as checkpoint-safe containers -----------------------------------------------------------


def encode(value: Any) -> Any:
    """numpy arrays and scalars as tensors (tagged, to come back as the same numpy type and dtype)."""
    if isinstance(value, np.ndarray):
        return {"ndarray": torch.from_numpy(value.copy())}
    if isinstance(value, np.generic):
        return {"npscalar": torch.from_numpy(np.array(value))}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise EnvStateError(f"a value of type {type(value).__name__} cannot go into a checkpoint")


def decode(value: Any) -> Any:
    if isinstance(value, dict) and "ndarray" in value:
        return value["ndarray"].numpy().copy()
    if isinstance(value, dict) and "npscalar" in value:
        return value["npscalar"].numpy()[()]
    return value


def generator_state(space_or_env: Any) -> dict | None:
    """The numpy generator's state of an env or a space, None if it was never seeded or used."""
    rng = getattr(space_or_env, "_np_random", None)
    return None if rng is None else rng.bit_generator.state


def set_generator_state(space_or_env: Any, state: dict | None) -> None:
    if state is not None:
        # np_random creates the generator if the env or space has none yet; then its state is replaced.
        space_or_env.np_random.bit_generator.state = state


# --- simulators -------------------------------------------------------------------------------------


def mujoco_env_class() -> type | None:
    """gymnasium's MujocoEnv, if its module was imported: an env can only be a MujocoEnv once it has been
    (the class lives there), and looking it up instead of importing it keeps mujoco's import (~130 ms)
    off every run of another env."""
    module = sys.modules.get("gymnasium.envs.mujoco.mujoco_env")
    return None if module is None else module.MujocoEnv


def simulator_state(env: gym.Env) -> dict:
    mujoco_env = mujoco_env_class()
    if mujoco_env is not None and isinstance(env, mujoco_env):
        import mujoco

        # mjSTATE_INTEGRATION: qpos, qvel, act, the warm-start accelerations of the constraint solver
        # (its result depends on them), controls, applied forces, mocap, time: all that mj_step reads.
        spec = mujoco.mjtState.mjSTATE_INTEGRATION
        buffer = np.empty(mujoco.mj_stateSize(env.model, spec))
        mujoco.mj_getState(env.model, env.data, buffer, spec)
        lagged = {name: torch.from_numpy(getattr(env.data, name).copy()) for name in MUJOCO_LAGGED}
        return {"kind": "mujoco", "integration": torch.from_numpy(buffer), "lagged": lagged}
    name = type(env).__name__
    if callable(getattr(env, "get_state", None)) and callable(getattr(env, "set_state", None)):
        # A user's env that saves itself: a dict of numbers, strings and numpy arrays.
        return {"kind": "own", "values": {key: encode(value) for key, value in env.get_state().items()}}
    if name == "AtariEnv" and hasattr(env, "ale"):
        # include_rng: the ALE's own generator decides sticky actions.
        serialized = env.ale.cloneState(include_rng=True).__getstate__()
        return {"kind": "ale", "state": torch.frombuffer(bytearray(serialized), dtype=torch.uint8)}
    if name in CLASSIC_CONTROL_STATE and type(env).__module__.startswith("gymnasium.envs.classic_control"):
        return {"kind": "attributes",
                "values": {attr: encode(getattr(env, attr, None)) for attr in CLASSIC_CONTROL_STATE[name]}}
    raise EnvStateError(f"{name} is not an env whose state rlrun knows how to save (MuJoCo, classic control, ALE, "
                        "or an env with get_state() and set_state() methods)")


def set_simulator_state(env: gym.Env, state: dict) -> None:
    kind = state["kind"]
    if kind == "mujoco":
        import mujoco

        mujoco.mj_setState(env.model, env.data, state["integration"].numpy(), mujoco.mjtState.mjSTATE_INTEGRATION)
        # Everything derived, as gymnasium's step leaves it (mj_rnePostConstraint: contact forces)...
        mujoco.mj_forward(env.model, env.data)
        mujoco.mj_rnePostConstraint(env.model, env.data)
        # ...but the quantities that lag one step behind come back as they were (see MUJOCO_LAGGED).
        for name, value in state["lagged"].items():
            getattr(env.data, name)[:] = value.numpy()
    elif kind == "ale":
        import ale_py

        env.ale.restoreState(ale_py.ALEState(state["state"].numpy().tobytes()))
    elif kind == "own":
        env.set_state({key: decode(value) for key, value in state["values"].items()})
    elif kind == "attributes":
        for attr, value in state["values"].items():
            setattr(env, attr, decode(value))
    else:
        raise EnvStateError(f"unknown simulator state kind {kind!r}")


# --- wrappers and the whole stack -------------------------------------------------------------------


def layers(env: gym.Env) -> list[gym.Env]:
    """The wrappers from the outside in, then the unwrapped env."""
    stack = [env]
    while isinstance(stack[-1], gym.Wrapper):
        stack.append(stack[-1].env)
    return stack


def wrapper_state(wrapper: gym.Wrapper) -> Any:
    if hasattr(wrapper, "get_state"):
        return wrapper.get_state()
    if isinstance(wrapper, TimeLimit):
        return {"elapsed_steps": wrapper._elapsed_steps}
    if isinstance(wrapper, (OrderEnforcing, PassiveEnvChecker)):
        return None  # flags only, set on restore (the env has been reset, its checks have run)
    raise EnvStateError(f"wrapper {type(wrapper).__name__} has state rlrun does not know how to save")


def set_wrapper_state(wrapper: gym.Wrapper, state: Any) -> None:
    if hasattr(wrapper, "set_state"):
        wrapper.set_state(state)
    elif isinstance(wrapper, TimeLimit):
        wrapper._elapsed_steps = state["elapsed_steps"]
    elif isinstance(wrapper, OrderEnforcing):
        wrapper._has_reset = True
    elif isinstance(wrapper, PassiveEnvChecker):
        # The passive checks ran in the process that saved the state; running them again would compare
        # against data this process never produced.
        wrapper.checked_reset = wrapper.checked_step = wrapper.checked_data_reuse = True
        wrapper._previous_data = None


def get_env_state(env: gym.Env) -> dict:
    """The state of a reset (or stepped) env and all its wrappers; raises EnvStateError."""
    *wrappers, base = layers(env)
    return {"env_class": type(base).__name__,
            "wrappers": [wrapper_state(w) for w in wrappers],
            "simulator": simulator_state(base),
            "np_random": generator_state(base),
            "action_space": generator_state(base.action_space)}


def set_env_state(env: gym.Env, state: dict) -> None:
    """Put a freshly made env (same config) in the saved state; the next step continues from there."""
    *wrappers, base = layers(env)
    if state["env_class"] != type(base).__name__ or len(state["wrappers"]) != len(wrappers):
        raise EnvStateError(f"the saved state is of a {state['env_class']} with {len(state['wrappers'])} wrappers, "
                            f"not of this {type(base).__name__} with {len(wrappers)}")
    set_simulator_state(base, state["simulator"])
    set_generator_state(base, state["np_random"])
    set_generator_state(base.action_space, state["action_space"])
    for wrapper, wrapper_state_ in zip(wrappers, state["wrappers"], strict=True):
        set_wrapper_state(wrapper, wrapper_state_)
