"""Memory of the Nature-size Atari replay (1M transitions) as rlrun's DQN builds it, measured by filling it.

Plays --record steps of random actions in a real Atari env (rlrun's wrappers, stored as the off-policy
loop stores them, ending on an episode's end), then adds that stream over and over to a FrameStackReplay
of --capacity transitions until it has wrapped once, and prints: the bytes its arrays allocate, the last
frames kept for ended episodes, the process's resident memory (VmRSS) before and after, and the cost
of add and of a 32-transition sample. The stream repeats, but what the buffer holds per transition is
what a real run gives it: one frame, plus one frame per episode end (random play ends Breakout's
episodes, a life each, far sooner than a trained agent does). Alongside, the size ReplayBuffer (s and s'
stored whole) would need. Pages are touched by the fill, so RSS is the real footprint.

    .venv/bin/python scripts/replay_memory.py [--env Breakout] [--capacity 1000000] [--record 5000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from bench_common import load

from rlrun.data import ReplayBuffer
from rlrun.data.frames import FrameStackReplay
from rlrun.envs import VecEnv, env_config


def rss_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) * 1024


def record(env: VecEnv, steps: int, seed: int) -> list[tuple]:
    """(obs, action, reward, s', terminated, truncated) of random play, uint8, until an episode ends
    after `steps` steps, so that the stream can be repeated (the next obs is an episode's first)."""
    rng = np.random.default_rng(seed)
    obs = env.reset()
    stream = []
    while True:
        actions = rng.integers(env.action_space.n, size=env.num_envs)
        next_obs, reward, terminated, truncated, final_obs = env.step(actions)
        true_next = next_obs if final_obs is None else np.where(
            (terminated | truncated)[:, None, None, None], final_obs, next_obs)
        stream.append((obs.astype(np.uint8), actions, reward, true_next.astype(np.uint8), terminated, truncated))
        obs = next_obs
        if len(stream) >= steps and (terminated | truncated).all():
            return stream


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="Breakout")
    parser.add_argument("--capacity", type=int, default=1_000_000)
    parser.add_argument("--record", type=int, default=5000, help="real env steps recorded, then repeated")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    env = VecEnv(env_config(load("env", args.env, {})), 1, args.seed, "sync", 0.99)
    stream = record(env, args.record, args.seed)
    episodes = sum(int((t[4] | t[5]).sum()) for t in stream)
    print(f"recorded {len(stream):,} steps of {args.env} ({episodes} episode ends, one per "
          f"{len(stream) / episodes:.0f} steps)")

    rss_before = rss_bytes()
    replay = FrameStackReplay(args.capacity, env.observation_space, env.action_space, 1)
    arrays = {name: getattr(replay, name).nbytes for name in ("frames", "actions", "rewards", "terminated",
                                                               "ended", "depth")}
    start = time.perf_counter()
    adds = 0
    while adds < args.capacity + len(stream):  # past one wrap of the ring
        for transition in stream:
            replay.add(*transition)
        adds += len(stream)
    add_us = (time.perf_counter() - start) / adds * 1e6
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(1000):
        replay.sample(32, generator, torch.device("cpu"))
    sample_us = (time.perf_counter() - start) / 1000 * 1e6
    rss_after = rss_bytes()

    finals = len(replay.final_frames) * int(np.prod(replay.frame_shape))
    whole = ReplayBuffer.nbytes(args.capacity, env.observation_space, env.action_space)
    gb = 1e9
    print(f"FrameStackReplay of {replay.capacity:,} transitions, full ({adds:,} added):")
    for name, nbytes in arrays.items():
        print(f"  {name:11s} {nbytes / gb:8.3f} GB")
    print(f"  arrays      {sum(arrays.values()) / gb:8.3f} GB  (FrameStackReplay.nbytes: "
          f"{FrameStackReplay.nbytes(args.capacity, env.observation_space, env.action_space, 1) / gb:.3f} GB)")
    print(f"  last frames of {len(replay.final_frames):,} ended episodes held: {finals / gb:.3f} GB")
    print(f"  process RSS {rss_before / gb:.2f} GB before the buffer, {rss_after / gb:.2f} GB full: "
          f"+{(rss_after - rss_before) / gb:.2f} GB")
    print(f"  add {add_us:.1f} us per step, sample(32) {sample_us:.0f} us")
    print(f"ReplayBuffer (s and s' whole) of the same capacity: {whole / gb:.1f} GB")
    env.close()


if __name__ == "__main__":
    main()
