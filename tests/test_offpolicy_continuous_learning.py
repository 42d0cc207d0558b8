"""DDPG, TD3 and SAC learn Pendulum: the tuned settings of conf/tuned/<algo>_Pendulum.yaml, through the real CLI
(each 15-40 s on a quiet machine).

The bar holds on every seed measured, with a margin (another CPU or BLAS rounds differently and moves a run as
much as a change of seed does). `python scripts/seed_table.py --cases ddpg-Pendulum,td3-Pendulum,sac-Pendulum`,
seeds 0-4, final evaluations (2026-12-07):
- DDPG -105/-174/-120/-156/-120
- TD3 -101/-185/-125/-158/-123
- SAC -97/-177/-119/-155/-118
The bar of -300 keeps a margin of 115 below the lowest of the 15; random and untrained policies score about
-1200 to -1600, a swing-up that holds scores above -200.
"""

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
    assert summary["final_eval_mean_return"] >= -300.0, summary
