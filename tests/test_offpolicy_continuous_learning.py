"""DDPG, TD3 and SAC learn Pendulum: fixed seeds, the tuned settings of conf/tuned/<algo>_Pendulum.yaml,
through the real CLI (each 15-40 s here)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("algo", ["ddpg", "td3", "sac"])
def test_reaches_pendulum_bar(rlrun, tmp_path, algo):
    run_dir = tmp_path / "run"
    result = rlrun(f"algo={algo}", "env=Pendulum", "seed=0", "logger=csv", "hardware=cpu", cwd=tmp_path,
                   run_dir=run_dir, timeout=600)
    assert result.returncode == 0, result.describe()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["total_steps"] >= 10_000
    # Random and untrained policies score about -1200 to -1600; a swing-up that holds scores above -200.
    assert summary["final_eval_mean_return"] >= -250.0, summary
