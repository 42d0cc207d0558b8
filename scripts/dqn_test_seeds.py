"""The settings of tests/test_dqn_learning.py on several seeds: when each run first evaluates at >= 475.

The test trains DQN, Double DQN and Dueling DQN on CartPole-v1 with their tuned files
(conf/tuned/*dqn_CartPole.yaml), evaluates every 2,500 steps (10 greedy episodes on an env seeded
seed + 10000, as the runner does) and passes once an evaluation reaches 475 within the tuned budget.
This script runs that same loop on the seeds given and prints, per seed, the step of the first
evaluation at >= 475 (the test's pass), so the test's margin (budget over the slowest seed) is
measured rather than hoped for. One process per run, `--jobs` at a time.

    python scripts/dqn_test_seeds.py --seeds 0 1 2 3 4 --jobs 2
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

CONF = Path(__file__).resolve().parents[1] / "conf"
EVAL_EVERY = 2500  # tests/test_dqn_learning.py's
BAR = 475.0


def first_solved(algo_name: str, seed: int, cap: int | None) -> tuple[int | None, list[tuple[int, float]], float]:
    """The test's loop: (step of the first evaluation >= BAR or None, the evaluations, seconds)."""
    import torch
    from hydra import compose, initialize_config_dir

    from rlrun.algos.dqn import DQN
    from rlrun.envs import VecEnv, env_config
    from rlrun.hardware import Hardware
    from rlrun.nets import network_config
    from rlrun.run import evaluate

    torch.set_num_threads(1)
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"algo={algo_name}", "env=CartPole"])
    budget = cap or int(cfg.total_steps)
    algo_cfg = DQN.parse_config({k: v for k, v in cfg.algo.items() if k != "_target_"})
    env_cfg = env_config(cfg.env)
    env = VecEnv(env_cfg, algo_cfg.num_envs, seed, "sync", algo_cfg.gamma)
    eval_env = VecEnv(env_cfg, 1, seed + 10_000, "sync", algo_cfg.gamma, training=False)
    algo = DQN(algo_cfg, env, network_config(cfg.network), Hardware(torch.device("cpu"), 1, "sync", 1), seed,
               int(cfg.total_steps))
    evaluations: list[tuple[int, float]] = []
    start, next_eval, solved = time.perf_counter(), EVAL_EVERY, None
    for metrics in algo.learn():
        if metrics["global_step"] >= next_eval:
            returns = evaluate(algo, eval_env, env, 10, seed + 10_000).returns
            evaluations.append((metrics["global_step"], float(np.mean(returns))))
            next_eval += EVAL_EVERY
            if evaluations[-1][1] >= BAR:
                solved = metrics["global_step"]
                break
        if metrics["global_step"] >= budget:
            break
    env.close()
    eval_env.close()
    return solved, evaluations, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--algos", nargs="+", default=["dqn", "double_dqn", "dueling_dqn"])
    parser.add_argument("--cap", type=int, default=None, help="stop a run here (default: the tuned total_steps)")
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    with ProcessPoolExecutor(args.jobs) as pool:
        runs = {(a, s): pool.submit(first_solved, a, s, args.cap) for a in args.algos for s in args.seeds}
        for (algo, seed), future in runs.items():
            solved, evaluations, seconds = future.result()
            curve = " ".join(f"{r:.0f}" for _, r in evaluations)
            print(f"{algo:>12} seed {seed:>3}: first >= {BAR:.0f} at {solved if solved else 'never':>6} "
                  f"({seconds:.0f} s); evaluations every {EVAL_EVERY}: {curve}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
