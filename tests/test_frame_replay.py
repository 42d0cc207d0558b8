"""The Atari replay that stores each frame once: every stack it rebuilds equals what the replay of whole
observations stored, on real Breakout episodes (lost lives, time limits, several envs, a wrapped ring)."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from helpers import CPU, load_conf

pytest.importorskip("ale_py", reason="Atari needs the atari extra: pip install -e '.[atari]'")

from rlrun.algos.dqn import DQN, replay_bytes  # noqa: E402
from rlrun.data import ReplayBuffer  # noqa: E402
from rlrun.data.frames import FrameStackReplay  # noqa: E402
from rlrun.envs import VecEnv, env_config  # noqa: E402
from rlrun.nets import network_config  # noqa: E402

FIELDS = ("obs", "actions", "rewards", "next_obs", "terminated")


def breakout(num_envs: int, seed: int, max_episode_steps: int = 60) -> VecEnv:
    # Under the nature protocol a lost life ends the learner's episode (terminated); the short step
    # limit truncates games too.
    cfg = {**load_conf("env", "Breakout"), "max_episode_steps": max_episode_steps}
    return VecEnv(env_config(cfg), num_envs, seed, "sync", 0.99)


def fill(env: VecEnv, buffers: list, steps: int, seed: int, obs: np.ndarray | None = None,
         check_every: int = 0) -> tuple[np.ndarray, dict]:
    """Random play stored as the off-policy loop stores it (s' of an ended step is its final observation);
    with check_every, both buffers are compared every so many steps. Returns the last obs and what happened."""
    rng = np.random.default_rng(seed)
    obs = env.reset() if obs is None else obs
    seen = {"terminated": 0, "truncated": 0}
    for t in range(steps):
        actions = rng.integers(env.action_space.n, size=env.num_envs)
        next_obs, reward, terminated, truncated, final_obs = env.step(actions)
        true_next = next_obs
        if final_obs is not None:
            true_next = np.where((terminated | truncated)[:, None, None, None], final_obs, next_obs)
        for buffer in buffers:
            buffer.add(obs, actions, reward, true_next, terminated, truncated)
        seen["terminated"] += int(terminated.sum())
        seen["truncated"] += int((truncated & ~terminated).sum())
        obs = next_obs
        if check_every and t % check_every == 0:
            assert_same_transitions(*buffers)
    return obs, seen


def assert_same_transitions(whole: ReplayBuffer, frames: FrameStackReplay) -> None:
    """Every stored transition, stack by stack, and a sample drawn from the same generator state."""
    assert (whole.size, whole.pos) == (frames.size, frames.pos)
    index = np.arange(whole.size)
    window = frames.stacks(index)
    np.testing.assert_array_equal(window[:, :-1], whole.obs[index])
    np.testing.assert_array_equal(window[:, 1:], whole.next_obs[index])
    for name in ("actions", "rewards", "terminated"):
        np.testing.assert_array_equal(getattr(frames, name)[index], getattr(whole, name)[index])
    a = whole.sample(64, torch.Generator().manual_seed(whole.size), torch.device("cpu"))
    b = frames.sample(64, torch.Generator().manual_seed(whole.size), torch.device("cpu"))
    for name in FIELDS:
        assert a[name].dtype == b[name].dtype and torch.equal(a[name], b[name]), name


def buffers(env: VecEnv, capacity: int) -> list:
    return [ReplayBuffer(capacity, env.observation_space, env.action_space),
            FrameStackReplay(capacity, env.observation_space, env.action_space, env.num_envs)]


def through_checkpoint(state: dict) -> dict:
    out = io.BytesIO()
    torch.save(state, out)
    out.seek(0)
    return torch.load(out, weights_only=True)


def test_rebuilt_stacks_equal_whole_observations_across_lives_time_limits_envs_and_wrap_around():
    env = breakout(num_envs=2, seed=0)
    whole, frames = buffers(env, capacity=120)  # 60 steps of 2 envs: the ring wraps ~6 times
    _, seen = fill(env, [whole, frames], steps=400, seed=0, check_every=7)
    env.close()
    assert seen["terminated"] >= 3 and seen["truncated"] >= 3  # the boundaries the test is about happened
    assert frames.steps > 3 * frames.rows
    assert_same_transitions(whole, frames)
    assert frames.frames.nbytes < 0.6 * whole.obs.nbytes  # 64 frame slots against 120 stacks of 4


def test_a_stack_never_reaches_into_the_previous_episode():
    env = breakout(num_envs=1, seed=3)
    whole, frames = buffers(env, capacity=500)
    fill(env, [whole, frames], steps=300, seed=3)
    env.close()
    starts = np.flatnonzero(frames.ended[: frames.size - 1]) + 1
    assert len(starts) >= 2
    for i in starts:  # an episode's first stack is its first frame four times, as FrameStackObservation pads
        window = frames.stacks(np.arange(i, i + 3))
        for k in range(3):  # and the next ones repeat that frame until the episode has four of its own
            np.testing.assert_array_equal(window[k, : 3 - k], np.repeat(window[0, -2:-1], 3 - k, axis=0))


def test_checkpointed_buffer_continues_identically():
    env = breakout(num_envs=2, seed=1)
    whole, frames = buffers(env, capacity=100)
    obs, _ = fill(env, [whole, frames], steps=130, seed=1)
    restored = FrameStackReplay(100, env.observation_space, env.action_space, 2)
    restored.load_state_dict(through_checkpoint(frames.state_dict()))
    assert_same_transitions(whole, restored)
    fill(env, [whole, restored], steps=80, seed=2, obs=obs, check_every=5)  # on past a wrap
    env.close()


@pytest.mark.parametrize("steps", [30, 130], ids=["partly-filled", "wrapped"])
def test_a_checkpoint_of_whole_observations_loads_as_single_frames(steps):
    # Atari runs checkpointed before this buffer existed stored s and s' whole (ReplayBuffer).
    env = breakout(num_envs=2, seed=5)
    whole = ReplayBuffer(100, env.observation_space, env.action_space)
    obs, _ = fill(env, [whole], steps=steps, seed=5)
    frames = FrameStackReplay(100, env.observation_space, env.action_space, 2)
    frames.load_state_dict(through_checkpoint(whole.state_dict()))
    assert_same_transitions(whole, frames)
    fill(env, [whole, frames], steps=60, seed=6, obs=obs, check_every=4)  # and it goes on from there
    env.close()


def test_a_partly_filled_checkpoint_holds_the_filled_part_only():
    env = breakout(num_envs=1, seed=0)
    frames = FrameStackReplay(10_000, env.observation_space, env.action_space, 1)
    fill(env, [frames], steps=20, seed=0)
    env.close()
    state = frames.state_dict()
    assert len(state["frames"]) == 20 + 4 and len(state["actions"]) == 20


def test_resumed_buffer_whose_envs_start_new_episodes_ends_the_stored_ones():
    # A resume whose env state could not be restored: the envs reset while the newest stored transitions
    # did not end. Their s' must stay what the env returned, not become the new episodes' first frames.
    env = breakout(num_envs=2, seed=4)
    whole, frames = buffers(env, capacity=100)
    fill(env, [whole, frames], steps=30, seed=4)
    restored = FrameStackReplay(100, env.observation_space, env.action_space, 2)
    restored.load_state_dict(through_checkpoint(frames.state_dict()))
    fresh = breakout(num_envs=2, seed=9)
    fill(fresh, [whole, restored], steps=40, seed=5, check_every=1)
    env.close()
    fresh.close()


def test_a_buffer_started_mid_episode_keeps_the_frames_before_its_first_step():
    # A run resumed without its replay starts storing mid-episode, with four frames of history in s.
    env = breakout(num_envs=1, seed=2)
    obs, _ = fill(env, [], steps=25, seed=2)
    whole, frames = buffers(env, capacity=50)
    fill(env, [whole, frames], steps=60, seed=6, obs=obs, check_every=3)
    env.close()


def test_observations_not_padded_with_their_first_frame_are_refused():
    env = breakout(num_envs=1, seed=0)
    frames = FrameStackReplay(100, env.observation_space, env.action_space, 1)
    obs = np.stack([np.full((1, 84, 84), v, np.uint8) for v in (0, 0, 0, 7)], 1)  # zero padding
    frames.add(obs, np.zeros(1), np.zeros(1), obs, np.ones(1, bool), np.zeros(1, bool))
    with pytest.raises(ValueError, match="first frame repeated"):
        frames.add(obs, np.zeros(1), np.zeros(1), obs, np.zeros(1, bool), np.zeros(1, bool))
    env.close()


def test_dqn_on_atari_stores_frames_once_and_sizes_the_nature_replay_at_7_gb():
    algo_cfg = {k: v for k, v in load_conf("algo", "dqn")["algo"].items() if k != "_target_"}
    cfg = DQN.parse_config({**algo_cfg, "buffer_size": 1_000_000})
    env = VecEnv(env_config(load_conf("env", "Pong")), 1, 0, "sync", cfg.gamma)
    algo = DQN(cfg, env, network_config(load_conf("network", "cnn")), CPU, 0, 10_000)
    assert isinstance(algo.replay, FrameStackReplay)
    # 1M frames of 84 x 84 bytes, 4 spare, and 18 bytes of action, reward and flags per transition.
    assert replay_bytes(cfg, env) == (1_000_000 + 4) * 7056 + 1_000_000 * 18
    assert algo.replay.frames.nbytes == (1_000_000 + 4) * 7056
    env.close()
