"""The learning tests' settings on many seeds: one command, one printed table (not a test).

A learning test must pass for any seed its settings are meant to handle, on any machine: another CPU or
BLAS rounds differently, which moves a run as much as a change of seed does. This script runs each
learning test's exact command (the CASES below mirror tests/test_learning.py,
tests/test_onpolicy_learning.py and tests/test_offpolicy_continuous_learning.py) on several seeds through
the real CLI and prints, per case, the final and the best evaluation of every seed with the minimum, the
median and how many seeds clear the test's bar; the margin a test keeps is read off this table.

    python scripts/seed_table.py                                  # every case, seeds 0-4, 2 jobs
    python scripts/seed_table.py --cases a2c-Pendulum --seeds 100-109
    python scripts/seed_table.py --cases ppo-CartPole --extra hardware.torch_threads=2

`--extra` appends overrides to every run (another thread count is a fair stand-in for another machine's
rounding). Runs are independent `python -m rlrun.cli` processes, `--jobs` at a time; to measure another
checkout put its src/ first: `PYTHONPATH=/path/to/checkout/src python scripts/seed_table.py`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Case:
    """One learning test's command and the bar its final evaluation must clear."""
    name: str
    overrides: tuple[str, ...]
    bar: float


# The commands of the learning tests (each test also passes seed=..., logger=csv, hardware=cpu).
CASES = (
    Case("ppo-CartPole", ("algo=ppo", "env=CartPole", "total_steps=100000"), 475.0),
    Case("ppo-Pendulum", ("algo=ppo", "env=Pendulum", "total_steps=100000"), -300.0),
    Case("reinforce-CartPole", ("algo=reinforce", "env=CartPole"), 300.0),
    Case("a2c-CartPole", ("algo=a2c", "env=CartPole"), 475.0),
    Case("a3c-CartPole", ("algo=a3c", "env=CartPole", "hardware.workers=1"), 475.0),  # its test: the best evaluation
    Case("trpo-CartPole", ("algo=trpo", "env=CartPole"), 475.0),
    Case("a2c-Pendulum", ("algo=a2c", "env=Pendulum"), -400.0),
    Case("trpo-Pendulum", ("algo=trpo", "env=Pendulum"), -400.0),
    Case("ddpg-Pendulum", ("algo=ddpg", "env=Pendulum"), -300.0),
    Case("td3-Pendulum", ("algo=td3", "env=Pendulum"), -300.0),
    Case("sac-Pendulum", ("algo=sac", "env=Pendulum"), -300.0),
)


@dataclass
class Outcome:
    final: float
    best: float
    seconds: float


def run_one(case: Case, seed: int, extra: list[str], out_dir: Path) -> Outcome:
    """One CLI run of `case` with `seed`: its final and best evaluation mean returns."""
    run_dir = out_dir / f"{case.name}_seed{seed}"
    args = [sys.executable, "-m", "rlrun.cli", *case.overrides, f"seed={seed}", "logger=csv", "hardware=cpu",
            *extra, f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=out_dir, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return Outcome(float(summary["final_eval_mean_return"]), float(summary["best_eval_mean_return"]), seconds)


def parse_seeds(text: str) -> list[int]:
    """'0-4' or '0,3,7' or '100-104,200'."""
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds.extend(range(int(low), int(high) + 1) if high else [int(low)])
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="all", help="comma-separated case names, or 'all': "
                        + ", ".join(c.name for c in CASES))
    parser.add_argument("--seeds", default="0-4", help="e.g. 0-4, or 100-109, or 0,3,7")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one per core)")
    parser.add_argument("--extra", nargs="*", default=[], help="overrides added to every run")
    parser.add_argument("--out", type=Path, default=None,
                        help="keep the run directories here (default: a temporary folder, removed at the end)")
    args = parser.parse_args()
    names = [c.name for c in CASES] if args.cases == "all" else args.cases.split(",")
    unknown = sorted(set(names) - {c.name for c in CASES})
    if unknown:
        parser.error(f"unknown case(s) {unknown}; choose from {[c.name for c in CASES]}")
    cases = [c for c in CASES if c.name in names]
    seeds = parse_seeds(args.seeds)

    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
    with (nullcontext(str(args.out.resolve())) if args.out else tempfile.TemporaryDirectory(prefix="seed_table_")) as out, \
            ThreadPoolExecutor(args.jobs) as pool:
        futures = {(c.name, s): pool.submit(run_one, c, s, args.extra, Path(out)) for c in cases for s in seeds}
        print(f"seeds {seeds}; extra overrides {args.extra or 'none'}", flush=True)
        print("| case | bar | final evaluation per seed | min | median | seeds >= bar | best eval min | s/run |")
        print("|---|---|---|---|---|---|---|---|")
        for case in cases:
            outcomes = [futures[case.name, s].result() for s in seeds]
            finals = [o.final for o in outcomes]
            per_seed = " ".join(f"{s}:{f:.0f}" for s, f in zip(seeds, finals))
            cleared = sum(f >= case.bar for f in finals)
            print(f"| {case.name} | {case.bar:g} | {per_seed} | {min(finals):.1f} | {statistics.median(finals):.1f} "
                  f"| {cleared}/{len(seeds)} | {min(o.best for o in outcomes):.1f} "
                  f"| {statistics.median(o.seconds for o in outcomes):.0f} |", flush=True)


if __name__ == "__main__":
    main()
