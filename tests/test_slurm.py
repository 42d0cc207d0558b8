"""A sweep through `hydra/launcher=submitit_slurm` on a real single-node SLURM cluster, started by
scripts/slurm_local.sh (as root, with Debian's slurm-wlm and munge). Skipped, saying why, where the
script cannot start the daemons (not root, packages missing, ports taken)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from test_launchers import SWEEP, check_sweep

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm_local.sh"


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> dict[str, str]:
    """The environment of a SLURM client of a freshly started cluster; the cluster stops afterwards."""
    state = tmp_path_factory.mktemp("slurm")
    env = {**os.environ, "SLURM_LOCAL_DIR": str(state)}
    start = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=120)
    if start.returncode == 2:
        pytest.skip(f"no SLURM here: {start.stderr.strip().splitlines()[-1]}")
    assert start.returncode == 0, f"slurm_local.sh start failed:\n{start.stdout}\n{start.stderr}"
    env["SLURM_CONF"] = start.stdout.strip().rpartition("SLURM_CONF=")[2]
    try:
        yield env
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120)


def test_submitit_slurm_sweep_runs_the_jobs_as_one_slurm_array_each_with_its_own_run_and_wandb_run(
        slurm, rlrun, tmp_path):
    sweep = tmp_path / "slurm-sweep"
    env = {**rlrun.env(tmp_path), "SLURM_CONF": slurm["SLURM_CONF"]}
    args = [*SWEEP, "hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug", "hydra.launcher.mem_gb=null",
            "hydra.launcher.timeout_min=10", f"hydra.sweep.dir={sweep}"]
    proc = subprocess.run(rlrun.command(args), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=400,
                          stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    job_dirs = check_sweep(sweep)
    # One array job: submitit's folders are <array id>_<index>, one per sweep job, each with SLURM's log.
    tasks = sorted(p.name for p in (sweep / ".submitit").iterdir() if p.is_dir() and "_" in p.name)
    array_ids = {name.split("_")[0] for name in tasks}
    assert len(tasks) == 3 and len(array_ids) == 1, tasks
    assert sorted(name.split("_")[1] for name in tasks) == ["0", "1", "2"]
    logged = "".join(p.read_text() for p in (sweep / ".submitit").glob("*_*/*_log.*"))
    for job_dir in job_dirs:
        assert f"run directory {job_dir}" in logged
