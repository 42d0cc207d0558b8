"""Vectorised, seeded environments with episode statistics and observation/reward normalisation.

`VecEnv` wraps a gymnasium vector env in SAME_STEP autoreset mode: the step that ends an episode
returns the first observation of the next one, and the true last observation separately, so that a
truncated episode can be bootstrapped from V(last observation) instead of being treated as terminal.
Normalisation lives here (not in gymnasium wrappers) so its statistics can be checkpointed, copied to
the evaluation env and frozen there.

A checkpoint also holds the episodes in flight (`state_dict`): each env's simulator, RNGs and wrapper
counters (rlrun.envs.state), the current observation and the running episode statistics. A training
env given that state continues those episodes: its next `reset()` returns the saved observation
instead of starting new episodes, so a resumed run takes the same steps as one never interrupted.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import signal
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

from rlrun.config import POSITIVE, ConfigError, from_config, one_of
from rlrun.envs import mujoco_models, spaces
from rlrun.envs.normalize import RunningMeanStd, obs_statistics
from rlrun.envs.state import EnvStateError, generator_state, get_env_state, set_env_state, set_generator_state

log = logging.getLogger("rlrun")

# Why a backend's episodes in flight cannot go into a checkpoint (a resumed run starts fresh ones).
UNSAVED = {"async": "the async vector backend keeps its envs in worker processes",
           "envpool": "envpool keeps its envs in C++, whose state it cannot save"}


@dataclass
class EnvConfig:
    # Only the id is required: an env file that sets `id:` alone takes conf/env/generic.yaml's defaults.
    id: str
    kwargs: dict = field(default_factory=dict)
    max_episode_steps: int | None = field(default=None, metadata={"rule": POSITIVE})
    normalize_obs: bool = False
    normalize_reward: bool = False
    clip_obs: float = field(default=10.0, metadata={"rule": POSITIVE})
    clip_reward: float = field(default=10.0, metadata={"rule": POSITIVE})
    # The named Atari stack ("atari"), or gymnasium wrappers applied in order, each a class path or
    # {_target_: class path, <its keyword arguments>}; a default, so env configs without the key stay valid.
    wrappers: str | list[Any] | None = None
    # The Atari evaluation protocol (rlrun.envs.atari.PROTOCOLS); only with wrappers=atari.
    protocol: str | None = field(default=None, metadata={"rule": one_of("nature", "machado")})

    def __post_init__(self):
        if isinstance(self.wrappers, str) and self.wrappers != "atari":
            raise ConfigError(f"env.wrappers must be atari or a list of gymnasium wrappers (got {self.wrappers!r})")
        if isinstance(self.wrappers, list):
            wrapper_specs(self.wrappers)  # every class must import now, not when the first env is made
        if self.protocol is not None and self.wrappers != "atari":
            raise ConfigError(f"env.protocol={self.protocol} is an Atari protocol: it needs env.wrappers=atari")


def wrapper_specs(wrappers: list[Any]) -> list[tuple[type, dict]]:
    """(wrapper class, keyword arguments) for each entry of env.wrappers."""
    specs = []
    for entry in wrappers:
        kwargs = dict(entry) if isinstance(entry, Mapping) else {}
        path = kwargs.pop("_target_", None) if isinstance(entry, Mapping) else entry
        if not isinstance(path, str):
            raise ConfigError(f"env.wrappers entry {entry!r} must be a class path (gymnasium.wrappers.ClipAction) "
                              "or a mapping with _target_: <class path> and the wrapper's arguments")
        module_name, _, class_name = path.rpartition(".")
        try:
            wrapper = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError) as error:
            raise ConfigError(f"env.wrappers: unknown wrapper {path!r} ({error}); give a class path such as "
                              "gymnasium.wrappers.ClipAction") from None
        if not (isinstance(wrapper, type) and issubclass(wrapper, gym.Wrapper)):
            raise ConfigError(f"env.wrappers: {path!r} is not a gymnasium.Wrapper subclass")
        specs.append((wrapper, kwargs))
    return specs


def env_config(cfg: Any) -> EnvConfig:
    return from_config(EnvConfig, cfg, "env")


def import_env_module(env_id: str) -> None:
    """The module of an env id `module:Env-v0`, imported before gymnasium.make so that one that cannot be
    (not installed, a missing dependency, an error at import) is one line naming it, not a traceback or
    gymnasium's own message."""
    if ":" not in env_id:
        return
    module = env_id.split(":", 1)[0]
    try:
        importlib.import_module(module)
    except Exception as error:  # noqa: BLE001 -- any error importing it: ImportError, SyntaxError, its own
        first = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise ConfigError(f"env.id {env_id!r}: its module {module!r} cannot be imported ({type(error).__name__}"
                          f"{': ' + first if first else ''}); install the package that provides it, or put it on "
                          "PYTHONPATH") from None


def make_env(cfg: EnvConfig, render_mode: str | None = None) -> gym.Env:
    """One gymnasium env as the config describes it (unseeded: the vector env seeds it on reset)."""
    if multiprocessing.parent_process() is not None:
        # In a vector-env worker process: Ctrl-C is the main process's to handle (it stops the run at
        # an iteration boundary and writes a checkpoint); a worker dying of it would break the run.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    if cfg.wrappers == "atari":
        from rlrun.envs import atari  # imports ale-py only for Atari configs

        atari.register()
        protocol = cfg.protocol or "nature"
        kwargs = atari.make_kwargs(protocol, cfg.kwargs)
        max_episode_steps = None  # counted in agent steps by atari.wrap, not in frames inside the frame skip
    else:
        kwargs, max_episode_steps = cfg.kwargs, cfg.max_episode_steps
    if render_mode is not None:
        # Only when frames are wanted (video): many users' envs take no render_mode argument, and
        # gymnasium.make passes one to the constructor whenever it is given one.
        kwargs = {**kwargs, "render_mode": render_mode}
    if mujoco_models.is_mujoco(cfg.id):
        import mujoco  # noqa: F401 -- loaded before the env compiles its model, for no_log_file

        mujoco_models.no_log_file()
        kwargs = mujoco_models.model_kwargs(cfg.id, kwargs)  # HalfCheetah without MuJoCo 4's deprecation warning
    import_env_module(cfg.id)
    try:
        env = gym.make(cfg.id, max_episode_steps=max_episode_steps, **kwargs)
        mujoco_models.no_log_file()  # a user's env that loaded MuJoCo: no MUJOCO_LOG.TXT in the working directory
    except gym.error.Error as error:
        raise ConfigError(f"env.id {cfg.id!r} cannot be made: {error}") from None
    except ImportError as error:  # the env's entry point, or a package its constructor imports
        raise ConfigError(f"env.id {cfg.id!r} cannot be made: a module it needs cannot be imported "
                          f"({str(error).splitlines()[0]}); install the package that provides it, or put it on "
                          "PYTHONPATH") from None
    except TypeError as error:
        raise ConfigError(f"env.kwargs {cfg.kwargs} do not fit {cfg.id}: {error}") from None
    if cfg.wrappers == "atari":
        return atari.wrap(env, protocol, cfg.max_episode_steps)
    for wrapper, kwargs in wrapper_specs(cfg.wrappers or []):
        try:
            env = wrapper(env, **kwargs)
        except TypeError as error:
            raise ConfigError(f"env.wrappers: {wrapper.__name__}{kwargs} does not fit: {error}") from None
    return env


def spaces_of(cfg: EnvConfig) -> tuple[gym.Space, gym.Space]:
    """Observation and action space of one env, to check a config before anything is built."""
    env = make_env(cfg)
    try:
        return env.observation_space, env.action_space
    finally:
        env.close()


class SerialEnvs:
    """Envs stepped one after another in this process, resetting an episode on the step that ends it
    (gymnasium's SAME_STEP autoreset), with the same reset/step results as gymnasium's vector envs.

    It is the part of gymnasium's SyncVectorEnv that rlrun uses, without merging every step's info
    dicts or copying observations: measured on HalfCheetah, that saves ~20 us of a ~60 us step.
    """

    def __init__(self, factories: list):
        self.envs = [factory() for factory in factories]
        self.num_envs = len(self.envs)
        self.single_observation_space = self.envs[0].observation_space
        self.single_action_space = self.envs[0].action_space
        # (A dict of arrays for a Dict observation space.)
        self.obs = spaces.zeros(self.single_observation_space, (self.num_envs,))

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict]:
        for i, env in enumerate(self.envs):
            obs, _ = env.reset(seed=None if seed is None else seed + i)
            spaces.set_row(self.obs, i, obs)
            env.action_space.seed(None if seed is None else seed + i)
        return spaces.copy(self.obs), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        reward = np.zeros(self.num_envs)
        terminated = np.zeros(self.num_envs, bool)
        truncated = np.zeros(self.num_envs, bool)
        final_obs = {}
        game_over = np.ones(self.num_envs, bool)
        dict_obs = isinstance(self.obs, dict)
        for i, env in enumerate(self.envs):
            obs, reward[i], terminated[i], truncated[i], info = env.step(actions[i])
            if terminated[i] or truncated[i]:
                final_obs[i] = spaces.copy(obs) if dict_obs else np.array(obs)  # (reset() may reuse the array)
                game_over[i] = info.get("game_over", True)
                obs, _ = env.reset()
            if dict_obs:
                spaces.set_row(self.obs, i, obs)
            else:
                self.obs[i] = obs
        return spaces.copy(self.obs), reward, terminated, truncated, {"final_obs": final_obs, "game_over": game_over}

    def state_dict(self) -> dict:
        """Every env's state and the current observations; raises EnvStateError."""
        obs = ({name: torch.from_numpy(array.copy()) for name, array in self.obs.items()}
               if isinstance(self.obs, dict) else torch.from_numpy(self.obs.copy()))
        return {"envs": [get_env_state(env) for env in self.envs], "obs": obs}

    def load_state_dict(self, state: dict) -> np.ndarray:
        """Continue the saved episodes; returns their current observations."""
        for env, env_state in zip(self.envs, state["envs"], strict=True):
            set_env_state(env, env_state)
        if isinstance(self.obs, dict):
            for name, array in self.obs.items():
                array[:] = state["obs"][name].numpy()
        else:
            self.obs[:] = state["obs"].numpy()
        return spaces.copy(self.obs)

    def close(self) -> None:
        for env in self.envs:
            env.close()


def envpool_or_sync(cfg: EnvConfig, num_envs: int, seed: int, factories: list) -> tuple[Any, str]:
    """EnvPool's envs where it can run `cfg` as the gymnasium path would; else the sync backend, with one
    line saying why, and training goes on."""
    from rlrun.envs.envpool_backend import EnvPoolEnvs, Unsupported  # imports envpool only when asked for

    try:
        return EnvPoolEnvs(cfg, num_envs, seed, spaces_of(cfg)), "envpool"
    except Unsupported as reason:
        log.warning("hardware.vector_backend=envpool: %s; stepping %s with the sync backend", reason, cfg.id)
        return SerialEnvs(factories), "sync"


def as_network_input(obs: spaces.Obs) -> spaces.Obs:
    """Observations unnormalised: uint8 pixels stay uint8 (4x smaller in rollouts and transfers; the
    CNN scales them), anything else becomes float32."""
    if isinstance(obs, dict):
        return {name: as_network_input(value) for name, value in obs.items()}
    return obs if obs.dtype == np.uint8 else obs.astype(np.float32, copy=False)


def clip(x: np.ndarray, bound: float) -> np.ndarray:
    """np.clip(x, -bound, bound) without np.clip's Python-level overhead (this runs every step)."""
    return np.minimum(np.maximum(x, -bound), bound)


class VecEnv:
    """`num_envs` copies of one env, stepped together; observations and rewards as the algorithm sees
    them (normalised, float32), episode returns and lengths as the environment paid them (raw)."""

    def __init__(self, cfg: EnvConfig, num_envs: int, seed: int, backend: str = "sync",
                 gamma: float = 0.99, training: bool = True):
        factories = [partial(make_env, cfg)] * num_envs
        if backend == "envpool":
            self.envs, backend = envpool_or_sync(cfg, num_envs, seed, factories)
        elif backend == "sync":
            self.envs = SerialEnvs(factories)
        elif backend == "async":
            self.envs = gym.vector.AsyncVectorEnv(factories, autoreset_mode=AutoresetMode.SAME_STEP)
        else:
            raise ConfigError(f"hardware.vector_backend must be sync, async or envpool (got {backend!r})")
        self.backend = backend
        self.cfg = cfg
        self.num_envs = num_envs
        self.seed = seed
        self.gamma = gamma
        self.training = training
        # What the networks read (rlrun.envs.spaces): images channels-first, other Boxes flat, Dicts per key.
        self.transform = spaces.ObservationTransform(self.envs.single_observation_space)
        self.observation_space = self.transform.space
        self.action_space = self.envs.single_action_space
        self.continuous = isinstance(self.action_space, gym.spaces.Box)
        # Discrete and MultiDiscrete actions are indices from 0; the env's own may start elsewhere.
        start = getattr(self.action_space, "start", None)
        self.action_start = start if start is not None and np.any(start != 0) else None
        self.obs_rms = obs_statistics(self.observation_space) if cfg.normalize_obs else None
        self.return_rms = RunningMeanStd(()) if cfg.normalize_reward else None
        self.discounted_return = np.zeros(num_envs)
        self.episode_return = np.zeros(num_envs)
        self.episode_length = np.zeros(num_envs, np.int64)
        self.finished_returns: list[float] = []
        self.finished_lengths: list[int] = []
        self.steps = 0  # env steps taken, summed over envs
        self.started = False  # reset at least once: there are episodes in flight to save
        self.restored_obs: np.ndarray | None = None  # what the next reset() returns after load_state_dict
        # rlrun.sampler.Sampler, when worker processes step copies of these envs: it then holds the
        # episodes in flight (checkpoints ask it), while this object keeps the statistics and episodes.
        self.sampler = None

    def reset(self, seed: int | None = None) -> np.ndarray:
        """Reset every env; env i is seeded with `seed + i` (default: the seed given at construction).
        After `load_state_dict` restored episodes in flight, the first reset without a seed continues
        them instead: it returns their current observations (statistics not updated: they already
        hold these observations)."""
        self.started = True
        if self.restored_obs is not None and seed is None:
            obs, self.restored_obs = self.restored_obs, None
            return self.normalize_obs(self.transform(obs), update=False)
        self.restored_obs = None
        seed = self.seed if seed is None else seed
        obs, _ = self.envs.reset(seed=seed)
        obs = self.transform(obs)
        self.action_space.seed(seed)  # what algorithms sample random actions from
        self.discounted_return[:] = 0
        self.episode_return[:] = 0
        self.episode_length[:] = 0
        return self.normalize_obs(obs, update=self.training)

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
        """Step every env. Returns (obs, reward, terminated, truncated, final_obs): `final_obs` is None
        when no episode ended, else an array whose rows for ended episodes hold their last observation
        (normalised like `obs`)."""
        if self.continuous:
            # The policy's Gaussian is unbounded; the env gets the action clipped to its bounds while
            # the algorithm keeps the sampled one, whose log-probability it stored.
            actions = np.minimum(np.maximum(actions, self.action_space.low), self.action_space.high)
        elif self.action_start is not None:
            actions = actions + self.action_start
        obs, reward, terminated, truncated, info = self.envs.step(actions)
        if not self.transform.identity:
            obs = self.transform(obs)
        self.steps += self.num_envs
        reward = reward.astype(np.float64)
        self.raw_reward = reward  # as the env paid it: evaluation's discounted returns (rlrun.run.evaluate)
        self.episode_return += reward
        self.episode_length += 1
        ended = terminated | truncated
        final_obs = None
        if ended.any():
            final_obs = spaces.copy(obs)
            for i in np.flatnonzero(ended):
                spaces.set_row(final_obs, i, self.transform.single(info["final_obs"][i]))
            # Statistics count whole games: with a life-loss terminal (Atari's "nature" protocol) an
            # episode of the learner ends at each lost life, and its env says whether the game did too.
            # (gymnasium's vector envs pass an ended step's info as "final_info", with a mask.)
            flags = info.get("final_info", info)
            game_over = ended
            if "game_over" in flags:
                game_over = ended & np.where(flags.get("_game_over", True), flags["game_over"], True)
            for i in np.flatnonzero(game_over):
                self.finished_returns.append(float(self.episode_return[i]))
                self.finished_lengths.append(int(self.episode_length[i]))
            self.episode_return[game_over] = 0
            self.episode_length[game_over] = 0
            final_obs = self.normalize_obs(final_obs, update=False)
        obs = self.normalize_obs(obs, update=self.training)
        reward = self.scale_reward(reward, ended)
        return obs, reward, terminated, truncated, final_obs

    def normalize_obs(self, obs: spaces.Obs, update: bool) -> spaces.Obs:
        if self.obs_rms is None:
            return as_network_input(obs)
        if update:
            self.obs_rms.update(obs)
        return self.obs_rms.normalize(obs, self.cfg.clip_obs)

    def scale_reward(self, reward: np.ndarray, ended: np.ndarray) -> np.ndarray:
        """Divide by the running std of the discounted return (not of the reward): the scheme of
        OpenAI baselines' VecNormalize, which keeps value targets near unit scale."""
        if self.return_rms is None:
            return reward.astype(np.float32)
        if self.training:
            self.discounted_return = self.discounted_return * self.gamma + reward
            self.return_rms.update(self.discounted_return)
            self.discounted_return[ended] = 0
        scaled = reward / np.sqrt(self.return_rms.var + 1e-8)
        return clip(scaled, self.cfg.clip_reward).astype(np.float32)

    def pop_episodes(self) -> tuple[list[float], list[int]]:
        """Returns and lengths of the episodes finished since the last call."""
        returns, lengths = self.finished_returns, self.finished_lengths
        self.finished_returns, self.finished_lengths = [], []
        return returns, lengths

    def state_dict(self) -> dict:
        """Normalisation statistics and, once reset, the episodes in flight ("episodes"; None with the
        reason in "unsaved" for an env whose state cannot be saved)."""
        state = {"obs_rms": self.obs_rms.state_dict() if self.obs_rms else None,
                 "return_rms": self.return_rms.state_dict() if self.return_rms else None,
                 "steps": self.steps, "episodes": None, "unsaved": None}
        if self.started:
            try:
                state["episodes"] = self.episodes_state()
            except EnvStateError as error:
                state["unsaved"] = str(error)
        return state

    def episodes_state(self) -> dict:
        if self.sampler is not None:
            return self.sampler.episodes_state()
        if not isinstance(self.envs, SerialEnvs):
            raise EnvStateError(UNSAVED[self.backend])
        return {"env_id": self.cfg.id, "num_envs": self.num_envs, **self.envs.state_dict(),
                "action_space": generator_state(self.action_space),
                "episode_return": torch.from_numpy(self.episode_return.copy()),
                "episode_length": torch.from_numpy(self.episode_length.copy()),
                "discounted_return": torch.from_numpy(np.array(self.discounted_return)),
                "finished_returns": list(self.finished_returns), "finished_lengths": list(self.finished_lengths)}

    def load_state_dict(self, state: dict) -> None:
        """Take the normalisation statistics; a training env also continues the saved episodes (an
        evaluation env, given the training env's state to freeze its statistics, runs its own)."""
        if self.obs_rms is not None and state["obs_rms"] is not None:
            self.obs_rms.load_state_dict(state["obs_rms"])
        if self.return_rms is not None and state["return_rms"] is not None:
            self.return_rms.load_state_dict(state["return_rms"])
        if not self.training:
            return
        self.steps = state.get("steps", 0)
        episodes = state.get("episodes")
        problem = state.get("unsaved") if "episodes" in state else "the checkpoint holds no env state"
        if episodes is not None:
            problem = self.load_episodes(episodes)
        if problem is not None:
            # Fresh episodes, seeded by the step so that they differ from those of the first start.
            self.seed += self.steps
            log.warning("env %s: episodes in flight cannot be continued (%s); the resumed run starts fresh episodes",
                        self.cfg.id, problem)

    def load_episodes(self, episodes: dict) -> str | None:
        """Restore the saved episodes; returns what went wrong, or None."""
        if (episodes["env_id"], episodes["num_envs"]) != (self.cfg.id, self.num_envs):
            return (f"they are {episodes['num_envs']} episodes of {episodes['env_id']}, "
                    f"not {self.num_envs} of {self.cfg.id}")
        if self.sampler is not None:
            self.started = True
            return self.sampler.load_episodes(episodes)
        if not isinstance(self.envs, SerialEnvs):
            return UNSAVED[self.backend]
        try:
            self.restored_obs = self.envs.load_state_dict(episodes)
        except EnvStateError as error:
            return str(error)
        set_generator_state(self.action_space, episodes["action_space"])
        self.episode_return[:] = episodes["episode_return"].numpy()
        self.episode_length[:] = episodes["episode_length"].numpy()
        self.discounted_return = episodes["discounted_return"].numpy().copy()
        self.finished_returns = list(episodes["finished_returns"])
        self.finished_lengths = list(episodes["finished_lengths"])
        self.started = True
        return None

    def close(self) -> None:
        self.envs.close()
