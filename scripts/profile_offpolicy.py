"""Where a learning-phase step of rlrun's SAC or TD3 goes, on HalfCheetah-v5 with bench_offpolicy.py's
settings (256x256, batch 256, one update per env step, 1 torch thread).

Builds the agent as the benchmark does, fills the replay with LEARNING_STARTS random steps, then times
--steps steps of the loop's parts one by one (acting, env step with replay insertion, replay sampling,
the update) and prints microseconds per step for each. Parts are timed in this thread's CPU time
(time.thread_time), which on a shared machine leaves out the time other processes hold the core (the
wall-clock rate is printed too); with --ops, also torch.profiler's top operators over the updates.

    .venv/bin/python scripts/profile_offpolicy.py --algo sac [--steps 500] [--ops] [--autograd]

TD3's updates have their backward passes written out (rlrun.nets.backprop); --autograd times them
through autograd instead, the same gradients (tests/test_backprop_written_out.py).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from bench_offpolicy import CLASSES, ENV_ID, HPARAMS, LEARNING_STARTS, NETWORK
from bench_common import CONF, cpu, load
from omegaconf import OmegaConf

from rlrun.envs import VecEnv, env_config
from rlrun.nets import network_config


def build(name: str, seed: int, overrides: dict):
    node = OmegaConf.load(CONF / "algo" / f"{name}.yaml")
    algo_cfg = CLASSES[name].parse_config(load("algo", name, {**HPARAMS[name], **overrides}))
    env_cfg = env_config(load("env", "HalfCheetah", OmegaConf.merge(node.env, {"id": ENV_ID})))
    net_cfg = network_config(load("network", "mlp", OmegaConf.merge(node.network, NETWORK)))
    env = VecEnv(env_cfg, algo_cfg.num_envs, seed, "sync", algo_cfg.gamma)
    return CLASSES[name](algo_cfg, env, net_cfg, cpu(), seed, total_steps=10**7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algo", default="sac", choices=sorted(CLASSES))
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--ops", action="store_true", help="also print torch.profiler's top operators")
    parser.add_argument("--compile", action="store_true", help="algo.compile=true")
    parser.add_argument("--autograd", action="store_true", help="TD3: backward through autograd, not written out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    algo = build(args.algo, 0, {"compile": True} if args.compile else {})
    if args.autograd:
        algo.manual_backward = False
    print(f"{args.algo}: backward {'written out' if getattr(algo, 'manual_backward', False) else 'through autograd'}")
    obs = algo.env.reset()

    def env_step_into_replay(actions: np.ndarray) -> None:
        """One env step stored as the learner's loop stores it (s' the true last observation where an
        episode ended)."""
        nonlocal obs
        next_obs, reward, terminated, truncated, final = algo.env.step(actions)
        algo.replay.add(obs, actions, reward, next_obs if final is None else np.where(
            (terminated | truncated)[:, None], final, next_obs), terminated, truncated)
        obs = next_obs
        algo.global_step += 1

    for _ in range(LEARNING_STARTS):  # the random phase, as the loop runs it
        env_step_into_replay(algo.random_actions())
    parts = {"explore": 0.0, "env step + replay add": 0.0, "replay sample": 0.0, "train_step": 0.0}

    def step(profile: bool) -> None:
        t0 = time.thread_time()
        actions = algo.explore(obs)
        t1 = time.thread_time()
        env_step_into_replay(actions)
        t2 = time.thread_time()
        batch = algo.replay.sample(algo.cfg.batch_size, algo.generator, algo.device)
        t3 = time.thread_time()
        algo.train_step(batch)
        algo.gradient_updates += 1
        t4 = time.thread_time()
        if profile:
            for key, dt in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[key] += dt

    for _ in range(50):  # warm-up (and the compile, with --compile)
        step(False)
    start, cpu_start = time.perf_counter(), time.thread_time()
    for _ in range(args.steps):
        step(True)
    wall, total = time.perf_counter() - start, time.thread_time() - cpu_start
    print(f"{args.algo}: {args.steps} learning steps, {total / args.steps * 1e6:,.0f} us/step of CPU time "
          f"({args.steps / wall:.1f} steps/s, {wall / args.steps * 1e6:,.0f} us/step wall-clock)")
    for key, seconds in parts.items():
        print(f"  {key:22s} {seconds / args.steps * 1e6:8,.0f} us  ({seconds / total:5.1%})")
    if args.ops:
        n = min(args.steps, 200)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(n):
                step(False)
        table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        print(f"\ntorch.profiler over {n} steps (divide totals by {n} for per step):\n{table}")


if __name__ == "__main__":
    main()
