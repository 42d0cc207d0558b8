"""Last training returns (and final evaluation returns) of the small envs of each space (tests/space_envs) over several seeds, with
`rlrun algo=ppo env=space_envs:<id>` as a user runs it: the measurement behind the settings and
thresholds of tests/test_spaces_learning.py.

    nice -n 10 python scripts/measure_spaces_learning.py [--seeds 0 1 2 3 4] [--only DictReach-v0 ...]

Runs two at a time (the machine has 2 cores); prints one line per (env, seed) and a summary per env.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))
from test_spaces_learning import CASES, last_training_return  # noqa: E402 -- the settings the tests use


def start(env_id: str, overrides: list[str], seed: int, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "WANDB_MODE": "disabled"}
    args = [sys.executable, "-m", "rlrun.cli", "algo=ppo", f"env=space_envs:{env_id}", *overrides, f"seed={seed}",
            f"hydra.run.dir={out}"]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--only", nargs="*", default=None)
    args = parser.parse_args()
    jobs = [(case, seed) for case in CASES for seed in args.seeds if not args.only or case.env_id in args.only]
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        running: list = []
        while jobs or running:
            while jobs and len(running) < 2:
                case, seed = jobs.pop(0)
                out = Path(tmp) / f"{case.env_id}_{seed}"
                running.append((case, seed, out, time.monotonic(), start(case.env_id, case.overrides, seed, out)))
            for item in list(running):
                case, seed, out, began, proc = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                if proc.returncode:
                    print(f"{case.env_id} seed {seed}: failed: {proc.stderr.read()[-500:]}", flush=True)
                    continue
                training = last_training_return(out)
                evaluation = json.loads((out / "summary.json").read_text())["final_eval_mean_return"]
                results.setdefault(case.env_id, []).append(training if case.metric == "training" else evaluation)
                print(f"{case.env_id} seed {seed}: last training return {training:.2f}, final evaluation "
                      f"{evaluation:.2f} (the test checks the {case.metric} return > {case.threshold}; random policy "
                      f"{case.random}), in {time.monotonic() - began:.0f} s", flush=True)
            time.sleep(0.5)
    for case in CASES:
        if case.env_id in results:
            values = results[case.env_id]
            print(f"{case.env_id}: {case.metric} return min {min(values):.2f} mean {sum(values) / len(values):.2f} "
                  f"over {len(values)} seeds; threshold {case.threshold}, random policy {case.random}")
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
