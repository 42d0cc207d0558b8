"""Small environments of each kind of gymnasium space, for rlrun's space tests and as examples of a
researcher's own env package: `rlrun algo=ppo env=space_envs:DictReach-v0` (with tests/ on
PYTHONPATH). Importing the package registers the ids; gymnasium imports it for `module:id`.

Each is learnable within ~20-30k steps of PPO (DictPointReach: of SAC) and far from trivial for a random policy:

    DictReach-v0      Dict observation {position (2,), goal (2,)}, Discrete(5) moves on a 5x5 grid;
                      reward -0.1 per step, +1 at the goal; 20 steps
    DictPointReach-v0 Dict observation {position (2,), goal (2,)} in the square [-1, 1]^2, Box(-1, 1, (2,))
                      actions moving the point by 0.2 x action; reward minus the distance to the goal
                      per step, the episode ends within 0.1 of it; 25 steps
    MultiReach-v0     Box observation (4,), MultiDiscrete([3, 3]) actions (one move per axis); the
                      same reach task, both axes at once
    BitCopy-v0        Box observation of 4 random bits, MultiBinary(4) actions; reward: the number of
                      bits copied right (0-4) per step, 10 steps
    ImageTarget-v0    a 48x48x3 uint8 channels-last image with one bright square in one of 4 quadrants,
                      Discrete(4): name the quadrant; reward 1 when right, 10 steps
    DictImageTarget-v0 {image: ImageTarget's image, flip: (1,)}: with flip = 1 name the opposite quadrant
    RenderlessReach-v0 MultiReach's task from a constructor that takes no render_mode argument
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

MOVES = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -1]])  # stay, +x, -x, +y, -y
SIZE = 5


class DictReach(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, render_mode: str | None = None):
        self.observation_space = spaces.Dict({"position": spaces.Box(0.0, 1.0, (2,), np.float32),
                                              "goal": spaces.Box(0.0, 1.0, (2,), np.float32)})
        self.action_space = spaces.Discrete(5)

    def observe(self) -> dict:
        scale = SIZE - 1
        return {"position": (self.position / scale).astype(np.float32), "goal": (self.goal / scale).astype(np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = self.np_random.integers(0, SIZE, 2)
        self.goal = self.np_random.integers(0, SIZE, 2)
        while (self.goal == self.position).all():
            self.goal = self.np_random.integers(0, SIZE, 2)
        return self.observe(), {}

    def move(self, delta: np.ndarray) -> tuple[float, bool]:
        self.position = np.clip(self.position + delta, 0, SIZE - 1)
        reached = bool((self.position == self.goal).all())
        return (1.0 if reached else -0.1), reached

    def step(self, action):
        reward, reached = self.move(MOVES[int(action)])
        return self.observe(), reward, reached, False, {}

    # rlrun saves episodes in flight with these (rlrun.envs.state): a resumed run continues them.
    def get_state(self) -> dict:
        return {"position": self.position.copy(), "goal": self.goal.copy()}

    def set_state(self, state: dict) -> None:
        self.position, self.goal = state["position"].copy(), state["goal"].copy()


class MultiReach(DictReach):
    def __init__(self, render_mode: str | None = None):
        self.observation_space = spaces.Box(0.0, 1.0, (4,), np.float32)
        self.action_space = spaces.MultiDiscrete([3, 3])  # per axis: stay, +1, -1

    def observe(self) -> np.ndarray:
        return np.concatenate(list(super().observe().values())).astype(np.float32)

    def step(self, action):
        delta = np.array([0, 1, -1])[np.asarray(action)]
        reward, reached = self.move(delta)
        return self.observe(), reward, reached, False, {}


class RenderlessReach(MultiReach):
    """A user's env whose constructor takes no render_mode."""

    def __init__(self):
        super().__init__()


class DictPointReach(gym.Env):
    metadata = {"render_modes": []}
    SPEED, RADIUS = 0.2, 0.1

    def __init__(self, render_mode: str | None = None):
        self.observation_space = spaces.Dict({"position": spaces.Box(-1.0, 1.0, (2,), np.float32),
                                              "goal": spaces.Box(-1.0, 1.0, (2,), np.float32)})
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)

    def observe(self) -> dict:
        return {"position": self.position.astype(np.float32), "goal": self.goal.astype(np.float32)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.position = self.np_random.uniform(-1.0, 1.0, 2)
        self.goal = self.np_random.uniform(-1.0, 1.0, 2)
        return self.observe(), {}

    def step(self, action):
        move = self.SPEED * np.clip(np.asarray(action, np.float64), -1.0, 1.0)
        self.position = np.clip(self.position + move, -1.0, 1.0)
        distance = float(np.linalg.norm(self.goal - self.position))
        return self.observe(), -distance, distance < self.RADIUS, False, {}

    def get_state(self) -> dict:
        return {"position": self.position.copy(), "goal": self.goal.copy()}

    def set_state(self, state: dict) -> None:
        self.position, self.goal = state["position"].copy(), state["goal"].copy()


class BitCopy(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, bits: int = 4):
        self.observation_space = spaces.Box(0.0, 1.0, (bits,), np.float32)
        self.action_space = spaces.MultiBinary(bits)

    def draw(self) -> np.ndarray:
        self.bits = self.np_random.integers(0, 2, self.action_space.n).astype(np.float32)
        return self.bits.copy()

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.draw(), {}

    def step(self, action):
        reward = float((np.asarray(action) == self.bits).sum())
        return self.draw(), reward, False, False, {}


class ImageTarget(gym.Env):
    metadata = {"render_modes": []}

    def __init__(self, size: int = 48):
        self.size = size
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)  # channels last
        self.action_space = spaces.Discrete(4)

    def draw(self) -> np.ndarray:
        self.quadrant = int(self.np_random.integers(0, 4))
        half = self.size // 2
        image = self.np_random.integers(0, 40, (self.size, self.size, 3)).astype(np.uint8)
        top, left = half * (self.quadrant // 2), half * (self.quadrant % 2)
        image[top + 6 : top + half - 6, left + 6 : left + half - 6] = 255
        return image

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.draw(), {}

    def step(self, action):
        reward = 1.0 if int(action) == self.quadrant else 0.0
        return self.draw(), reward, False, False, {}

    def get_state(self) -> dict:
        return {"quadrant": self.quadrant}  # the answer to the observation shown (flip included)

    def set_state(self, state: dict) -> None:
        self.quadrant = int(state["quadrant"])


class DictImageTarget(ImageTarget):
    """ImageTarget's image beside a vector key: with flip = 1 the answer is the opposite quadrant (3 - q)."""

    def __init__(self, size: int = 48):
        super().__init__(size)
        self.observation_space = spaces.Dict({"image": spaces.Box(0, 255, (size, size, 3), np.uint8),
                                              "flip": spaces.Box(0.0, 1.0, (1,), np.float32)})

    def draw(self) -> dict:
        image = super().draw()
        self.flip = int(self.np_random.integers(0, 2))
        if self.flip:
            self.quadrant = 3 - self.quadrant
        return {"image": image, "flip": np.array([self.flip], np.float32)}


def register() -> None:
    for name, cls, steps in (("DictReach-v0", DictReach, 20), ("DictPointReach-v0", DictPointReach, 25),
                             ("MultiReach-v0", MultiReach, 20),
                             ("RenderlessReach-v0", RenderlessReach, 20), ("BitCopy-v0", BitCopy, 10),
                             ("ImageTarget-v0", ImageTarget, 10), ("DictImageTarget-v0", DictImageTarget, 10)):
        if name not in gym.registry:
            gym.register(name, entry_point=cls, max_episode_steps=steps)


register()
