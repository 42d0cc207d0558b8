"""Where an environment step of rlrun's DQN goes, in bench_dqn.py's CartPole settings.

Builds the agent as the benchmark does, trains it past learning_starts, then times each part of the
loop on its own (acting, env step, replay insertion, replay sampling, the gradient step, the latter
both with the backward pass written out and through autograd), in interleaved repeats so that a
busy spell of the machine hits every part alike, and prints the median microseconds of each and
what they add up to per environment step (a gradient step counts gradient_steps / train_frequency
times). With --cprofile, also cProfile's top functions over --steps steps of the real loop.

    .venv/bin/python scripts/profile_dqn.py [--setting dqn|dqn_freq4] [--repeats 15] [--cprofile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

import numpy as np
import torch
from bench_common import cpu, load
from bench_dqn import ENV_ID, FREQ4, HPARAMS, NETWORK

from rlrun.algos.dqn import DQN
from rlrun.envs import VecEnv, env_config
from rlrun.nets import network_config


def build(extra: dict) -> DQN:
    algo_cfg = DQN.parse_config(load("algo", "dqn", {**HPARAMS, **extra}))
    env = VecEnv(env_config(load("env", "CartPole", {"id": ENV_ID})), 1, 0, "sync", algo_cfg.gamma)
    return DQN(algo_cfg, env, network_config(load("network", "mlp", NETWORK)), cpu(), 0, total_steps=50_000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setting", choices=["dqn", "dqn_freq4"], default="dqn")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--calls", type=int, default=40, help="calls per part per repeat")
    parser.add_argument("--cprofile", action="store_true")
    parser.add_argument("--steps", type=int, default=5120, help="loop steps under cProfile")
    args = parser.parse_args()
    torch.set_num_threads(1)
    algo = build(FREQ4 if args.setting == "dqn_freq4" else {})
    cfg = algo.cfg
    learning = algo.learn()
    while algo.global_step < cfg.learning_starts + 1000:
        next(learning)
    learning.close()
    env, replay = algo.env, algo.replay
    obs = env.reset()
    batch = replay.sample(cfg.batch_size, algo.generator, algo.device)
    action = np.zeros(1, np.int64)
    no = np.zeros(1, bool)

    def train_step(manual: bool):
        def step():
            algo.manual_backward = manual
            algo.train_step(batch)
        return step

    parts = {
        "act (epsilon-greedy)": lambda: algo.explore(obs),
        "env step": lambda: env.step(action),
        "replay add": lambda: replay.add(obs, action, np.ones(1, np.float32), obs, no, no),
        "replay sample": lambda: replay.sample(cfg.batch_size, algo.generator, algo.device),
        "gradient step": train_step(True),
        "gradient step (autograd)": train_step(False),
    }
    times: dict[str, list[float]] = {name: [] for name in parts}
    for _ in range(args.repeats):
        for name, part in parts.items():
            start = time.perf_counter()
            for _ in range(args.calls):
                part()
            times[name].append((time.perf_counter() - start) / args.calls * 1e6)
    algo.manual_backward = algo.net.has_manual_backward
    median = {name: statistics.median(t) for name, t in times.items()}
    per_update = cfg.gradient_steps / cfg.train_frequency
    print(f"{args.setting}: batch {cfg.batch_size}, {cfg.gradient_steps} gradient step(s) every "
          f"{cfg.train_frequency} env steps; median of {args.repeats} repeats of {args.calls} calls, us")
    for name, value in median.items():
        print(f"  {name:26s} {value:8.1f}")
    acting = median["act (epsilon-greedy)"] + median["env step"] + median["replay add"]
    for label, step in (("written-out backward", "gradient step"), ("autograd", "gradient step (autograd)")):
        learning_share = per_update * (median["replay sample"] + median[step])
        print(f"  per env step ({label}): acting+env+store {acting:.0f} + learning {learning_share:.0f} = "
              f"{acting + learning_share:.0f} us")

    if args.cprofile:
        profile = cProfile.Profile()
        learning = algo.learn()
        start_step = algo.global_step
        profile.enable()
        while algo.global_step < start_step + args.steps:
            next(learning)
        profile.disable()
        learning.close()
        pstats.Stats(profile).sort_stats("tottime").print_stats(20)


if __name__ == "__main__":
    main()
