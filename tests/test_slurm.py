"""rlrun on a real single-node SLURM cluster started by scripts/slurm_local.sh (as root, Debian's slurm-wlm,
munge, slurmdbd and MariaDB): a sweep as one job array; a plain `rlrun` in a user's sbatch script that
gets SLURM's time-limit warning, requeues itself and resumes to the same results as a run never stopped;
the requeue limit and a locked run directory, one line each in the job's log. Skipped, saying why, where
the script cannot start the daemons (not root, packages missing, ports taken).

The long cluster tests (tests/test_cluster.py: a sweep through 2-minute time limits, a suite with a
cancelled job, tuner workers as a job array) use the same fixture and run with `make test-cluster`.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from pathlib import Path

import pytest
import torch

from test_launchers import SWEEP, check_sweep
from test_resume_exact import assert_same_run

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "slurm_local.sh"
# One cluster at a time on this machine (its ports are fixed): pytest-xdist workers wait for each other.
CLUSTER_LOCK = Path("/tmp/rlrun-slurm-test.lock")


def start_slurm(state: Path) -> tuple[dict[str, str] | None, str]:
    env = {**os.environ, "SLURM_LOCAL_DIR": str(state)}
    start = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=180)
    if start.returncode == 2:
        return None, start.stderr.strip().splitlines()[-1]
    assert start.returncode == 0, f"slurm_local.sh start failed:\n{start.stdout}\n{start.stderr}"
    env["SLURM_CONF"] = start.stdout.strip().rpartition("SLURM_CONF=")[2]
    return env, ""


@pytest.fixture(scope="module")
def slurm(tmp_path_factory) -> dict[str, str]:
    """The environment of a SLURM client of a freshly started cluster; the cluster stops afterwards."""
    lock = os.open(CLUSTER_LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    fcntl.flock(lock, fcntl.LOCK_EX)
    env, why = start_slurm(tmp_path_factory.mktemp("slurm"))
    try:
        if env is None:
            pytest.skip(f"no SLURM here: {why}")
        yield env
    finally:
        if env is not None:
            subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=180)
        os.close(lock)


def slurm_env(slurm: dict[str, str], rlrun, cwd: Path) -> dict[str, str]:
    return {**rlrun.env(cwd), "SLURM_CONF": slurm["SLURM_CONF"]}


def sbatch(script: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(["sbatch", "--parsable", "--partition=debug", str(script)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().split(";")[0]


def job_state(job: str, env: dict[str, str]) -> str:
    """The job's state as accounting (sacct) has it: PENDING, RUNNING, REQUEUED, COMPLETED, FAILED..."""
    out = subprocess.run(["sacct", "-j", job, "-X", "-n", "-P", "-o", "State"], env=env, capture_output=True,
                         text=True, timeout=60).stdout.split("\n")
    states = [line.split()[0] for line in out if line.strip()]  # "CANCELLED by 0": the state's first word
    return states[-1] if states else "UNKNOWN"


HELD_SINCE: dict[str, float] = {}  # job id -> when release_requeued first saw it held
SETTLE_S = 10.0


def release_requeued(env: dict[str, str]) -> None:
    """SLURM holds a requeued job for ~2 minutes (its EligibleTime is the requeue + 121 s); let held jobs
    start sooner, as an administrator may: only SLURM's waiting is shortened, rlrun does the same. A job is
    released only after SETTLE_S seconds held: released at once, it was allocated while its previous start
    was still being cleaned up, and slurmctld killed it ("Killing non-startable batch JobId=4: Job
    credential revoked"), so it never ran again."""
    held = subprocess.run(["squeue", "-h", "-t", "PD", "-o", "%i %r"], env=env, capture_output=True, text=True,
                          timeout=60).stdout.split("\n")
    now = time.monotonic()
    held_jobs = {line.split()[0] for line in held if line.endswith("BeginTime")}
    for job in set(HELD_SINCE) - held_jobs:  # started again: its next requeue settles afresh
        del HELD_SINCE[job]
    for job in held_jobs:
        if now - HELD_SINCE.setdefault(job, now) >= SETTLE_S:
            subprocess.run(["scontrol", "update", f"JobId={job}", "StartTime=now"], env=env,
                           capture_output=True, timeout=60)


def wait_for(condition, timeout: float, what: str, env: dict[str, str] | None = None, release: bool = False) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        if release:
            release_requeued(env)
        time.sleep(2 if release else 0.3)


def eval_rows(run_dir: Path) -> int:
    path = run_dir / "eval.csv"
    return max(0, len(path.read_text().splitlines()) - 1) if path.exists() else 0


@pytest.mark.cluster  # a long multi-job test: `make test-cluster` runs it
def test_submitit_slurm_sweep_runs_the_jobs_as_one_slurm_array_each_with_its_own_run_and_wandb_run(
        slurm, rlrun, tmp_path):
    sweep = tmp_path / "slurm-sweep"
    env = slurm_env(slurm, rlrun, tmp_path)
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


# ---------------------------------------------------------------------------------------------------
# A plain `rlrun` in a user's own sbatch script (docs/clusters.md)

# PPO on CartPole: 64 iterations of 256 steps, an evaluation every 4096 steps; seconds of training.
RUN = ("algo=ppo", "env=CartPole", "logger=csv", "eval.episodes=1", "total_steps=16384", "eval.every_steps=4096")


def batch_script(path: Path, python: str, args: list[str]) -> Path:
    """The sbatch script of docs/clusters.md: the warning signal to the batch shell, which `exec` makes
    rlrun itself; requeueable; its log appended to across requeues; the run directory named by the job id."""
    path.write_text("#!/bin/bash\n"
                    "#SBATCH --signal=B:USR1@120\n"
                    "#SBATCH --requeue\n"
                    "#SBATCH --open-mode=append\n"
                    f"#SBATCH --output={path.parent}/slurm-%j.out\n"
                    f"exec {python} -m rlrun.cli {' '.join(args)}\n")
    return path


@pytest.mark.cluster  # a long multi-job test: `make test-cluster` runs it
def test_a_plain_rlrun_in_sbatch_requeues_on_its_warning_signal_and_ends_as_a_run_never_stopped(
        slurm, rlrun, tmp_path):
    import sys

    env = slurm_env(slurm, rlrun, tmp_path)
    # The same run without SLURM, alongside: the reference.
    (tmp_path / "whole").mkdir()
    whole_proc, whole_args = rlrun.start(*RUN, cwd=tmp_path / "whole", run_dir=tmp_path / "whole" / "run")
    job = sbatch(batch_script(tmp_path / "job.sh", sys.executable, [*RUN, f"hydra.run.dir={tmp_path}/run-$SLURM_JOB_ID"]),
                 env)
    run_dir, log = tmp_path / f"run-{job}", tmp_path / f"slurm-{job}.out"
    # A limit reached: the same job allowed no requeue.
    limited = sbatch(batch_script(tmp_path / "limited.sh", sys.executable,
                                  [*RUN, "max_requeues=0", f"hydra.run.dir={tmp_path}/run-$SLURM_JOB_ID"]), env)
    signalled = set()
    while len(signalled) < 2:  # SLURM's warning, as `--signal=B:USR1@120` sends it, once training is under way
        wait_for(lambda: any(eval_rows(tmp_path / f"run-{j}") >= 1 for j in (job, limited) if j not in signalled),
                 240, "a first evaluation")
        for j in (job, limited):
            if j not in signalled and eval_rows(tmp_path / f"run-{j}") >= 1:
                subprocess.run(["scancel", "--signal=USR1", "--batch", j], env=env, check=True, timeout=60)
                signalled.add(j)
    wait_for(lambda: job_state(job, env) == "COMPLETED" and "done:" in log.read_text(), 300,
             f"job {job} to finish", env, release=True)
    wait_for(lambda: job_state(limited, env) in ("FAILED", "COMPLETED"), 120, f"job {limited} to end")
    whole = rlrun.finish(whole_proc, whole_args, tmp_path / "whole", timeout=240)
    assert whole.returncode == 0, whole.describe()

    text = log.read_text()
    assert f"SLURM job {job} got its time-limit warning (SIGUSR1): requeued (1 of at most 5)" in text, text
    assert f"SLURM job {job} restarted (1): resuming {run_dir}" in text, text
    assert_same_run(run_dir, tmp_path / "whole" / "run")

    limited_log = (tmp_path / f"slurm-{limited}.out").read_text()
    errors = [line for line in limited_log.splitlines() if line.startswith("rlrun: error:")]
    assert len(errors) == 1 and "max_requeues=0: not requeued" in errors[0], limited_log
    assert f"rlrun resume={tmp_path}/run-{limited}" in errors[0]
    assert job_state(limited, env) == "FAILED"
    assert (tmp_path / f"run-{limited}" / "checkpoints" / "last.pt").is_file()


def test_a_job_whose_run_directory_is_locked_says_so_in_one_line_of_its_log(slurm, rlrun, tmp_path):
    import sys

    env = slurm_env(slurm, rlrun, tmp_path)
    run_dir = tmp_path / "locked"
    run_dir.mkdir()
    holder = os.open(run_dir / ".rlrun.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(holder, fcntl.LOCK_EX)  # what a second instance of the job (or any rlrun) in there holds
    os.write(holder, str(os.getpid()).encode())
    try:
        job = sbatch(batch_script(tmp_path / "job.sh", sys.executable, [*RUN, f"hydra.run.dir={run_dir}"]), env)
        wait_for(lambda: job_state(job, env) in ("FAILED", "COMPLETED"), 180, f"job {job} to end")
    finally:
        os.close(holder)
    lines = [line for line in (tmp_path / f"slurm-{job}.out").read_text().splitlines() if line.strip()]
    assert lines == [f"rlrun: error: run directory {run_dir} is in use by another rlrun process (pid {os.getpid()}); "
                     "wait for it to finish or stop it first"], lines


@pytest.mark.parametrize("sig", ["SIGUSR1", "SIGUSR2"])
def test_the_warning_signals_outside_slurm_stop_a_run_like_sigterm_resumable(rlrun, tmp_path, sig):
    """Without SLURM (no job to requeue) SLURM's warning signals stop a run as SIGTERM does: at an
    iteration boundary, last.pt and summary.json written, `rlrun resume=` continues it."""
    import json
    import signal

    run_dir = tmp_path / "run"
    proc, args = rlrun.start(*RUN, "total_steps=2000000", "eval.every_steps=0", "checkpoint.every_steps=0",
                             cwd=tmp_path, run_dir=run_dir)
    wait_for(lambda: (run_dir / "metrics.csv").exists() or proc.poll() is not None, 120, "training to start")
    proc.send_signal(getattr(signal, sig))
    result = rlrun.finish(proc, args, tmp_path)
    assert result.returncode == 130, result.describe()
    assert f"{sig} received outside a SLURM job: stopped with checkpoints/last.pt written" in result.stdout + result.stderr
    summary = json.loads((run_dir / "summary.json").read_text())
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert summary["interrupted"] is True and summary["total_steps"] == state["global_step"] > 0
