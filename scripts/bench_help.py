"""Wall time and peak memory of `rlrun --help`, for two source trees in alternating rounds.

Each round starts a fresh interpreter per tree (`python -m rlrun.cli --help` with that tree's src/ first on
PYTHONPATH), in alternating order, so that a load change on a shared machine hits both alike. Reports the
median and range of wall seconds and the peak resident memory of each.

    .venv/bin/python scripts/bench_help.py --before /path/to/old/checkout [--after .] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path


def one_help(tree: Path) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one `rlrun --help` with `tree`'s sources."""
    env = {**os.environ, "PYTHONPATH": str(tree / "src")}
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "rlrun.cli", "--help"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"rlrun --help failed in {tree}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, required=True, help="a checkout (its src/ is used)")
    parser.add_argument("--after", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in trees}
    for round_ in range(args.rounds):
        order = list(trees) if round_ % 2 == 0 else list(reversed(trees))
        for name in order:
            results[name].append(one_help(trees[name]))
    print(f"load average {os.getloadavg()[0]:.2f} (1 min) at the end; {args.rounds} rounds")
    for name, runs in results.items():
        seconds = [s for s, _ in runs]
        print(f"{name:6s} {trees[name]}: median {statistics.median(seconds):.2f} s "
              f"(range {min(seconds):.2f}-{max(seconds):.2f}), peak RSS {max(m for _, m in runs):.0f} MB")


if __name__ == "__main__":
    main()
