"""PPO learns on a small env of each kind of space, run as a user runs it: `rlrun algo=ppo
env=space_envs:<id>` (tests/space_envs, imported by gymnasium from the id; no env file), on ppo.yaml's
defaults (the paper's MuJoCo settings: 1 env x 2048 steps, 10 epochs of 32 minibatches).

What is checked is the mean return of the training episodes of the last iteration (metrics.csv), the
stochastic policy's, comparable with a uniform random policy's (measured over 400 episodes). Not the
final evaluation's: in the reach tasks a deterministic policy that is right in nearly every state
still stands still in the few where its most likely move is "stay", and an episode where it does
costs the full -2.0 (seed 0 of MultiReach at 30k steps: training return 0.76, evaluation -0.02).

The settings and thresholds come from scripts/measure_spaces_learning.py over seeds 0-4 (figures in
each case's comment); each threshold sits well below the worst measured seed and well above the
random policy.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


@dataclass
class Case:
    env_id: str
    overrides: list[str]
    threshold: float  # mean return of the last iteration's training episodes that the test asks for
    random: float  # a uniform random policy's mean return
    kind: str = field(default="")


COMMON = ["logger=csv", "eval.every_steps=1000000", "eval.episodes=5", "checkpoint.every_steps=1000000"]

CASES = [
    Case("DictReach-v0", [*COMMON, "total_steps=20480"], threshold=0.3, random=-1.34, kind="Dict observations"),
    Case("MultiReach-v0", [*COMMON, "total_steps=20480"], threshold=0.3, random=-1.17, kind="MultiDiscrete actions"),
    Case("BitCopy-v0", [*COMMON, "total_steps=20480"], threshold=34.0, random=20.1, kind="MultiBinary actions"),
    Case("ImageTarget-v0", [*COMMON, "network=cnn", "total_steps=4096"], threshold=8.0, random=2.4,
         kind="channels-last images"),
]


@pytest.mark.parametrize("case", CASES, ids=[case.env_id for case in CASES])
def test_ppo_learns_in_each_kind_of_space(case, rlrun, tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))
    run_dir = tmp_path / "run"
    result = rlrun("algo=ppo", f"env=space_envs:{case.env_id}", *case.overrides, "seed=0", cwd=tmp_path,
                   run_dir=run_dir, timeout=300)
    assert result.returncode == 0, result.describe()
    final = last_training_return(run_dir)
    assert final > case.threshold, f"{case.kind}: last training return {final} (random policy: {case.random})"


def last_training_return(run_dir: Path) -> float:
    """The last iteration's mean training episode return, from metrics.csv."""
    with open(run_dir / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("episodic_return")]
    return float(rows[-1]["episodic_return"])
