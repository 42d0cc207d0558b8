"""What the algorithms see of an environment's spaces.

Observations. An env's observation space is turned, once, into the space the networks read, by a
fixed numpy transform applied to every observation (in the training env, the evaluation env and a
loaded policy alike, so that every algorithm sees the same thing):

    Box of 1 dimension       as it is
    Box of 3 dimensions      an image for the CNN; channels-last (height, width, channels), told
                             apart by the smallest dimension being the last, is transposed to
                             (channels, height, width), as SB3's VecTransposeImage does
    other Box                flattened (a FrameStackObservation of vectors, a scalar): MLPs read
                             vectors
    Discrete                 one-hot, float32
    MultiBinary              the bits as float32, flattened
    Dict of the above        a dict of the transformed keys (rlrun.nets.dict_encoder encodes each)

Actions. `action_space_kind` names the kind of an action space in the words the algorithms state
theirs with (`action_spaces = ("discrete", "continuous", ...)`), and `check_spaces` refuses a pair
of algorithm and env the algorithm cannot handle in one line, before anything is built.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rlrun.config import ConfigError

# How the error messages name the action-space kinds that algorithms state (`action_spaces`).
ACTION_KINDS = {"discrete": "discrete", "multi_discrete": "MultiDiscrete", "multi_binary": "MultiBinary",
                "continuous": "continuous"}

Obs = np.ndarray | dict[str, np.ndarray]  # a batch of observations: an array, or a dict of arrays


def action_space_kind(space: gym.Space) -> str:
    """discrete, multi_discrete, multi_binary, continuous, or the space's class name for the others."""
    if isinstance(space, gym.spaces.Discrete):
        return "discrete"
    if isinstance(space, gym.spaces.MultiDiscrete):
        return "multi_discrete"
    if isinstance(space, gym.spaces.MultiBinary):
        return "multi_binary"
    if isinstance(space, gym.spaces.Box):
        return "continuous"
    return type(space).__name__


def describe(space: gym.Space) -> str:
    """A space in a few words: `MultiDiscrete([3 2])`, `Box(-1.0, 1.0, (3,), float32)`, a Dict's keys."""
    if isinstance(space, gym.spaces.Dict):
        return "Dict(" + ", ".join(f"{key}: {describe(sub)}" for key, sub in space.spaces.items()) + ")"
    return str(space)


def check_spaces(algo_cls: type, algo_name: str, env_name: str, observation_space: gym.Space,
                 action_space: gym.Space, algorithms_for) -> None:
    """One line, before anything is built, when `algo_cls` cannot act in `action_space` or read
    `observation_space`. `algorithms_for(kind)` lists the algorithms that can (for the message)."""
    kind = action_space_kind(action_space)
    if kind not in getattr(algo_cls, "action_spaces", ()):
        able = algorithms_for(kind) if kind in ACTION_KINDS else []
        fix = (f"algorithms for {ACTION_KINDS[kind]} actions: {', '.join(able)}" if able
               else "no algorithm of rlrun acts in it (Discrete, MultiDiscrete, MultiBinary and Box actions are supported)")
        raise ConfigError(f"algo={algo_name} cannot act in {env_name}'s {ACTION_KINDS.get(kind, kind)} action space "
                          f"{describe(action_space)}; {fix}")
    ObservationTransform(observation_space)  # refuses the observation spaces no network reads
    if isinstance(observation_space, gym.spaces.Dict) and not getattr(algo_cls, "dict_observations", False):
        able = [name for name in algorithms_for(kind) if getattr(algorithms_class(name), "dict_observations", False)]
        raise ConfigError(f"algo={algo_name} does not read Dict observations ({env_name}'s are "
                          f"{describe(observation_space)}); algorithms that do: {', '.join(able) or 'none'}"
                          " (or flatten them with env.wrappers=[gymnasium.wrappers.FlattenObservation])")


def algorithms_class(name: str) -> type:
    from hydra.utils import get_class

    from rlrun.resources import algo_target

    return get_class(algo_target(name))


def is_image(space: gym.spaces.Box) -> bool:
    return len(space.shape) == 3


def is_channels_last(shape: tuple[int, ...]) -> bool:
    """(height, width, channels): the smallest dimension is the last (SB3's rule, the other way round)."""
    return shape[-1] < shape[0]


class ObservationTransform:
    """`transform(batch)`: observations of `source` (a batch, leading axis) as the networks read them,
    in `space`. See the module docstring for what each kind of space becomes."""

    def __init__(self, source: gym.Space, key: str | None = None):
        self.source = source
        where = f"Dict key {key!r}: " if key is not None else ""
        self.keys: dict[str, ObservationTransform] | None = None
        self.kind = "identity"
        if isinstance(source, gym.spaces.Dict):
            if key is not None:
                raise ConfigError(f"{where}nested Dict observations are not supported: flatten the inner Dict "
                                  "(gymnasium.wrappers.FlattenObservation) or lift its keys up")
            self.keys = {name: ObservationTransform(sub, name) for name, sub in source.spaces.items()}
            self.space = gym.spaces.Dict({name: t.space for name, t in self.keys.items()})
        elif isinstance(source, gym.spaces.Box):
            if is_image(source):
                if is_channels_last(source.shape):
                    self.kind = "channels_first"
                    self.space = gym.spaces.Box(np.transpose(source.low, (2, 0, 1)),
                                                np.transpose(source.high, (2, 0, 1)), dtype=source.dtype)
                else:
                    self.space = source
            elif len(source.shape) != 1:
                self.kind = "flatten"
                self.space = gym.spaces.Box(source.low.reshape(-1), source.high.reshape(-1), dtype=source.dtype)
            else:
                self.space = source
        elif isinstance(source, gym.spaces.Discrete):
            self.kind = "one_hot"
            self.space = gym.spaces.Box(0.0, 1.0, (int(source.n),), np.float32)
        elif isinstance(source, gym.spaces.MultiBinary):
            self.kind = "bits"
            self.space = gym.spaces.Box(0.0, 1.0, (int(np.prod(source.shape)),), np.float32)
        else:
            raise ConfigError(f"{where}observations of {describe(source)} are not supported: rlrun reads Box, "
                              "Discrete, MultiBinary and Dict observations (wrap the env to turn them into one of these)")
        # Whether observations pass unchanged (a Box of 1 dimension, a channels-first image): the vector
        # env then skips the call, which runs every step.
        self.identity = self.keys is None and self.kind == "identity"

    def __call__(self, obs) -> Obs:
        """A batch of observations of the source space, transformed."""
        if self.keys is not None:
            return {name: t(obs[name]) for name, t in self.keys.items()}
        if self.kind == "identity":
            return obs
        obs = np.asarray(obs)
        if self.kind == "channels_first":
            return np.ascontiguousarray(obs.transpose(0, 3, 1, 2))
        if self.kind == "flatten":
            return obs.reshape(len(obs), -1)
        if self.kind == "one_hot":
            return np.eye(self.space.shape[0], dtype=np.float32)[obs.astype(np.int64) - int(self.source.start)]
        return obs.reshape(len(obs), -1).astype(np.float32)  # bits

    def single(self, obs) -> Obs:
        """One observation (no batch axis), transformed, with a batch axis of 1."""
        if self.keys is not None:
            return {name: t.single(obs[name]) for name, t in self.keys.items()}
        return self(np.asarray(obs)[None])

    def is_single(self, obs) -> bool:
        """Whether `obs` is one observation of the source space (rather than a batch of them)."""
        if self.keys is not None:
            name, t = next(iter(self.keys.items()))
            return t.is_single(obs[name])
        return np.shape(obs) == self.source.shape


# --- batches of observations: an array, or a dict of arrays --------------------------------------------


def zeros(space: gym.Space, batch: tuple[int, ...], dtype=None) -> Obs:
    """A zero batch shaped `batch + space.shape` (per key for a Dict), of the space's dtype or `dtype`."""
    if isinstance(space, gym.spaces.Dict):
        return {name: zeros(sub, batch, dtype) for name, sub in space.spaces.items()}
    return np.zeros(batch + space.shape, dtype or space.dtype)


def copy(obs: Obs) -> Obs:
    if isinstance(obs, dict):
        return {name: value.copy() for name, value in obs.items()}
    return obs.copy()


def set_row(batch: Obs, index, value: Obs) -> None:
    """batch[index] = value, for every key of a dict batch."""
    if isinstance(batch, dict):
        for name, array in batch.items():
            array[index] = value[name]
    else:
        batch[index] = value


def rows(batch: Obs, index) -> Obs:
    """batch[index], for every key of a dict batch."""
    if isinstance(batch, dict):
        return {name: array[index] for name, array in batch.items()}
    return batch[index]


def where_rows(rows_mask: np.ndarray, chosen: Obs, other: Obs) -> Obs:
    """`chosen`'s rows where `rows_mask` (one bool per row) holds, `other`'s elsewhere; per key for dicts."""
    if isinstance(chosen, dict):
        return {name: where_rows(rows_mask, chosen[name], other[name]) for name in chosen}
    return np.where(rows_mask.reshape((len(rows_mask),) + (1,) * (chosen.ndim - 1)), chosen, other)


def batch_size(obs: Obs) -> int:
    if isinstance(obs, dict):
        return len(next(iter(obs.values())))
    return len(obs)
