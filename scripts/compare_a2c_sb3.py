"""rlrun's A2C against Stable-Baselines3's A2C on CartPole-v1, seed by seed: final evaluation returns.

Both sides use RL Baselines3 Zoo's CartPole-v1 settings for A2C (hyperparams/a2c.yml: 8 envs, MlpPolicy,
ent_coef 0.0, everything else SB3's defaults: 5 steps, RMSprop lr 7e-4 alpha 0.99 eps 1e-5, gamma 0.99,
gae_lambda 1, vf_coef 0.5, max_grad_norm 0.5, no advantage normalisation, separate 64x64 tanh actor and
critic with orthogonal init). rlrun runs through its CLI as a user would (`rlrun algo=a2c env=CartPole`,
so conf/tuned/a2c_CartPole.yaml applies) with `logger=csv hardware=cpu`; `--rlrun` adds overrides
(e.g. `--rlrun algo.anneal_lr=false`). Each side is evaluated the way rlrun's runner evaluates: 10
episodes of the deterministic policy on one env seeded seed + 10000.

    python scripts/compare_a2c_sb3.py --seeds 0 1 2 3 4 --steps 200000 --jobs 2

To measure another checkout of rlrun, put its src/ first: `PYTHONPATH=/path/to/checkout/src python ...`
(the rlrun runs are subprocesses and inherit it). Runs are independent processes, `--jobs` at a time.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from bench_common import EVAL_EPISODES, run_rlrun_cli, runs_directory, sb3_eval_return

NUM_ENVS = 8  # RL Zoo's n_envs for A2C on CartPole-v1


def run_rlrun(seed: int, steps: int, overrides: list[str], out_dir: str) -> tuple[float, float]:
    """(final evaluation mean return, seconds) of one rlrun CLI run."""
    summary, seconds = run_rlrun_cli("a2c", "CartPole", seed, steps, overrides,
                                     Path(out_dir).resolve() / f"rlrun_seed{seed}")
    return float(summary["final_eval_mean_return"]), seconds


def run_sb3(seed: int, steps: int) -> tuple[float, float]:
    """(final evaluation mean return, seconds) of SB3's A2C with RL Zoo's CartPole-v1 settings."""
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)  # as rlrun's hardware=cpu
    start = time.perf_counter()
    model = A2C("MlpPolicy", make_vec_env("CartPole-v1", n_envs=NUM_ENVS, seed=seed), ent_coef=0.0, seed=seed,
                device="cpu")
    model.learn(steps)
    seconds = time.perf_counter() - start
    return sb3_eval_return(model, "CartPole-v1", seed), seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--steps", type=int, default=200_000, help="training steps per run, summed over envs")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one core each)")
    parser.add_argument("--rlrun", nargs="*", default=[], metavar="OVERRIDE", help="extra rlrun config overrides")
    parser.add_argument("--skip-sb3", action="store_true", help="run rlrun only (SB3's column left empty)")
    parser.add_argument("--keep", metavar="DIR", help="keep rlrun's run directories (eval.csv: the curves) in DIR")
    args = parser.parse_args()

    with runs_directory(args.keep, "compare_a2c_") as out_dir, ProcessPoolExecutor(args.jobs) as pool:
        rlrun_runs = {s: pool.submit(run_rlrun, s, args.steps, args.rlrun, out_dir) for s in args.seeds}
        sb3_runs = {} if args.skip_sb3 else {s: pool.submit(run_sb3, s, args.steps) for s in args.seeds}
        rows = [(s, rlrun_runs[s].result(), sb3_runs[s].result() if s in sb3_runs else None) for s in args.seeds]

    overrides = " ".join(args.rlrun) or "none"
    print(f"A2C, CartPole-v1, {args.steps:,} steps, RL Zoo settings; rlrun overrides: {overrides}")
    print(f"final evaluation return (mean of {EVAL_EPISODES} deterministic episodes)")
    print(f"{'seed':>6} {'rlrun':>8} {'SB3':>8} {'rlrun s':>8} {'SB3 s':>8}")
    for seed, (rl_return, rl_seconds), sb3 in rows:
        sb3_return, sb3_seconds = sb3 if sb3 else (float("nan"), float("nan"))
        print(f"{seed:>6} {rl_return:>8.1f} {sb3_return:>8.1f} {rl_seconds:>8.0f} {sb3_seconds:>8.0f}")
    rl = np.array([r[1][0] for r in rows])
    sb = np.array([r[2][0] if r[2] else np.nan for r in rows])
    print(f"{'mean':>6} {rl.mean():>8.1f} {sb.mean():>8.1f}")
    print(f"{'>=475':>6} {int((rl >= 475).sum()):>8d} {int((sb >= 475).sum()):>8d}   (seeds of {len(rows)})")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
