"""Raw env stepping through VecEnv (random actions, no policy), sync against envpool, alternating rounds.

What an algorithm's rollout pays for its envs: VecEnv.step with each backend (rlrun.envs.vector and
rlrun.envs.envpool_backend), SAME_STEP resets and episode statistics included. Per round a fresh VecEnv,
its reset excluded, then --vec-steps steps; wall steps/s and CPU microseconds per agent step
(time.process_time: every thread of this process, EnvPool's workers included).

    .venv/bin/python scripts/bench_backends.py [--rounds 3] [--cases Pong:8,HalfCheetah:1,HalfCheetah:8]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
from bench_common import load

from rlrun.envs import VecEnv, env_config

VEC_STEPS = {"Pong": 400, "HalfCheetah": 3000}  # vector steps per round: a few seconds on 2 cores


def one_round(name: str, num_envs: int, backend: str, vec_steps: int, seed: int = 0) -> tuple[float, float]:
    env = VecEnv(env_config(load("env", name, {})), num_envs, seed, backend)
    assert env.backend == backend, f"{backend} fell back to {env.backend}"
    rng = np.random.default_rng(seed)
    if env.continuous:
        actions = rng.uniform(-1, 1, (vec_steps, num_envs, *env.action_space.shape)).astype(np.float32)
    else:
        actions = rng.integers(env.action_space.n, size=(vec_steps, num_envs))
    env.reset()
    wall, cpu = time.perf_counter(), time.process_time()
    for a in actions:
        env.step(a)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    env.close()
    steps = vec_steps * num_envs
    return steps / wall, 1e6 * cpu / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cases", default="Pong:8,HalfCheetah:1,HalfCheetah:8", help="env:num_envs,...")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for case in args.cases.split(","):
        name, num_envs = case.split(":")
        results = {"sync": [], "envpool": []}
        for _ in range(args.rounds):
            for backend in results:
                results[backend].append(one_round(name, int(num_envs), backend, VEC_STEPS.get(name, 1000)))
        line = []
        for backend, rounds in results.items():
            rates = ", ".join(f"{r:,.0f}" for r, _ in rounds)
            line.append(f"{backend} {statistics.median(r for r, _ in rounds):7,.0f} steps/s "
                        f"{statistics.median(c for _, c in rounds):5,.0f} us CPU/step ({rates})")
        ratio = statistics.median(r for r, _ in results["envpool"]) / statistics.median(r for r, _ in results["sync"])
        print(f"{name} x{num_envs}: " + "; ".join(line) + f"; envpool/sync {ratio:.2f}x", flush=True)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
