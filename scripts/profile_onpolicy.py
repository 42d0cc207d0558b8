"""Where an on-policy iteration's time goes: rollout per environment step, update per minibatch.

PPO and A2C with bench_speed.py's settings (HalfCheetah-v5, 64x64 tanh actor and critic, observation
and reward normalisation, 1 torch thread). Each iteration's rollout and update are timed apart, as
wall-clock and as this process's CPU time (which another process on the machine inflates less);
medians over the iterations are printed, with the raw environment step for scale. With --cprofile,
the cProfile table of the same iterations instead.

    .venv/bin/python scripts/profile_onpolicy.py [--algo ppo|a2c] [--iterations 5] [--cprofile]
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
from bench_onpolicy import A2C_HPARAMS
from bench_speed import ENV_ID, HPARAMS, NETWORK, NORMALIZE

from rlrun.algos.a2c import A2C
from rlrun.algos.ppo import PPO
from rlrun.envs import VecEnv, env_config
from rlrun.nets import network_config


def build(name: str):
    cls, hparams = {"ppo": (PPO, HPARAMS), "a2c": (A2C, A2C_HPARAMS)}[name]
    cfg = cls.parse_config(load("algo", name, hparams))
    env = VecEnv(env_config(load("env", "HalfCheetah", {"id": ENV_ID, **NORMALIZE})), cfg.num_envs, 0, "sync", cfg.gamma)
    algo = cls(cfg, env, network_config(load("network", "mlp", NETWORK)), cpu(), 0, total_steps=10**6)
    algo.rollouts.start()
    return algo


def iteration(algo) -> tuple[float, float, float, float]:
    """One rollout and one update; returns their (wall, CPU) seconds."""
    wall, cpu_time = time.perf_counter(), time.process_time()
    if isinstance(algo, PPO):
        algo.collect_rollout()
    else:
        last_values = algo.rollouts.collect(algo.buffer, algo.generator)
        algo.global_step += algo.cfg.num_envs * algo.cfg.num_steps
    mid_wall, mid_cpu = time.perf_counter(), time.process_time()
    algo.update() if isinstance(algo, PPO) else algo.update(last_values)
    return mid_wall - wall, mid_cpu - cpu_time, time.perf_counter() - mid_wall, time.process_time() - mid_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="ppo", choices=["ppo", "a2c"])
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--cprofile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    algo = build(args.algo)
    iteration(algo)  # warm-up: first-call allocations
    if args.cprofile:
        profile = cProfile.Profile()
        profile.runcall(lambda: [iteration(algo) for _ in range(args.iterations)])
        pstats.Stats(profile).sort_stats("tottime").print_stats(30)
        return
    times = np.array([iteration(algo) for _ in range(args.iterations)])
    cfg = algo.cfg
    env_steps = cfg.num_envs * cfg.num_steps
    # PPO: epochs x minibatches per update; A2C: one gradient step on the whole rollout.
    minibatches = cfg.update_epochs * cfg.num_minibatches if isinstance(algo, PPO) else 1
    rollout_wall, rollout_cpu, update_wall, update_cpu = (statistics.median(column) for column in times.T)
    raw = algo.env.envs.envs[0]
    action = np.zeros(raw.action_space.shape, np.float32)
    start = time.perf_counter()
    for _ in range(2000):
        if any(raw.step(action)[2:4]):
            raw.reset()
    raw_us = (time.perf_counter() - start) / 2000 * 1e6
    print(f"{args.algo}: {args.iterations} iterations of {env_steps} env steps ({cfg.num_envs} envs), medians")
    print(f"  rollout  {rollout_wall / env_steps * 1e6:7.1f} us per env step wall, {rollout_cpu / env_steps * 1e6:7.1f} us CPU"
          f"   (raw {ENV_ID} step: {raw_us:.1f} us wall)")
    print(f"  update   {update_wall / minibatches * 1e3:7.3f} ms per minibatch wall, "
          f"{update_cpu / minibatches * 1e3:7.3f} ms CPU   ({minibatches} minibatches of "
          f"{env_steps * (cfg.update_epochs if isinstance(algo, PPO) else 1) // minibatches})")
    print(f"  whole    {env_steps / (rollout_wall + update_wall):7.0f} env steps/s wall")


if __name__ == "__main__":
    main()
