"""The long cluster tests, on the local single-node SLURM (with accounting) and PostgreSQL that
scripts/slurm_local.sh and scripts/postgres_local.sh start: `make test-cluster` runs them (they are
skipped otherwise: minutes each, more than `make test` can carry).

- A sweep whose jobs have a 2-minute time limit and need several minutes of training finishes through
  requeues, each run equal to the same run without a limit.
- A suite on SLURM with one job cancelled (`scancel`) mid-run: rerunning the same command completes only
  what is missing, and its report equals an uninterrupted suite's.
- rlrun-tune workers as a SLURM job array sharing a PostgreSQL study (the command of docs/clusters.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_resume_exact import assert_same_run
from test_slurm import eval_rows, job_state, slurm, slurm_env, wait_for  # noqa: F401 (fixture)
from test_tune_postgres import load_pg_study, postgres, with_password  # noqa: F401 (fixture)

pytestmark = pytest.mark.cluster  # skipped by `make test` (tests/conftest.py)

ON_SLURM = ("hydra/launcher=submitit_slurm", "hydra.launcher.partition=debug", "hydra.launcher.mem_gb=null",
            "hydra.launcher.cpus_per_task=1")


def wait_idle(env: dict[str, str], timeout: float = 300) -> None:
    wait_for(lambda: not subprocess.run(["squeue", "-h"], env=env, capture_output=True, text=True).stdout.strip(),
             timeout, "an empty queue")


def requeues(job_dir: Path, env: dict[str, str]) -> int:
    """How many times SLURM requeued the array task that ran this sweep job (its .submitit folder)."""
    (task,) = [p.name for p in job_dir.parent.glob(".submitit/*_*") if p.is_dir()
               and f"run directory {job_dir}" in "".join(f.read_text() for f in p.glob("*_log.*"))]
    rows = subprocess.run(["sacct", "-j", task, "-X", "-D", "-n", "-P", "-o", "State"], env=env, capture_output=True,
                          text=True, timeout=60).stdout.split()
    return rows.count("REQUEUED")


def test_a_sweep_under_a_2_minute_time_limit_finishes_through_requeues_equal_to_a_sweep_without_one(
        slurm, rlrun, tmp_path):
    # ~5 minutes of training per job on one quiet core (PPO CartPole, ~2,000 steps/s); override with
    # RLRUN_CLUSTER_STEPS for a shorter check.
    steps = int(os.environ.get("RLRUN_CLUSTER_STEPS", 600_000))
    sweep_args = ["-m", "algo=ppo", "env=CartPole", "seed=0,1", "logger=csv", "eval.episodes=2",
                  f"eval.every_steps={steps // 8}", f"checkpoint.every_steps={steps}", f"total_steps={steps}",
                  "max_requeues=20"]
    env = slurm_env(slurm, rlrun, tmp_path)
    limited, unlimited = tmp_path / "limited", tmp_path / "unlimited"
    # The sweep without a limit, on this machine alongside: the reference.
    reference = subprocess.Popen(rlrun.command([*sweep_args, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                                                f"hydra.sweep.dir={unlimited}"]), cwd=tmp_path, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    # SLURM's USR2 at most 60 s (often ~30 s) before the 2-minute limit: about a minute of training per start.
    with open(tmp_path / "sweep.log", "w") as log:
        sweep = subprocess.Popen(rlrun.command([*sweep_args, *ON_SLURM, "hydra.launcher.timeout_min=2",
                                                "hydra.launcher.signal_delay_s=60", f"hydra.sweep.dir={limited}"]),
                                 cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: sweep.poll() is not None, 3600, "the sweep under a time limit", env, release=True)
        assert reference.wait(timeout=1800) == 0
    finally:
        for proc in (sweep, reference):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert sweep.returncode == 0, (tmp_path / "sweep.log").read_text()[-4000:]
    for job in ("0_ppo_CartPole_seed0", "1_ppo_CartPole_seed1"):
        summary = json.loads((limited / job / "summary.json").read_text())
        assert summary["total_steps"] >= steps and not summary["interrupted"], summary
        assert requeues(limited / job, env) >= 2, f"{job} was not stopped by its time limit twice"
        assert_same_run(limited / job, unlimited / job)


def test_a_suite_on_slurm_with_a_cancelled_job_completes_on_rerun_with_the_report_of_an_uninterrupted_suite(
        slurm, rlrun, tmp_path):
    suite = tmp_path / "tiny.yaml"
    suite.write_text("description: PPO on CartPole, 2 seeds, for the SLURM test\n"
                     "envs: [CartPole]\nseeds: [0, 1]\ntotal_steps: 24576\neval_every_steps: 4096\n"
                     "eval_episodes: 2\nlauncher: submitit_slurm\noverrides: [logger=csv, hardware=cpu]\n"
                     "entries:\n  - {label: ppo, algo: ppo}\n")
    env = slurm_env(slurm, rlrun, tmp_path)
    bench = [sys.executable, "-c", "import sys; from rlrun.cli import bench_main; sys.argv[0] = 'rlrun-bench'; "
                                   "bench_main()", str(suite)]
    on_slurm = [f"out={tmp_path / 'slurm'}", *ON_SLURM[1:], "hydra.launcher.timeout_min=10"]
    reference = subprocess.Popen([*bench, f"out={tmp_path / 'reference'}", "launcher=basic"], cwd=tmp_path, env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen([*bench, *on_slurm], cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
    seed1 = tmp_path / "slurm" / "runs" / "ppo" / "CartPole" / "seed1"
    try:
        wait_for(lambda: eval_rows(seed1) >= 1, 600, "seed 1's first evaluation")
        (task,) = [p.name for p in (tmp_path / "slurm" / "runs" / "ppo" / ".submitit").glob("*_1")]
        subprocess.run(["scancel", task], env=env, check=True, timeout=60)
        first.wait(timeout=600)
        assert reference.wait(timeout=900) == 0
    finally:
        for proc in (first, reference):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert first.returncode != 0, (tmp_path / "first.log").read_text()[-3000:]
    assert job_state(task, env) == "CANCELLED"
    wait_idle(env)
    seed0_summary = (tmp_path / "slurm" / "runs" / "ppo" / "CartPole" / "seed0" / "summary.json").read_text()

    rerun = subprocess.run([*bench, *on_slurm], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900,
                           stdin=subprocess.DEVNULL)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    # Only the cancelled run ran again: seed 0 untouched, seed 1 moved aside and trained from the start.
    assert "seeds 1:" in rerun.stdout and "seeds 0,1" not in rerun.stdout, rerun.stdout
    assert f"{seed1} is incomplete: moved to" in rerun.stdout
    assert (tmp_path / "slurm" / "runs" / "ppo" / "CartPole" / "seed0" / "summary.json").read_text() == seed0_summary
    results = [json.loads((tmp_path / out / "report" / "report.json").read_text()) for out in ("slurm", "reference")]
    for key in ("rows", "aggregates", "improvements", "normalisation", "figures"):
        assert results[0][key] == results[1][key], key


def test_tuner_workers_as_a_slurm_array_share_one_postgresql_study(slurm, postgres, rlrun, tmp_path):
    """docs/clusters.md's array command: each task a worker of the same study, its sampler seeded by its index."""
    from optuna.trial import TrialState

    env = {**slurm_env(slurm, rlrun, tmp_path), "PGURL": postgres["url"], "PGPASSWORD": postgres["password"]}
    study_dir = tmp_path / "study"
    script = tmp_path / "tune.sh"
    script.write_text("#!/bin/bash\n"
                      "#SBATCH --array=0-1\n"
                      "#SBATCH --cpus-per-task=1\n"
                      f"#SBATCH --output={tmp_path}/tune-%A_%a.out\n"
                      f"{sys.executable} -c \"import sys; from rlrun.cli import tune_main; sys.argv[0] = 'rlrun-tune'; "
                      "tune_main()\" algo=ppo env=CartPole total_steps=4096 eval.every_steps=1024 eval.episodes=1 "
                      "logger=csv tune.n_trials=4 tune.seeds=1 tune.pruner=none tune.study_name=array "
                      f"'tune.storage=${{oc.env:PGURL}}' tune.dir={study_dir} "
                      "tune.sampler_seed=$SLURM_ARRAY_TASK_ID\n")
    proc = subprocess.run(["sbatch", "--parsable", "--partition=debug", str(script)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    array = proc.stdout.strip()
    wait_for(lambda: all(job_state(f"{array}_{i}", env) in ("COMPLETED", "FAILED") for i in (0, 1)), 900, "the array")
    logs = {i: (tmp_path / f"tune-{array}_{i}.out").read_text() for i in (0, 1)}
    assert all(job_state(f"{array}_{i}", env) == "COMPLETED" for i in (0, 1)), logs
    trials = load_pg_study(postgres["url"], postgres["password"], "array").trials
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == 4, [(t.number, t.state) for t in trials]
    assert len({t.user_attrs["worker"] for t in complete}) == 2  # both tasks ran trials
    assert (study_dir / "best.yaml").is_file() and (study_dir / "trials.csv").is_file()
    assert all(postgres["password"] not in text for text in logs.values())
