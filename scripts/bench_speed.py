"""Training speed of rlrun against its peers: Stable-Baselines3 (PPO here; more in bench_onpolicy,
bench_offpolicy, bench_dqn) and CleanRL for PPO on Atari (bench_atari).

Both libraries train the same agent (one env, 2048-step rollouts, 10 epochs of 64-sample minibatches,
separate 64x64 tanh actor and critic, observation and reward normalisation, the hyperparameters in
HPARAMS below) for --steps environment steps per round. Rounds alternate (rlrun, SB3, rlrun, ...) so
that a slow spell of the machine hits both sides alike; each round builds a fresh env and agent with
the same seed. A round's time is its training loop only (the env reset included, env and agent
construction excluded, on both sides); steps/s = environment steps / that time.

Printed: steps/s of every round, the median of each library, their ratio (rlrun / SB3), and the mean
training episodic return of each library's final round, to show that both learn comparably; at the
end, one markdown table of every benchmark run (what docs/speed.md's table is made from).

    .venv/bin/python scripts/bench_speed.py [--algos ppo,...|all] [--steps N] [--rounds 3] [--threads 1]
                                            [--seed 0] [--json PATH]

`--algos all` runs the issue's list in one run: PPO (steady and whole process), A2C, TRPO, SAC, TD3,
DQN and PPO-Atari (which needs `make peers` first). Each benchmark has its own budget per round
(STEPS below: SAC and TD3 train at ~100-150 steps/s, so they get 3,000 steps, 2,000 of them learning;
PPO-Atari 8,192, eight updates; A2C 81,920); `--steps` sets one for all.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from bench_atari import BENCHMARKS as ATARI
from bench_common import PPO_HPARAMS as HPARAMS
from bench_common import load, sb3_onpolicy_env, sb3_onpolicy_policy_kwargs, timed_onpolicy_round, timed_sb3_round
from bench_dqn import BENCHMARKS as DQN
from bench_offpolicy import BENCHMARKS as OFFPOLICY
from bench_onpolicy import BENCHMARKS as ONPOLICY
from bench_startup import BENCHMARKS as PROCESS
from stable_baselines3 import PPO as SB3PPO

from rlrun.algos.ppo import PPO


def rlrun_round(budget: int, seed: int) -> tuple[int, float, list[float]]:
    """Train rlrun PPO for `budget` steps; returns (steps, seconds, training episodic returns)."""
    return timed_onpolicy_round(PPO, PPO.parse_config(load("algo", "ppo", HPARAMS)), budget, seed)


def sb3_round(budget: int, seed: int) -> tuple[int, float, list[float]]:
    """Train SB3 PPO for `budget` steps; returns (steps, seconds, training episodic returns)."""
    h = HPARAMS
    venv = sb3_onpolicy_env(h["gamma"], h["num_envs"])
    lr = h["learning_rate"]
    model = SB3PPO(
        "MlpPolicy", venv, seed=seed, device="cpu", verbose=0,
        learning_rate=lambda progress_remaining: lr * progress_remaining,  # linear to 0, like anneal_lr
        n_steps=h["num_steps"], batch_size=h["num_steps"] // h["num_minibatches"], n_epochs=h["update_epochs"],
        gamma=h["gamma"], gae_lambda=h["gae_lambda"], clip_range=h["clip_coef"], clip_range_vf=None,
        normalize_advantage=h["norm_adv"], ent_coef=h["ent_coef"], vf_coef=h["vf_coef"] / 2,
        max_grad_norm=h["max_grad_norm"], target_kl=h["target_kl"],
        policy_kwargs=sb3_onpolicy_policy_kwargs(eps=h["adam_eps"]))
    return timed_sb3_round(model, venv, budget)


Round = Callable[[int, int], tuple[int, float, list[float]]]  # (budget, seed) -> (steps, seconds, returns)

# name -> (rlrun round, baseline round or None, baseline's name). Other families register theirs in
# bench_onpolicy.py and bench_offpolicy.py beside this file.
BENCHMARKS: dict[str, tuple[Round, Round | None, str]] = {
    "ppo": (rlrun_round, sb3_round, "SB3"),
    **ONPOLICY,
    **OFFPOLICY,
    **DQN,
    # PPO on Pong from pixels against CleanRL's ppo_atari_envpool.py (its peers venv: `make peers`).
    **ATARI,
    # PPO's whole process (start-up, training, final 10-episode evaluation, save) against SB3's same job:
    # steps over wall seconds from process start to exit (scripts/bench_startup.py has the phases).
    **PROCESS,
}


# Steps per round where 20,480 would not do: the off-policy learners are ~100x slower per step, and
# 20,480 A2C steps take 2 s, too short a round to keep a slow spell of the machine out of the median.
STEPS = {"sac": 3000, "td3": 3000, "ppo_atari": 8192, "ppo_atari_sync": 8192, "a2c": 81920}
DEFAULT_STEPS = 20480
# --algos all: the benchmarks docs/speed.md's table reports, in its order.
ALL = ["ppo", "ppo_process", "a2c", "trpo", "sac", "td3", "dqn", "ppo_atari"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--algos", default="ppo", help=f"comma-separated, from: {', '.join(BENCHMARKS)}; or all")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"environment steps per round (default {DEFAULT_STEPS:,}; {STEPS} where listed)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per library")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (both sides)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    algos = [a for a in ALL if a in BENCHMARKS] if args.algos == "all" else args.algos.split(",")
    unknown = [a for a in algos if a not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown --algos {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)} or all")

    report = {}
    for algo in algos:
        steps_per_round = args.steps or STEPS.get(algo, DEFAULT_STEPS)
        rlrun_fn, baseline_fn, baseline_name = BENCHMARKS[algo]
        runners = {"rlrun": rlrun_fn, **({baseline_name: baseline_fn} if baseline_fn else {})}
        results: dict[str, list[dict]] = {name: [] for name in runners}
        for r in range(args.rounds):
            for name, run_round in runners.items():
                steps, seconds, returns = run_round(steps_per_round, args.seed)
                results[name].append({"steps": steps, "seconds": seconds, "steps_per_second": steps / seconds,
                                      "episodic_returns": returns})
                print(f"{algo}  round {r + 1}/{args.rounds}  {name:5s}  {steps:,} steps in {seconds:6.1f} s  "
                      f"{steps / seconds:7,.0f} steps/s", flush=True)
        medians = {name: statistics.median(r["steps_per_second"] for r in rounds) for name, rounds in results.items()}
        final_returns = {name: float(np.mean(rounds[-1]["episodic_returns"])) if rounds[-1]["episodic_returns"]
                         else float("nan") for name, rounds in results.items()}
        print(f"\n{algo}: {steps_per_round:,} steps/round, {args.rounds} rounds each, {args.threads} torch thread(s), "
              f"seed {args.seed}")
        for name in runners:
            per_round = ", ".join(f"{r['steps_per_second']:,.0f}" for r in results[name])
            print(f"  {name + ' ' + algo:12s} median {medians[name]:7,.0f} steps/s   (rounds: {per_round})   "
                  f"final-round mean training return {final_returns[name]:8.1f}")
        ratio = medians["rlrun"] / medians[baseline_name] if baseline_fn else None
        if ratio is not None:
            print(f"  ratio        {ratio:.2f}x  (rlrun / {baseline_name})\n")
        report[algo] = {"steps_per_round": steps_per_round, "results": results, "median_steps_per_second": medians,
                        "final_round_mean_return": final_returns, "ratio": ratio, "baseline": baseline_name}

    print(f"\n| benchmark | rlrun steps/s | baseline steps/s | ratio |   ({args.rounds} rounds, medians, "
          f"{args.threads} torch thread(s))\n|---|---|---|---|")
    for algo, entry in report.items():
        medians, baseline = entry["median_steps_per_second"], entry["baseline"]
        other = f"{baseline}: {medians[baseline]:,.0f}" if baseline in medians else "-"
        ratio = f"{entry['ratio']:.2f}x" if entry["ratio"] is not None else "-"
        print(f"| {algo} ({entry['steps_per_round']:,} steps/round) | {medians['rlrun']:,.0f} | {other} | {ratio} |")

    if args.json:
        args.json.write_text(json.dumps({"steps_per_round": args.steps, "rounds": args.rounds,
                                         "threads": args.threads, "seed": args.seed, "benchmarks": report},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
