"""PPO learns: fixed seeds and step caps, through the real CLI (each about half a minute here)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("algo, env, total_steps, threshold", [
    ("ppo", "CartPole", 100_000, 475.0),
    ("ppo", "Pendulum", 100_000, -300.0),
])
def test_ppo_reaches_the_bar(rlrun, tmp_path, algo, env, total_steps, threshold):
    run_dir = tmp_path / "run"
    result = rlrun(f"algo={algo}", f"env={env}", "seed=0", f"total_steps={total_steps}", "logger=csv",
                   "hardware=cpu", cwd=tmp_path, run_dir=run_dir, timeout=600)
    assert result.returncode == 0, result.describe()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["total_steps"] >= total_steps
    assert summary["final_eval_mean_return"] >= threshold, summary
