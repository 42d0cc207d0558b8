"""Last training returns (and final evaluation returns) of the small envs of each space (tests/space_envs) over several seeds, with
`rlrun algo=<algo> env=space_envs:<id>` as a user runs it: the measurement behind the settings and
thresholds of tests/test_spaces_learning.py (PPO) and tests/test_spaces_offpolicy_learning.py (SAC and
the DQN family on Dict observations).

    nice -n 10 python scripts/measure_spaces_learning.py [--seeds 0 1 2 3 4] [--only DictReach-v0 sac ...] [--jobs 1]

`--only` keeps the cases whose env id or algorithm is named. Runs `--jobs` at a time (default 1: the
machine is shared); prints one line per (algorithm, env, seed) and a summary per case.
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
from test_spaces_learning import CASES as PPO_CASES  # noqa: E402 -- the settings the tests use
from test_spaces_learning import last_training_return  # noqa: E402
from test_spaces_offpolicy_learning import CASES as OFF_POLICY_CASES  # noqa: E402

CASES = PPO_CASES + OFF_POLICY_CASES


def start(algo: str, env_id: str, overrides: list[str], seed: int, out: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
           "WANDB_MODE": "disabled"}
    args = [sys.executable, "-m", "rlrun.cli", f"algo={algo}", f"env=space_envs:{env_id}", *overrides, f"seed={seed}",
            f"hydra.run.dir={out}"]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def name(case) -> str:
    return f"{case.algo} {case.env_id}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    jobs = [(case, seed) for case in CASES for seed in args.seeds
            if not args.only or case.env_id in args.only or case.algo in args.only]
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        running: list = []
        while jobs or running:
            while jobs and len(running) < args.jobs:
                case, seed = jobs.pop(0)
                out = Path(tmp) / f"{case.algo}_{case.env_id}_{seed}"
                running.append((case, seed, out, time.monotonic(),
                                start(case.algo, case.env_id, case.overrides, seed, out)))
            for item in list(running):
                case, seed, out, began, proc = item
                if proc.poll() is None:
                    continue
                running.remove(item)
                if proc.returncode:
                    print(f"{name(case)} seed {seed}: failed: {proc.stderr.read()[-500:]}", flush=True)
                    continue
                training = last_training_return(out)
                evaluation = json.loads((out / "summary.json").read_text())["final_eval_mean_return"]
                results.setdefault(name(case), []).append(training if case.metric == "training" else evaluation)
                print(f"{name(case)} seed {seed}: last training return {training:.2f}, final evaluation "
                      f"{evaluation:.2f} (the test checks the {case.metric} return > {case.threshold}; random policy "
                      f"{case.random}), in {time.monotonic() - began:.0f} s", flush=True)
            time.sleep(0.5)
    for case in CASES:
        if name(case) in results:
            values = results[name(case)]
            print(f"{name(case)}: {case.metric} return min {min(values):.2f} mean {sum(values) / len(values):.2f} "
                  f"over {len(values)} seeds; threshold {case.threshold}, random policy {case.random}")
    print(f"load average: {os.getloadavg()}")


if __name__ == "__main__":
    main()
