"""Each on-policy algorithm runs, checkpoints and resumes through the real `rlrun` command (tiny budgets)."""

from __future__ import annotations

import json

import pytest
import torch

BUDGETS = {  # (first budget, resumed budget): a few iterations of each algorithm's CartPole settings
    "reinforce": (600, 1200),
    "a2c": (4000, 8000),
    "a3c": (2000, 4000),
    "trpo": (1024, 2048),
}


@pytest.mark.parametrize("algo", list(BUDGETS))
def test_algo_runs_checkpoints_and_resumes_through_the_cli(rlrun, tmp_path, algo):
    first, second = BUDGETS[algo]
    run_dir = tmp_path / "run"
    extra = ("algo.report_every=1000",) if algo == "a3c" else ("algo.log_interval=20",) if algo == "a2c" else ()
    result = rlrun(f"algo={algo}", "env=CartPole", "logger=csv", "hardware=cpu", "eval.episodes=1",
                   f"total_steps={first}", "eval.every_steps=0", "checkpoint.every_steps=0", *extra,
                   cwd=tmp_path, run_dir=run_dir)
    assert result.returncode == 0, result.describe()
    last = torch.load(run_dir / "checkpoints" / "last.pt", map_location="cpu", weights_only=True)
    assert last["algo_name"] == algo and last["global_step"] >= first
    assert "net" in last["algo"] and last["algo"]["global_step"] == last["global_step"]

    resumed = rlrun(f"resume={run_dir}", f"total_steps={second}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.describe()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["total_steps"] >= second and summary["algo"] == algo
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["global_step"] >= second
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert len(manifest["resumed"]) == 1
