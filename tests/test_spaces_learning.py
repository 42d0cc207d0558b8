"""PPO learns on a small env of each kind of space, run as a user runs it: `rlrun algo=ppo
env=space_envs:<id>` (tests/space_envs, imported by gymnasium from the id; no env file).

The settings and thresholds come from scripts/measure_spaces_learning.py over seeds 0-4 (figures in
each case's comment); each threshold sits well below the worst measured seed and well above a random
policy (measured over 400 episodes).
"""

from __future__ import annotations

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
    threshold: float  # final mean evaluation return the test asks for
    random: float  # a uniform random policy's mean return
    kind: str = field(default="")


COMMON = ["logger=csv", "eval.every_steps=1000000", "eval.episodes=20", "checkpoint.every_steps=1000000"]

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
    final = json.loads((run_dir / "summary.json").read_text())["final_eval_mean_return"]
    assert final > case.threshold, f"{case.kind}: final evaluation return {final} (random policy: {case.random})"
