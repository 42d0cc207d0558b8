"""The sampler's speed: sampler workers (+ overlap) against today's single-process path, in alternating
rounds in one run, printing steps/s, the ratio and the load average beside each figure.

    python scripts/bench_sampler.py                         # both cases, 3 rounds each
    python scripts/bench_sampler.py --cases halfcheetah --rounds 5
    python scripts/bench_sampler.py --rounds 3 --learner-threads 2   # + both sides at 2 threads: every target

Cases (issue 17's targets on a 2-core CPU):
  halfcheetah  PPO on HalfCheetah-v5 with algo.num_envs=8 and conf/algo/ppo.yaml's other settings
               (8 x 2,048 steps per rollout, 32 minibatches, 10 epochs), hardware.workers=2
               algo.overlap=true vs the single process (target >= 1.5x)
  pong         PPO on Pong from pixels, network=cnn, conf/tuned/ppo_Pong.yaml, hardware=cpu,
               workers=2 overlap=true vs workers=1 overlap=false (target >= 1.6x; with --learner-threads N,
               also workers=2 overlap=true torch_threads=N, docs/hardware.md's advice for pixels on a CPU)
Each round runs in a process of its own, as a run of the `rlrun` command would (OpenMP's wait policy is
chosen by rlrun.openmp before torch loads, as the command chooses it), builds a fresh algorithm, lets it
reach its first report (workers started, first rollout taken), then times the iterations after it:
start-up is not what a long run pays.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = {
    "halfcheetah": {"env": "HalfCheetah", "network": "mlp", "tuned": None, "algo": {"num_envs": 8},
                    "iterations": 5, "fast": (2, True), "target": 1.5},
    # For pixels docs/hardware.md advises the learner on every core beside the workers: with --learner-threads that
    # side is held to the target too.
    "pong": {"env": "Pong", "network": "cnn", "tuned": "ppo_Pong", "algo": {},
             "iterations": 6, "fast": (2, True), "target": 1.6, "target_with_threads": True},
}


def build(case: dict, workers: int, overlap: bool, seed: int, threads: int = 1):
    import torch
    from bench_common import cpu, load

    from rlrun.algos.ppo import PPO
    from rlrun.envs import VecEnv, env_config
    from rlrun.nets import network_config

    algo_overrides = dict(case["algo"], overlap=overlap)
    env_overrides = {}
    if case["tuned"]:
        tuned = load("tuned", case["tuned"], {})  # a `# @package _global_` file: its algo and env blocks
        algo_overrides = {**tuned.get("algo", {}), **algo_overrides}
        env_overrides = tuned.get("env", {})
    cfg = PPO.parse_config(load("algo", "ppo", algo_overrides))
    env = VecEnv(env_config(load("env", case["env"], env_overrides)), cfg.num_envs, seed, "sync", cfg.gamma)
    torch.set_num_threads(threads)  # the learner's (hardware.torch_threads); each worker runs one
    return PPO(cfg, env, network_config(load("network", case["network"], {})), cpu(workers), seed, 10**7)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (/proc/<pid>/stat)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed_round(case: dict, workers: int, overlap: bool, seed: int, threads: int) -> dict:
    """Steps/s over the timed iterations, and the CPU time they cost: the learner's process and the
    workers' (on a loaded machine the wall clock says little about parallelism; CPU seconds do)."""
    algo = build(case, workers, overlap, seed, threads)
    learning = algo.learn()
    next(learning)  # start-up and the first rollout, untimed
    pids = [process.pid for process in getattr(algo.rollouts, "processes", [])]
    workers_before = sum(cpu_seconds(pid) for pid in pids)
    start, start_cpu, start_step = time.perf_counter(), time.process_time(), algo.global_step
    for _ in range(case["iterations"]):
        next(learning)
    seconds = time.perf_counter() - start
    learner_cpu = time.process_time() - start_cpu
    workers_cpu = sum(cpu_seconds(pid) for pid in pids) - workers_before
    steps = algo.global_step - start_step
    learning.close()
    algo.env.close()
    return {"steps": steps, "seconds": seconds, "steps_per_second": steps / seconds, "load": os.getloadavg()[0],
            "learner_cpu_ms_per_1k": 1e6 * learner_cpu / steps, "workers_cpu_ms_per_1k": 1e6 * workers_cpu / steps}


def round_in_own_process(name: str, case: dict, workers: int, overlap: bool, seed: int, threads: int) -> dict:
    """timed_round in a fresh interpreter (`--one-round`), its figures read back from its last line."""
    command = [sys.executable, __file__, "--one-round", name, str(workers), str(int(overlap)), str(threads),
               "--seed", str(seed), "--iterations", str(case["iterations"])]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"bench_sampler: a round failed ({' '.join(command[2:])}):\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def one_round(args) -> None:
    name, workers, overlap, threads = args.one_round[0], *map(int, args.one_round[1:])
    from rlrun import openmp

    openmp.choose_wait_policy(threads, bool(overlap))  # before torch is imported, as the rlrun command does
    case = dict(CASES[name], iterations=args.iterations or CASES[name]["iterations"])
    result = timed_round(case, workers, bool(overlap), args.seed, threads)
    print(json.dumps({**result, "openmp": openmp.note}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="halfcheetah,pong", help=f"comma-separated, from: {', '.join(CASES)}")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side, alternating")
    parser.add_argument("--iterations", type=int, default=None, help="timed iterations per round (default per case)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--learner-threads", type=int, default=None,
                        help="also time both sides with this many learner torch threads (hardware.torch_threads)")
    parser.add_argument("--json", type=Path, help="write the raw figures here")
    parser.add_argument("--one-round", nargs=4, metavar=("CASE", "WORKERS", "OVERLAP", "THREADS"),
                        help=argparse.SUPPRESS)  # one timed round, in this process (what each round runs)
    args = parser.parse_args()
    if args.one_round:
        return one_round(args)
    report = {}
    for name in args.cases.split(","):
        if name not in CASES:
            parser.error(f"unknown case {name!r}; choose from {', '.join(CASES)}")
        case = dict(CASES[name])
        if args.iterations:
            case["iterations"] = args.iterations
        workers, overlap = case["fast"]
        sides = {"single process (workers=1 overlap=false)": (1, False, 1),
                 f"workers={workers} overlap={str(overlap).lower()}": (workers, overlap, 1)}
        if args.learner_threads:
            n = args.learner_threads
            sides |= {f"single process, torch_threads={n}": (1, False, n),
                      f"workers={workers} overlap={str(overlap).lower()} torch_threads={n}": (workers, overlap, n)}
        results: dict[str, list[dict]] = {side: [] for side in sides}
        for r in range(args.rounds):
            for side, (w, o, n) in sides.items():
                result = round_in_own_process(name, case, w, o, args.seed, n)
                results[side].append(result)
                print(f"{name}  round {r + 1}/{args.rounds}  {side:56s} {result['steps']:,} steps in "
                      f"{result['seconds']:6.1f} s  {result['steps_per_second']:7,.0f} steps/s  "
                      f"(load {result['load']:.2f}; CPU ms per 1k steps: learner "
                      f"{result['learner_cpu_ms_per_1k']:,.0f}, workers {result['workers_cpu_ms_per_1k']:,.0f})"
                      + (f"; {result['openmp']}" if result["openmp"] else ""), flush=True)
        medians = {side: statistics.median(x["steps_per_second"] for x in rounds) for side, rounds in results.items()}
        base, fast = list(medians.values())[:2]
        ratio = fast / base
        loads = [x["load"] for rounds in results.values() for x in rounds]
        print(f"\n{name}: medians  single {base:,.0f} steps/s, {list(sides)[1]} {fast:,.0f} steps/s, "
              f"ratio {ratio:.2f}x (target >= {case['target']}x: {'met' if ratio >= case['target'] else 'not met'}), "
              f"1-min load {min(loads):.2f}-{max(loads):.2f}, "
              f"{os.cpu_count()} CPUs", flush=True)
        # What 2 idle cores would give: the learner's CPU time is serial; the rest can run beside it.
        cpu = {side: (statistics.median(x["learner_cpu_ms_per_1k"] for x in rounds),
                      statistics.median(x["workers_cpu_ms_per_1k"] for x in rounds)) for side, rounds in results.items()}
        single_cost = sum(cpu[list(sides)[0]])
        learner, workers_ms = cpu[list(sides)[1]]
        bound = max(learner, (learner + workers_ms) / 2)
        print(f"  CPU per 1k steps: single {single_cost:,.0f} ms; {list(sides)[1]}: learner {learner:,.0f} ms + "
              f"workers {workers_ms:,.0f} ms -> on 2 idle cores at best {single_cost / bound:.2f}x "
              "(the learner's time is serial, the rest shares the two cores)", flush=True)
        for side in list(sides)[2:]:
            target = f"; target >= {case['target']}x: {'met' if medians[side] / base >= case['target'] else 'not met'}" \
                if side.startswith("workers") and case.get("target_with_threads") else ""
            print(f"  {side}: median {medians[side]:,.0f} steps/s ({medians[side] / base:.2f}x the single process "
                  f"with 1 thread{target})", flush=True)
        print(flush=True)
        report[name] = {"results": results, "medians": medians, "ratio": ratio, "target": case["target"],
                        "idle_two_core_bound": single_cost / bound}
    print(f"uptime: {os.popen('uptime').read().strip()}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    sys.exit(0)


if __name__ == "__main__":
    main()
