"""Atari 2600 games through the Arcade Learning Environment (ale-py), with the standard DQN wrappers.

The preprocessing of Mnih et al. 2015 ("Methods: Preprocessing") as OpenAI baselines and
Stable-Baselines3 implement it:
  - up to 30 no-op actions at reset, so episodes start in different states;
  - each action repeated for 4 frames, rewards summed, the observation the pixel-wise max over the
    last 2 of them (sprites flicker between frames);
  - the screen in grayscale (the ALE's own luminance), resized to 84x84 by area averaging, uint8;
  - FIRE pressed at reset in games that need it to start (Breakout; harmless in Pong), as baselines'
    FireResetEnv;
  - the last 4 frames stacked, channels first: observations of shape (4, 84, 84), uint8.
gymnasium's AtariPreprocessing does the first three with OpenCV (an extra dependency of ~60 MB);
`AtariPreprocessing` here does them with numpy: the area resize is a weighted sum of a few shifted
rows, then columns (no BLAS call: a multithreaded matrix product measured 10x slower per step than
the whole env step on a busy 2-core machine).

Two wrappers of that stack are left out on purpose:
  - reward clipping to {-1, 0, 1} is the learner's (DQN's `algo.clip_reward`), so that
    train/episodic_return and eval/mean_return report the game score;
  - terminal on life loss: an episode here is a whole game, as evaluation measures it; Machado et al.
    2018 ("Revisiting the ALE") recommend against using the life counter.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium.wrappers import FrameStackObservation

from rlrun.config import ConfigError

FRAME_SKIP = 4
SCREEN_SIZE = 84
FRAME_STACK = 4
NOOP_MAX = 30


def register() -> None:
    """Register the ALE/... ids with gymnasium (ale-py ships the Pong and Breakout ROMs)."""
    try:
        import ale_py
    except ImportError:
        raise ConfigError("Atari envs need ale-py: pip install -e '.[atari]'") from None
    gym.register_envs(ale_py)


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

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        for action in (1, 2):
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


def wrap(env: gym.Env) -> gym.Env:
    """The DQN preprocessing stack around an ALE env made with frameskip=1."""
    env = AtariPreprocessing(env)
    if "FIRE" in env.unwrapped.get_action_meanings():
        env = FireReset(env)
    return FrameStackObservation(env, FRAME_STACK)
