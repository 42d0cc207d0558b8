"""Atari 2600 games through the Arcade Learning Environment (ale-py), with the standard DQN wrappers.

The preprocessing of Mnih et al. 2015 ("Methods: Preprocessing") as OpenAI baselines and
Stable-Baselines3 implement it:
  - up to 30 no-op actions at reset, so episodes start in different states;
  - each action repeated for 4 frames, rewards summed, the observation the pixel-wise max over the
    last 2 of them (sprites flicker between frames);
  - the screen in grayscale (the ALE's own luminance), resized to 84x84 by area averaging, uint8;
  - FIRE pressed when a game starts in games that need it (Breakout; harmless in Pong), as baselines'
    FireResetEnv (under the "nature" protocol, after each lost life too);
  - the last 4 frames stacked, channels first: observations of shape (4, 84, 84), uint8.
gymnasium's AtariPreprocessing does the first three with OpenCV (an extra dependency of ~60 MB);
`AtariPreprocessing` here does them with numpy: the area resize is a weighted sum of a few shifted
rows, then columns (no BLAS call: a multithreaded matrix product measured 10x slower per step than
the whole env step on a busy 2-core machine).

Two evaluation protocols (`env.protocol`), because published scores are only comparable under the
protocol they were measured with:
  - "nature", the default: the protocol of the DQN paper and of the scores that baselines, SB3 and
    CleanRL report: a deterministic ALE (no sticky actions); a lost life is terminal for the learner
    (`terminated`, so value targets do not bootstrap across it) and FIRE is pressed again after it,
    while the game goes on: episode statistics and evaluation returns count whole games;
  - "machado": Machado et al. 2018 ("Revisiting the ALE"): sticky actions (the previous
    action repeats with probability 0.25 at every frame) and no use of the life counter, so an
    episode, for the learner too, is a whole game (FIRE only at its start).
Both cap a game at `env.max_episode_steps` of the agent's own steps (27,000 x 4 frames = 108,000
frames, 30 minutes of play), counted outside the frame skip (the no-ops and FIRE presses of resets come
on top); the ALE's own frame cap is turned off so that one limit counts.

Reward clipping to {-1, 0, 1} is the learner's (DQN's `algo.clip_reward`), so that
train/episodic_return and eval/mean_return report the game score.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
from gymnasium.wrappers import FrameStackObservation

from rlrun.config import ConfigError

FRAME_SKIP = 4
SCREEN_SIZE = 84
FRAME_STACK = 4
NOOP_MAX = 30

# What each protocol sets: the ALE's sticky-action probability, and whether a lost life is terminal.
PROTOCOLS = {
    "nature": {"repeat_action_probability": 0.0, "terminal_on_life_loss": True},
    "machado": {"repeat_action_probability": 0.25, "terminal_on_life_loss": False},
}


def register() -> None:
    """Register the ALE/... ids with gymnasium (ale-py ships the Pong and Breakout ROMs)."""
    try:
        import ale_py
    except ImportError:
        raise ConfigError("Atari envs need ale-py: pip install -e '.[atari]'") from None
    gym.register_envs(ale_py)


def make_kwargs(protocol: str, kwargs: dict) -> dict:
    """gymnasium.make's keyword arguments for an ALE env under `protocol`."""
    sticky = PROTOCOLS[protocol]["repeat_action_probability"]
    if kwargs.get("repeat_action_probability", sticky) != sticky:
        raise ConfigError(f"env.kwargs.repeat_action_probability={kwargs['repeat_action_probability']} contradicts "
                          f"env.protocol={protocol} (which sets {sticky}); drop the kwarg or choose the other protocol")
    # No ALE frame cap: the game's cap is env.max_episode_steps, in agent steps (see wrap).
    return {"max_num_frames_per_episode": None, **kwargs, "repeat_action_probability": sticky}


def area_weights(size_in: int, size_out: int) -> np.ndarray:
    """(size_out, size_in) matrix averaging each output pixel's span of input pixels, weighted by
    overlap: resizing by area (OpenCV's INTER_AREA) along one axis, for size_out <= size_in."""
    edges = np.arange(size_out + 1) * (size_in / size_out)
    start, end = edges[:-1, None], edges[1:, None]
    pixels = np.arange(size_in)[None, :]
    overlap = np.clip(np.minimum(end, pixels + 1) - np.maximum(start, pixels), 0, None)
    return (overlap / (size_in / size_out)).astype(np.float32)


def area_taps(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray]:
    """area_weights as (taps, size_out) arrays of input indices and weights: each output pixel
    overlaps at most ceil(size_in / size_out) + 1 input pixels (zero weights pad the shorter rows)."""
    weights = area_weights(size_in, size_out)
    taps = int((weights > 0).sum(1).max())
    first = (weights > 0).argmax(1)
    span = first[None, :] + np.arange(taps)[:, None]
    index = np.minimum(span, size_in - 1)
    return index, np.where(span < size_in, np.take_along_axis(weights.T, index, 0), 0).astype(np.float32)


class AtariPreprocessing(gym.Wrapper):
    """No-op starts, frame skip with a max over the last two frames, grayscale 84x84 uint8 frames."""

    def __init__(self, env: gym.Env, noop_max: int = NOOP_MAX, frame_skip: int = FRAME_SKIP,
                 screen_size: int = SCREEN_SIZE):
        super().__init__(env)
        if getattr(env.unwrapped, "_frameskip", None) != 1:
            raise ConfigError(f"{env.spec.id if env.spec else env} with wrappers=atari needs kwargs.frameskip: 1 "
                              f"(the wrapper repeats each action {frame_skip} frames and max-pools the last two)")
        self.ale = env.unwrapped.ale
        self.noop_max = noop_max
        self.frame_skip = frame_skip
        height, width = env.observation_space.shape[:2]
        self.frames = np.zeros((2, height, width), np.uint8)  # the last two raw grayscale screens
        self.row_index, row_weights = area_taps(height, screen_size)
        self.row_weights = row_weights[:, :, None]
        self.col_index, self.col_weights = area_taps(width, screen_size)
        self.observation_space = gym.spaces.Box(0, 255, (screen_size, screen_size), np.uint8)

    def observation(self) -> np.ndarray:
        frame = np.maximum(self.frames[0], self.frames[1]).astype(np.float32)
        rows = sum(w * frame[i] for i, w in zip(self.row_index, self.row_weights, strict=True))
        resized = sum(w * rows[:, i] for i, w in zip(self.col_index, self.col_weights, strict=True))
        return np.minimum(resized + 0.5, 255).astype(np.uint8)  # round to nearest, as cv2.resize

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        _, info = self.env.reset(seed=seed, options=options)
        # The number of no-ops comes from the env's own generator, which reset(seed=...) seeds.
        for _ in range(self.env.unwrapped.np_random.integers(1, self.noop_max + 1) if self.noop_max else 0):
            _, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                _, info = self.env.reset()
        self.ale.getScreenGrayscale(self.frames[1])
        self.frames[0] = self.frames[1]
        return self.observation(), info

    def get_state(self) -> dict:
        """The last two screens (the next observation pools with them); the ALE's state is saved
        with the unwrapped env (rlrun.envs.state)."""
        return {"frames": torch.from_numpy(self.frames.copy())}

    def set_state(self, state: dict) -> None:
        self.frames[:] = state["frames"].numpy()

    def step(self, action):
        total_reward = 0.0
        for t in range(self.frame_skip):
            _, reward, terminated, truncated, info = self.env.step(action)
            total_reward += float(reward)
            ended = terminated or truncated
            if ended or t >= self.frame_skip - 2:
                self.frames[0] = self.frames[1]
                self.ale.getScreenGrayscale(self.frames[1])
            if ended:
                if t < self.frame_skip - 1:
                    self.frames[0] = self.frames[1]  # the game ended early: no second frame to pool with
                break
        return self.observation(), total_reward, terminated, truncated, info


class FireReset(gym.Wrapper):
    """Press FIRE (action 1), then action 2, after each reset: some games wait for FIRE to launch the
    ball (OpenAI baselines' FireResetEnv). Rewards of these two steps are dropped, as there."""

    def __init__(self, env: gym.Env):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        if len(meanings) < 3 or meanings[1] != "FIRE":
            raise ValueError(f"FireReset needs FIRE as action 1 (actions: {meanings})")

    def get_state(self) -> None:
        return None  # nothing between steps: a checkpoint needs nothing from this wrapper

    def set_state(self, state: None) -> None:
        pass

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class Game(gym.Wrapper):
    """One game of the ALE as the protocol defines its episodes, and its step limit.

    With `terminal_on_life_loss` (the Nature protocol, as OpenAI baselines' EpisodicLifeEnv), a lost
    life is terminal for the learner but not the end of the game: the next reset goes on playing,
    after a no-op step and, in games that need it, FIRE (then action 2, as FireReset). The step limit
    counts the agent's own steps in a game (not the no-ops and FIRE presses of resets), and the
    limit is checked here, outside every step that a reset takes, so that a game always ends on a
    step the vector env sees. `info["game_over"]` says on every step whether the game itself ended,
    so that episode statistics count whole games."""

    def __init__(self, env: gym.Env, terminal_on_life_loss: bool, max_steps: int | None):
        super().__init__(env)
        self.ale = env.unwrapped.ale
        self.terminal_on_life_loss = terminal_on_life_loss
        self.max_steps = max_steps
        self.fire = "FIRE" in env.unwrapped.get_action_meanings()
        self.lives = 0
        self.steps = 0  # agent steps in this game
        self.game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.steps += 1
        if self.max_steps is not None and self.steps >= self.max_steps:
            truncated = True
        self.game_over = terminated or truncated
        lives = self.ale.lives()
        if self.terminal_on_life_loss and 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, {**info, "game_over": self.game_over}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if not (self.game_over or seed is not None):
            # A life was lost, the game goes on: a no-op out of the terminal state (baselines), then FIRE.
            for action in (0, 1, 2) if self.fire else (0,):
                obs, _, terminated, truncated, info = self.env.step(action)
                if terminated or truncated:  # the game cannot end between lives; if it did, start anew
                    self.game_over = True
                    break
            if not self.game_over:
                self.lives = self.ale.lives()
                return obs, info
        obs, info = self.env.reset(seed=seed, options=options)
        self.game_over = False
        self.steps = 0
        self.lives = self.ale.lives()
        return obs, info

    def get_state(self) -> dict:
        return {"lives": self.lives, "steps": self.steps, "game_over": self.game_over}

    def set_state(self, state: dict) -> None:
        self.lives, self.steps, self.game_over = state["lives"], state["steps"], state["game_over"]


class FrameStack(FrameStackObservation):
    """gymnasium's FrameStackObservation, with its frames in a checkpoint (rlrun.envs.state)."""

    def get_state(self) -> dict:
        return {"frames": torch.from_numpy(np.stack(list(self.obs_queue)))}

    def set_state(self, state: dict) -> None:
        self.obs_queue.extend(list(state["frames"].numpy()))


def wrap(env: gym.Env, protocol: str = "nature", max_episode_steps: int | None = None) -> gym.Env:
    """The DQN preprocessing stack around an ALE env made with frameskip=1 (and make_kwargs): FIRE at
    the start of a game, then the protocol's episodes and the step limit per game (Game)."""
    env = AtariPreprocessing(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)
    env = Game(env, PROTOCOLS[protocol]["terminal_on_life_loss"], max_episode_steps)
    return FrameStack(env, FRAME_STACK)
