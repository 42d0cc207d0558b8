"""`hardware.vector_backend=envpool`: the training envs stepped by EnvPool (C++ envs on a thread pool,
Weng et al. 2022), for the Atari games (env.wrappers=atari, both protocols) and the MuJoCo locomotion
tasks, with the gymnasium path's semantics.

EnvPool's own Atari preprocessing is the same DQN stack as rlrun.envs.atari: up to 30 no-ops at reset,
each action repeated 4 frames with the last two max-pooled, grayscale 84x84 by area averaging, FIRE at
reset in games that need it, 4 frames stacked channels first (uint8 (4, 84, 84)), sticky actions as a
per-frame probability, and `max_episode_steps` counted in agent steps over a whole game. The protocol's
switches map onto its options: "nature" is episodic_life=True (a lost life ends the learner's episode;
info["terminated"] says whether the game ended) and repeat_action_probability=0; "machado" is
episodic_life=False and 0.25. Rewards are not clipped (reward_clip=False): the algorithms clip.
Its stack runs on across a lost life, where gymnasium's FrameStackObservation starts each episode with
its first frame repeated (what DQN's FrameStackReplay rebuilds stacks by): the first 3 stacks of each
episode are padded here to match. Where EnvPool still differs in detail (as its atari_env.h reads): after
a lost life it takes a random number of no-ops, as at a game's start, instead of one, and it presses FIRE
once, not FIRE then action 2.

EnvPool resets an ended env on the NEXT step (that step ignores the action and pays reward 0); VecEnv
works in gymnasium's SAME_STEP convention. So after a step in which some envs ended, those envs
take that resetting step at once, alone (EnvPool steps any subset of its envs): the step returns their
first observations, their last ones go to info["final_obs"], and the algorithm never sees the zero-reward
step. (EnvPool's reset(env_id) would not do: it starts a new game after a lost life.)

Env i is seeded with seed + i (EnvPool's own rule). Whatever EnvPool cannot run as the gymnasium path
would (not installed, an env it does not have, env.kwargs or wrappers it cannot honour) falls back to
the sync backend with one log line saying why (VecEnv).
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rlrun.envs import atari

# The MuJoCo tasks whose EnvPool ports were checked against gymnasium's (same spaces, same kwargs names).
MUJOCO = ("HalfCheetah", "Hopper", "Walker2d", "Ant", "Humanoid")
# EnvPool config keys that belong to the pool, not to the env: never taken from env.kwargs.
POOL_KEYS = {"num_envs", "batch_size", "num_threads", "max_num_players", "thread_affinity_offset", "base_path",
             "seed", "env_seed", "gym_reset_return_info", "max_episode_steps"}
# ale-py's gymnasium kwargs that EnvPool's Atari envs take (under the same name); frameskip=1 and
# repeat_action_probability are the atari wrappers' own (rlrun.envs.atari.make_kwargs checks them).
ATARI_KWARGS = {"full_action_space", "mode", "difficulty"}
HISTORY = atari.FRAME_STACK - 1  # frames in a stack before its newest
NO_LIMIT = 2**31 - 1  # EnvPool's step counter is an int: "no cap" is a cap never reached


class Unsupported(Exception):
    """Why EnvPool cannot run a config as the gymnasium path would (the fallback's log line)."""


def task_options(cfg, envpool) -> tuple[str, dict]:
    """EnvPool's task id and make() options for an env config; raises Unsupported."""
    if isinstance(cfg.wrappers, list):
        raise Unsupported(f"env.wrappers {cfg.wrappers} are gymnasium wrappers, which envpool's envs cannot take")
    atari_stack = cfg.wrappers == "atari"
    if atari_stack:
        task = cfg.id.removeprefix("ALE/")
        # frameskip (1) and repeat_action_probability (the protocol's) were checked by the gymnasium env's make.
        kwargs = {key: value for key, value in cfg.kwargs.items()
                  if key not in ("frameskip", "repeat_action_probability")}
        if set(kwargs) - ATARI_KWARGS:
            raise Unsupported(f"env.kwargs {sorted(set(kwargs) - ATARI_KWARGS)} have no envpool equivalent")
        protocol = atari.PROTOCOLS[cfg.protocol or "nature"]
        options = {**kwargs, "episodic_life": protocol["terminal_on_life_loss"],
                   "repeat_action_probability": protocol["repeat_action_probability"],
                   "reward_clip": False, "noop_max": atari.NOOP_MAX, "frame_skip": atari.FRAME_SKIP,
                   "stack_num": atari.FRAME_STACK, "img_height": atari.SCREEN_SIZE, "img_width": atari.SCREEN_SIZE,
                   "gray_scale": True, "use_inter_area_resize": True, "use_fire_reset": True,
                   "max_episode_steps": cfg.max_episode_steps or NO_LIMIT}
    elif cfg.id.split("-")[0] in MUJOCO:
        task = cfg.id
        limit = cfg.max_episode_steps or gym.spec(cfg.id).max_episode_steps
        options = {**cfg.kwargs, "max_episode_steps": limit or NO_LIMIT}
    else:
        raise Unsupported(f"{cfg.id} is neither an Atari game (env.wrappers=atari) nor one of the MuJoCo tasks "
                          f"{', '.join(MUJOCO)}")
    if task not in envpool.list_all_envs():
        raise Unsupported(f"envpool {envpool.__version__} has no {task} (for {cfg.id})")
    # The MuJoCo ports take gymnasium v5's keyword arguments under the same names; any other is refused.
    if not atari_stack:
        unknown = set(cfg.kwargs) - (set(envpool.make_spec(task).config._fields) - POOL_KEYS)
        if unknown:
            raise Unsupported(f"env.kwargs {sorted(unknown)} have no envpool equivalent for {task}")
    return task, options


class EnvPoolEnvs:
    """EnvPool's envs behind SerialEnvs' interface (reset, step in SAME_STEP mode, spaces), with the
    gymnasium env's spaces: algorithms see the same dtypes (float32 action bounds) on either backend."""

    def __init__(self, cfg, num_envs: int, seed: int, spaces: tuple[gym.Space, gym.Space]):
        try:
            import envpool
        except ImportError:
            raise Unsupported("envpool is not installed (pip install 'rlrun[envpool]')") from None
        self.envpool = envpool
        self.task, self.options = task_options(cfg, envpool)
        self.num_envs = num_envs
        self.single_observation_space, self.single_action_space = spaces
        self.atari = cfg.wrappers == "atari"
        self.ids = np.arange(num_envs)
        self.games = np.ones(num_envs, bool)  # outside Atari every ended episode is a whole game
        self.depth = np.zeros(num_envs, int)  # Atari: frames of each env's episode before its newest, at most 3
        self.pool = self.make(seed)
        if self.pool.observation_space.shape != self.single_observation_space.shape or \
                self.pool.action_space.shape != self.single_action_space.shape:
            self.pool.close()
            raise Unsupported(f"envpool's {self.task} has spaces {self.pool.observation_space}, "
                              f"{self.pool.action_space}; gymnasium's {cfg.id} has {spaces[0]}, {spaces[1]}")
        self.fresh = True  # not reset since it was made: reset(seed) with the same seed needs no new pool

    def make(self, seed: int):
        self.seed = seed
        return self.envpool.make(self.task, env_type="gymnasium", num_envs=self.num_envs, seed=seed, **self.options)

    def reset(self, seed: int | None = None) -> tuple[np.ndarray, dict]:
        """Reset every env; `seed` (env i gets seed + i) makes a new pool, as EnvPool seeds only at creation."""
        if seed is not None and not (self.fresh and seed == self.seed):
            self.pool.close()
            self.pool = self.make(seed)
        self.fresh = False
        obs, info = self.pool.reset()
        obs = self.in_order(info["env_id"], obs)[0]
        if self.atari:
            self.depth[:] = 0
            obs = self.pad_episode_starts(obs)
        return obs, {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        obs, reward, terminated, truncated, info = self.pool.step(actions)
        game_over = self.games  # read only where an episode ended
        if self.atari:  # the game itself ended, not only a life: the step cap, or the ALE's game over
            game_over = info["terminated"].astype(bool) | truncated
        obs, reward, terminated, truncated, game_over = self.in_order(info["env_id"], obs, reward, terminated,
                                                                      truncated, game_over)
        if self.atari:
            self.depth = np.minimum(self.depth + 1, HISTORY)
            obs = self.pad_episode_starts(obs)
        ended = np.flatnonzero(terminated | truncated)
        final_obs = None
        if len(ended):
            # EnvPool's own autoreset, taken now for the ended envs alone: the step that ignores its action.
            # (Its reset(env_id) would start a new game after a lost life, not go on with the next life.)
            final_obs, obs = obs, obs.copy()
            first, _, _, _, reset_info = self.pool.step(actions[ended], ended)
            obs[reset_info["env_id"]] = first
            if self.atari:
                self.depth[ended] = 0
                obs = self.pad_episode_starts(obs)
        return obs, reward, terminated, truncated, {"final_obs": final_obs, "game_over": game_over}

    def pad_episode_starts(self, obs: np.ndarray) -> np.ndarray:
        """Atari stacks whose episode is younger than the stack: EnvPool's stack runs on across a lost life,
        gymnasium's FrameStackObservation (and so DQN's FrameStackReplay, which rebuilds stacks from single
        frames) starts every episode with its first frame repeated. The frames before that one become it."""
        young = np.flatnonzero(self.depth < HISTORY)
        if len(young) and not obs.flags.writeable:
            obs = obs.copy()
        for i in young:  # only envs in the first 3 steps of an episode
            first = HISTORY - self.depth[i]  # the slot of the episode's first frame
            obs[i, :first] = obs[i, first]
        return obs

    def in_order(self, env_id: np.ndarray, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
        """Rows by env id (a batch of all envs comes back in id order; checked, not assumed)."""
        if (env_id == self.ids).all():
            return arrays
        ordered = tuple(np.empty_like(x) for x in arrays)
        for x, out in zip(arrays, ordered, strict=True):
            out[env_id] = x
        return ordered

    def close(self) -> None:
        self.pool.close()
