"""PPO learns on a small env of each kind of space, run as a user runs it: `rlrun algo=ppo
env=space_envs:<id>` (tests/space_envs, imported by gymnasium from the id; no env file), on ppo.yaml's
defaults (the paper's MuJoCo settings: 1 env x 2048 steps, 10 epochs of 32 minibatches).

What is checked for the vector tasks is the mean return of the training episodes of the last
iteration (metrics.csv), the stochastic policy's, comparable with a uniform random policy's (measured
over 400 episodes). Not the final evaluation's: in the reach tasks a deterministic policy that is
right in nearly every state still stands still in the few where its most likely move is "stay", and
an episode where it does costs the full -2.0 (MultiReach at 20k steps, seed 0: training return 0.67,
evaluation -0.30). The image task runs 2 iterations only (a CNN step is slow on a CPU), whose last
training episodes were collected after one update: there the final evaluation is checked.

The settings and thresholds come from scripts/measure_spaces_learning.py over seeds 0-4 (figures in
each case's comment); each threshold sits well below the worst measured seed and well above the
random policy.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


@dataclass
class Case:
    env_id: str
    overrides: list[str]
    threshold: float  # the return the test asks for (of `metric`)
    random: float  # a uniform random policy's mean return
    kind: str = field(default="")
    metric: str = "training"  # training: the last iteration's training episodes; evaluation: the final one
    algo: str = "ppo"


COMMON = ["logger=csv", "eval.every_steps=1000000", "eval.episodes=5", "checkpoint.every_steps=1000000"]

# Measured with scripts/measure_spaces_learning.py, seeds 0-4, on this 2-core machine under a load of ~20
# (2026-12-07): each comment gives the range over the seeds of what the test checks, and its mean.
CASES = [
    # training return 0.60-0.66 (mean 0.62); final evaluations 0.74-0.84
    Case("DictReach-v0", [*COMMON, "total_steps=20480"], threshold=0.3, random=-1.34, kind="Dict observations"),
    # training return 0.66-0.71 (mean 0.68); final evaluations -0.30-0.86 (a policy standing still, see above)
    Case("MultiReach-v0", [*COMMON, "total_steps=20480"], threshold=0.3, random=-1.17, kind="MultiDiscrete actions"),
    # training return 29.19-29.73 (mean 29.39; the stochastic policy still explores); final evaluations all 40 of 40
    Case("BitCopy-v0", [*COMMON, "total_steps=20480"], threshold=26.0, random=20.1, kind="MultiBinary actions"),
    # final evaluation 10 of 10 on every seed (after 2 updates); training returns 3.67-3.98 (after 1)
    Case("ImageTarget-v0", [*COMMON, "network=cnn", "total_steps=4096"], threshold=8.0, random=2.4,
         kind="channels-last images", metric="evaluation"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.env_id for case in CASES])
def test_ppo_learns_in_each_kind_of_space(case, rlrun, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    run_dir = tmp_path / "run"
    result = rlrun("algo=ppo", f"env=space_envs:{case.env_id}", *case.overrides, "seed=0", cwd=tmp_path,
                   run_dir=run_dir, timeout=600)
    assert result.returncode == 0, result.describe()
    if case.metric == "training":
        final = last_training_return(run_dir)
    else:
        final = json.loads((run_dir / "summary.json").read_text())["final_eval_mean_return"]
    assert final > case.threshold, f"{case.kind}: {case.metric} return {final} (random policy: {case.random})"


def last_training_return(run_dir: Path) -> float:
    """The last iteration's mean training episode return, from metrics.csv."""
    with open(run_dir / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("episodic_return")]
    return float(rows[-1]["episodic_return"])
