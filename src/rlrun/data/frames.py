"""Replay memory for stacked frames that stores each frame once (Atari's 4 x 84 x 84 observations).

ReplayBuffer stores s and s' in full: with 4 stacked frames in each, every frame of an episode is
stored 8 times (2 x 28,224 bytes per transition: 56 GB for the Nature paper's 1M transitions). Yet
consecutive stacks share 3 of their 4 frames, and s' of one step is s of the next, so each
transition brings one new frame. This buffer keeps that frame only (7,056 bytes a transition: 1M in
7.1 GB) and rebuilds both stacks from indices when it samples, as Dopamine's circular replay and
SB3's `optimize_memory_usage` do; Mnih et al. (2015) stored single frames too.

It relies on what gymnasium's FrameStackObservation (rlrun.envs.atari.FrameStack) produces:
  - s' is s shifted by one frame, the new frame last;
  - an episode's first stack is its first frame repeated (padding_type="reset"), so a stack that
    reaches back before its episode's start repeats that first frame, never a frame of another episode.
Each env's frames are kept in arrival order: transition t holds frame t, the newest of s; s is frames
t-3..t and s' frames t-2..t+1, where `depth` (steps since the episode started, at most 3) stops them
at the episode's first frame. Slot t+1 holds the first frame of the next episode when t ended it
(terminated or truncated alike), so such a transition keeps its own last frame aside
(`final_frames`, one frame per episode end held): a truncated s' is bootstrapped from, and a
terminated one is stored exactly too, so that samples equal ReplayBuffer's, indices included.

Several envs write side by side: rows of `num_envs` slots, env e in column e, which is ReplayBuffer's
order when capacity is a multiple of num_envs (capacity is rounded down to one). The frame ring has
4 rows more than the transition ring: the 3 frames before the oldest transition, and the s' frame
after the newest.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch


class FrameStackReplay:
    """Transitions (s, a, r, s', terminated) of frame-stacked observations from N envs, the oldest
    overwritten once `capacity` is full; `sample` returns what ReplayBuffer would."""

    def __init__(self, capacity: int, observation_space: gym.Space, action_space: gym.Space, num_envs: int):
        if len(observation_space.shape) < 2 or observation_space.shape[0] < 2:
            raise ValueError(f"FrameStackReplay needs stacks of frames, stack first (got {observation_space.shape})")
        if capacity < num_envs:
            raise ValueError(f"buffer_size={capacity} holds less than one step of {num_envs} envs")
        self.num_envs = n = num_envs
        self.rows = capacity // n  # steps of all envs held
        self.capacity = self.rows * n
        self.stack = observation_space.shape[0]
        self.history = self.stack - 1  # frames before a stack's newest
        self.frame_rows = self.rows + self.history + 1
        self.frame_shape = observation_space.shape[1:]
        self.frames = np.zeros((self.frame_rows * n, *self.frame_shape), observation_space.dtype)
        discrete = isinstance(action_space, gym.spaces.Discrete)
        self.actions = np.zeros((self.capacity, *action_space.shape), np.int64 if discrete else np.float32)
        self.rewards = np.zeros(self.capacity, np.float32)
        self.terminated = np.zeros(self.capacity, np.float32)
        self.ended = np.zeros(self.capacity, bool)  # terminated or truncated: its last frame is in final_frames
        self.depth = np.zeros(self.capacity, np.uint8)  # frames of its episode before its newest, at most `history`
        self.final_frames: dict[int, np.ndarray] = {}  # transition index -> the last frame of an ended episode
        self.steps = 0  # rows written (a step of every env each), which places them in the rings
        self.pos = 0
        self.size = 0
        self.check_continuity = False  # after load_state_dict: do the envs continue the stored episodes?
        # Frame slots of a transition's s and s' together, oldest first: steps back from t + 1.
        self.window = np.arange(self.stack, -1, -1)

    @staticmethod
    def nbytes(capacity: int, observation_space: gym.Space, action_space: gym.Space, num_envs: int) -> int:
        """The bytes the arrays take once full (without final_frames: one frame per episode end held)."""
        frame = int(np.prod(observation_space.shape[1:])) * np.dtype(observation_space.dtype).itemsize
        rows = capacity // num_envs
        action = int(np.prod(action_space.shape)) * (8 if isinstance(action_space, gym.spaces.Discrete) else 4)
        per_transition = action + 4 + 4 + 1 + 1  # action, reward, terminated, ended, depth
        return (rows + observation_space.shape[0]) * num_envs * frame + rows * num_envs * per_transition

    # --- positions ------------------------------------------------------------------------------------

    def frame_slots(self, step: np.ndarray, env: np.ndarray) -> np.ndarray:
        """Where the frame of env `env` at step `step` (counted as self.steps) lives. Shifted by `history`
        so that the frames before step 0 (written by the first add) come first in the array."""
        return ((step + self.history) % self.frame_rows) * self.num_envs + env

    def row(self, step: int) -> slice:
        """The transition slots of step `step` (counted as self.steps), env 0 first."""
        start = (step % self.rows) * self.num_envs
        return slice(start, start + self.num_envs)

    def frame_row(self, step: int) -> slice:
        """frame_slots(step, every env): the frames of step `step`, env 0 first."""
        start = ((step + self.history) % self.frame_rows) * self.num_envs
        return slice(start, start + self.num_envs)

    def step_of(self, index: np.ndarray) -> np.ndarray:
        """The step (counted as self.steps) of the transitions at `index`: the latest step written to
        their row."""
        last = self.steps - 1
        return last - (last - index // self.num_envs) % self.rows

    def stacks(self, index: np.ndarray) -> np.ndarray:
        """Frames t-3..t+1 of the transitions at `index` as (len(index), stack + 1, *frame): s is [:, :-1],
        s' is [:, 1:]. A frame before the episode's first repeats that first frame."""
        env = index % self.num_envs
        depth = self.depth[index].astype(np.int64)
        # Steps back from t + 1: s' may reach depth + 1 frames behind its newest, and s is one step older.
        back = np.minimum(self.window[None, :], depth[:, None] + 1)
        window = self.frames[self.frame_slots(self.step_of(index)[:, None] + 1 - back, env[:, None])]
        for row in np.flatnonzero(self.ended[index]):
            window[row, -1] = self.final_frames[int(index[row])]  # slot t + 1 holds the next episode's start
        return window

    # --- storing and sampling -------------------------------------------------------------------------

    def add(self, obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, next_obs: np.ndarray,
            terminated: np.ndarray, truncated: np.ndarray) -> None:
        """Store one transition per env (arrays with the env index first); `truncated` marks the steps cut
        by a time limit, whose s' is kept although the env resets."""
        # A step of every env fills one row of each ring: contiguous slots, written through slices (an
        # Atari step pays for every numpy call here; index arrays cost several times more than slices).
        n, step = self.num_envs, self.steps
        row = self.row(step)
        if self.size == 0:
            # The stacks' older frames came before the buffer (a first step, or a run resumed without its
            # replay): written to the slots before this step's, which no transition uses until they wrap.
            for back in range(1, self.history + 1):
                self.frames[self.frame_row(step - back)] = obs[:, self.history - back]
            depth = self.history
        else:
            previous = self.row(step - 1)
            if self.check_continuity:
                self.end_discontinued(np.arange(previous.start, previous.stop), obs)
            starts = self.ended[previous]
            depth = np.minimum(self.depth[previous] + 1, self.history)
            if starts.any():
                for e in np.flatnonzero(starts):
                    if not (obs[e] == obs[e, -1]).all():
                        raise ValueError("an episode's first observation is not its first frame repeated: this "
                                         "replay needs frame stacks padded as "
                                         "FrameStackObservation(padding_type='reset')")
                depth[starts] = 0
        if self.final_frames and self.ended[row].any():  # the transitions overwritten here take their last frames along
            for i in row.start + np.flatnonzero(self.ended[row]):
                del self.final_frames[int(i)]
        self.frames[self.frame_row(step)] = obs[:, -1]
        self.frames[self.frame_row(step + 1)] = next_obs[:, -1]  # s' of the newest transition
        ended = np.logical_or(terminated, truncated)
        if ended.any():
            for e in np.flatnonzero(ended):
                self.final_frames[row.start + int(e)] = next_obs[e, -1].astype(self.frames.dtype)
        self.actions[row] = actions
        self.rewards[row] = rewards
        self.terminated[row] = terminated
        self.ended[row] = ended
        self.depth[row] = depth
        self.steps += 1
        self.pos = (self.steps % self.rows) * n
        self.size = min(self.size + n, self.capacity)

    def end_discontinued(self, previous: np.ndarray, obs: np.ndarray) -> None:
        """After a resume, the envs may have started new episodes (their state could not be restored): the
        newest transitions, whose s' is not `obs`, become ends of episodes, keeping that s' aside."""
        self.check_continuity = False
        stored_next = self.stacks(previous)[:, 1:]
        for e in np.flatnonzero(~self.ended[previous]):
            if not np.array_equal(stored_next[e], obs[e]):
                self.final_frames[int(previous[e])] = stored_next[e, -1].copy()
                self.ended[previous[e]] = True

    def sample(self, batch_size: int, generator: torch.Generator, device: torch.device) -> dict[str, torch.Tensor]:
        """A uniform sample with replacement, as tensors on `device` (the same draws as ReplayBuffer's)."""
        index = torch.randint(self.size, (batch_size,), generator=generator).numpy()
        # s and s' share all but one frame: one window moves to the device, both are views of it.
        window = torch.from_numpy(self.stacks(index)).to(device)
        return {"obs": window[:, :-1], "actions": torch.from_numpy(self.actions[index]).to(device),
                "rewards": torch.from_numpy(self.rewards[index]).to(device), "next_obs": window[:, 1:],
                "terminated": torch.from_numpy(self.terminated[index]).to(device)}

    # --- checkpointing --------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        """The filled part only, as tensors sharing the arrays' memory (no copy until written), and the
        last frames of ended episodes."""
        frame_rows = min(self.steps + self.history + 1, self.frame_rows)
        finals = sorted(self.final_frames)
        return {"layout": "frames", "rows": self.rows, "num_envs": self.num_envs, "steps": self.steps,
                "frames": torch.from_numpy(self.frames[: frame_rows * self.num_envs]),
                **{name: torch.from_numpy(getattr(self, name)[: self.size])
                   for name in ("actions", "rewards", "terminated", "ended", "depth")},
                "final_index": torch.tensor(finals, dtype=torch.int64),
                "final_frames": torch.from_numpy(np.stack([self.final_frames[i] for i in finals]) if finals
                                                 else np.zeros((0, *self.frame_shape), self.frames.dtype)),
                "pos": self.pos, "size": self.size}

    def load_state_dict(self, state: dict) -> None:
        if state.get("layout") != "frames":
            self.load_whole_observations(state)
            return
        if (state["rows"], state["num_envs"]) != (self.rows, self.num_envs):
            raise ValueError(f"checkpoint replay holds {state['rows'] * state['num_envs']} transitions of "
                             f"{state['num_envs']} envs, this one {self.capacity} of {self.num_envs}: "
                             f"resume with the buffer_size and num_envs it was made with")
        frames = state["frames"].numpy()
        self.frames[: len(frames)] = frames
        size = state["size"]
        for name in ("actions", "rewards", "terminated", "ended", "depth"):
            getattr(self, name)[:size] = state[name].numpy()
        self.final_frames = {int(i): frame.copy() for i, frame in
                             zip(state["final_index"].tolist(), state["final_frames"].numpy(), strict=True)}
        self.steps, self.pos, self.size = state["steps"], state["pos"], size
        self.check_continuity = self.steps > 0

    def load_whole_observations(self, state: dict) -> None:
        """A ReplayBuffer checkpoint (s and s' whole, as rlrun stored Atari replays before this buffer):
        its transitions added again, oldest first. An episode ended where s' is not the next s of its env
        (terminated as stored, truncated otherwise); the newest transitions are checked at the next add."""
        size, n = state["size"], self.num_envs
        if size % n:
            raise ValueError(f"checkpoint replay holds {size} transitions, not whole steps of {n} envs")
        order = (state["pos"] + np.arange(size)) % size if size else np.arange(0)  # oldest first, in steps of n
        obs, next_obs = state["obs"].numpy(), state["next_obs"].numpy()
        actions, rewards = state["actions"].numpy(), state["rewards"].numpy()
        terminated = state["terminated"].numpy() > 0
        self.ended[:] = False
        self.final_frames, self.size = {}, 0
        # A full buffer of this capacity: each transition goes back to its slot, so samples draw the same ones.
        self.steps = state["pos"] // n if size == self.capacity else 0
        for start in range(0, size, n):
            index = order[start : start + n]
            ended = terminated[index].copy()
            if start + n < size:
                following = obs[order[start + n : start + 2 * n]]
                ended |= ~(next_obs[index] == following).reshape(n, -1).all(1)
            self.add(obs[index], actions[index], rewards[index], next_obs[index], terminated[index],
                     ended & ~terminated[index])
        self.check_continuity = self.steps > 0
