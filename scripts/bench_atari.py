"""PPO on Atari Pong from pixels: rlrun (sync and envpool vector backends) against CleanRL's
ppo_atari_envpool.py, on the same machine, in alternating rounds.

The peer runs from CleanRL's own release in its own venv; build it once with

    make peers          # = bash scripts/setup_peers.sh: .venv-peers (gym 0.23.1, envpool 0.8.4, torch 2.13.0)

then

    .venv/bin/python scripts/bench_atari.py [--steps 8192] [--rounds 3] [--threads 1] [--seed 1]
                                            [--sides rlrun-sync,rlrun-envpool,cleanrl] [--json PATH]

Both sides train the same agent with the published settings (the PPO paper's Atari setup as OpenAI
baselines and CleanRL run it, conf/tuned/ppo_Pong.yaml): 8 envs x 128 steps, 4 epochs of 4 minibatches,
Adam 2.5e-4 annealed, clip 0.1 (value loss clipped too), entropy 0.01, rewards clipped to their sign,
the Nature CNN shared by both heads; the env is the DQN preprocessing under the "nature" protocol
(no sticky actions, life loss terminal for the learner, 27,000-step cap), EnvPool's in CleanRL.
CleanRL runs with `--cuda False --track False --total-timesteps N`; both sides get the same torch
intra-op thread count (--threads: torch.set_num_threads here, OMP_NUM_THREADS for CleanRL's process,
which reads it when torch starts).

What is timed matches CleanRL's SPS: it prints global_step / (time since just before envs.reset()),
after each update; rlrun's round is timed from just before its generator's first step (the env reset)
to the iteration that reaches the budget (bench_common.timed_learning). CPU time per step is counted
from the end of the first update to the end of the last on both sides (this process's
time.process_time; CleanRL's /proc/<pid>/stat, all threads), since wall time on a loaded machine
is noisy. Returns are whole games' scores as each side logs them during training.

For bench_speed.py: BENCHMARKS["ppo_atari"] (rlrun with the envpool backend vs CleanRL) and
["ppo_atari_sync"], shaped like bench_onpolicy.py's.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import cpu, load

from rlrun.algos.ppo import PPO
from rlrun.envs import VecEnv, env_config
from rlrun.nets import network_config

ROOT = Path(__file__).resolve().parents[1]
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
CLEANRL_SCRIPT = ROOT / ".venv-peers" / "cleanrl" / "cleanrl" / "ppo_atari_envpool.py"
# The published settings as rlrun's users get them (conf/tuned/ppo_Pong.yaml over conf/algo/ppo.yaml), which
# are CleanRL's defaults too: checked against its argparse at the start.
HPARAMS = load("algo", "ppo", load("tuned", "ppo_Pong", {})["algo"])
CLEANRL_ARGS = {"num_envs": "--num-envs", "num_steps": "--num-steps", "num_minibatches": "--num-minibatches",
                "update_epochs": "--update-epochs", "learning_rate": "--learning-rate", "anneal_lr": "--anneal-lr",
                "gamma": "--gamma", "gae_lambda": "--gae-lambda", "norm_adv": "--norm-adv", "clip_coef": "--clip-coef",
                "clip_vloss": "--clip-vloss", "ent_coef": "--ent-coef", "vf_coef": "--vf-coef",
                "max_grad_norm": "--max-grad-norm", "target_kl": "--target-kl"}


def rlrun_ppo(budget: int, seed: int, backend: str) -> dict:
    """rlrun PPO on Pong for `budget` steps; wall time as bench_common.timed_learning, CPU time from the end
    of the first iteration to the end of the last."""
    algo_cfg = PPO.parse_config(HPARAMS)
    env = VecEnv(env_config(load("env", "Pong", {"protocol": "nature"})), algo_cfg.num_envs, seed, backend,
                 algo_cfg.gamma)
    assert env.backend == backend, f"the {backend} backend fell back to {env.backend}"
    algo = PPO(algo_cfg, env, network_config(load("network", "cnn", {})), cpu(), seed, total_steps=budget)
    returns: list[float] = []
    marks = []  # (global_step, process_time) after each iteration
    start = time.perf_counter()
    learning = algo.learn()
    for metrics in learning:
        marks.append((metrics["global_step"], time.process_time()))
        returns += metrics["episodic_returns"]
        if metrics["global_step"] >= budget:
            break
    learning.close()
    seconds = time.perf_counter() - start
    env.close()
    return {"steps": algo.global_step, "seconds": seconds, "returns": returns, **cpu_per_step(marks)}


def cpu_per_step(marks: list[tuple[int, float]]) -> dict:
    (step0, cpu0), (step1, cpu1) = marks[0], marks[-1]
    return {"cpu_us_per_step": 1e6 * (cpu1 - cpu0) / (step1 - step0) if step1 > step0 else float("nan")}


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of a process (/proc/<pid>/stat fields 14 and 15, in clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def check_cleanrl_defaults() -> None:
    """The settings above are the published ones only if they are CleanRL's defaults: read them from its
    argparse (the script's source, not a copy)."""
    source = CLEANRL_SCRIPT.read_text()
    for key, flag in CLEANRL_ARGS.items():
        match = re.search(rf'"{flag}", type=.*?, default=([^,]+),', source)
        if match is None or ast.literal_eval(match.group(1)) != HPARAMS[key]:
            sys.exit(f"CleanRL's {flag} default is {match and match.group(1)}, conf/tuned/ppo_Pong.yaml's "
                     f"{HPARAMS[key]}: the two sides would not train the same agent")


def cleanrl_ppo(budget: int, seed: int) -> dict:
    """CleanRL's ppo_atari_envpool.py for `budget` steps in its own process; its SPS is its time."""
    if not CLEANRL_SCRIPT.exists():
        sys.exit(f"{CLEANRL_SCRIPT} is missing: run `make peers` (scripts/setup_peers.sh) first")
    check_cleanrl_defaults()  # here too when bench_speed.py runs the round
    threads = str(torch.get_num_threads())
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory() as cwd:  # its TensorBoard runs/ directory goes here
        proc = subprocess.Popen([str(PEERS_PYTHON), str(CLEANRL_SCRIPT), "--cuda", "False", "--track", "False",
                                 "--total-timesteps", str(budget), "--seed", str(seed)],
                                cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        returns, sps, marks, global_step = [], None, [], 0
        for line in proc.stdout:
            if line.startswith("global_step="):
                global_step = int(line.split(",")[0].split("=")[1])
                returns.append(float(line.rsplit("=", 1)[1]))
            elif line.startswith("SPS:"):
                sps = int(line.split()[1])
                # The update's steps: 1,024 per update (printed after the update, before the next rollout).
                marks.append((len(marks) + 1, process_cpu_seconds(proc.pid)))
        proc.wait()
    if proc.returncode != 0 or sps is None:
        sys.exit(f"CleanRL's ppo_atari_envpool.py failed (exit {proc.returncode})")
    batch = HPARAMS["num_envs"] * HPARAMS["num_steps"]
    steps = len(marks) * batch
    return {"steps": steps, "seconds": steps / sps, "returns": returns,
            **cpu_per_step([(n * batch, t) for n, t in marks])}


SIDES = {"rlrun-sync": lambda budget, seed: rlrun_ppo(budget, seed, "sync"),
         "rlrun-envpool": lambda budget, seed: rlrun_ppo(budget, seed, "envpool"),
         "cleanrl": cleanrl_ppo}


def as_round(side):
    """A round in bench_speed.py's shape: (budget, seed) -> (steps, seconds, training episodic returns)."""
    def round_(budget: int, seed: int) -> tuple[int, float, list[float]]:
        result = side(budget, seed)
        return result["steps"], result["seconds"], result["returns"]

    return round_


BENCHMARKS: dict = {
    "ppo_atari": (as_round(SIDES["rlrun-envpool"]), as_round(cleanrl_ppo), "CleanRL"),
    "ppo_atari_sync": (as_round(SIDES["rlrun-sync"]), as_round(cleanrl_ppo), "CleanRL"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=8192, help="agent steps per round (whole 1,024-step updates)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads, both sides")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--sides", default=",".join(SIDES), help=f"comma-separated, from {', '.join(SIDES)}")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sides = args.sides.split(",")
    load_before = os.getloadavg()
    results: dict[str, list[dict]] = {side: [] for side in sides}
    for r in range(args.rounds):
        for side in sides:
            result = SIDES[side](args.steps, args.seed)
            result["steps_per_second"] = result["steps"] / result["seconds"]
            results[side].append(result)
            print(f"round {r + 1}/{args.rounds}  {side:13s}  {result['steps']:,} steps in "
                  f"{result['seconds']:6.1f} s  {result['steps_per_second']:6,.0f} steps/s  "
                  f"{result['cpu_us_per_step']:7,.0f} us CPU/step  "
                  f"returns {np.round(result['returns'], 1).tolist()}", flush=True)
    print(f"\nPPO Pong, {args.steps:,} steps/round, {args.rounds} rounds, {args.threads} torch thread(s), "
          f"seed {args.seed}; load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
    medians = {}
    for side, rounds in results.items():
        medians[side] = {key: statistics.median(r[key] for r in rounds)
                         for key in ("steps_per_second", "cpu_us_per_step")}
        all_returns = [x for r in rounds for x in r["returns"]]
        print(f"  {side:13s} median {medians[side]['steps_per_second']:6,.0f} steps/s, "
              f"{medians[side]['cpu_us_per_step']:6,.0f} us CPU/step; "
              f"mean training return {np.mean(all_returns) if all_returns else float('nan'):6.1f} "
              f"over {len(all_returns)} games")
    if "cleanrl" in medians:
        peer = medians["cleanrl"]
        for side in (s for s in medians if s != "cleanrl"):
            print(f"  {side} / cleanrl: {medians[side]['steps_per_second'] / peer['steps_per_second']:.2f}x steps/s, "
                  f"{peer['cpu_us_per_step'] / medians[side]['cpu_us_per_step']:.2f}x less CPU per step")
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "rounds": args.rounds, "threads": args.threads,
                                         "seed": args.seed, "load_average": [load_before, os.getloadavg()],
                                         "results": results, "medians": medians}, indent=2) + "\n")


if __name__ == "__main__":
    main()
