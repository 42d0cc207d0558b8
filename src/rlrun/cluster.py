"""Time limits and preemption on SLURM: a stopped job requeues itself and resumes its own run directory.

SLURM warns a job before its time limit with a signal: `sbatch --signal=B:USR1@120` (a plain `rlrun`
in a user's batch script, `exec`-ed so that it is the batch shell) or USR2 (submitit's choice, so
hydra/launcher=submitit_slurm and rlrun-bench suites on SLURM). rlrun's runner treats either like
SIGTERM: it stops at the next iteration boundary with checkpoints/last.pt written. Then, in a SLURM job,
`after_stop` requeues the job with `scontrol requeue $SLURM_JOB_ID`, at most `max_requeues` times
(SLURM_RESTART_COUNT counts them), and `prepare` makes the requeued job, which starts the same
command again under the same job id, resume the run directory it finds holding checkpoints/last.pt.

Why rlrun requeues itself instead of submitit's checkpoint/requeue (a `checkpoint` method on the
launched callable): submitit calls `checkpoint` inside its signal handler, in the middle of an
iteration, where no consistent checkpoint can be written; here the job stops at an iteration
boundary first. One mechanism also serves all three ways a run meets SLURM (a submitit job, a suite's
job, a plain `rlrun` in an sbatch script), and `prepare` also resumes jobs that the scheduler itself
requeued after a preemption (PreemptMode=REQUEUE: SIGTERM, last.pt, requeue), where no code of ours
decides anything.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

log = logging.getLogger("rlrun")

# SLURM's warning before a time limit: USR1 by `sbatch --signal=B:USR1@N`, USR2 by submitit.
WARNING_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)

# The warning signal this process received, if any (set by the runner's stop handler).
_warned_by: int | None = None


def note_signal(signum: int) -> None:
    """Called by the runner's stop handler with each stop signal it receives."""
    global _warned_by
    if signum in WARNING_SIGNALS:
        _warned_by = signum


def slurm_job() -> str | None:
    """The SLURM job id of this process (an array task has its own), None outside SLURM."""
    return os.environ.get("SLURM_JOB_ID") or None


def restarts() -> int:
    """How many times SLURM restarted this job (requeued by rlrun, by a user or by a preemption)."""
    try:
        return int(os.environ.get("SLURM_RESTART_COUNT", "0"))
    except ValueError:
        return 0


def prepare(cfg, run_dir: Path) -> None:
    """Before a run starts: a requeued SLURM job whose run directory holds checkpoints/last.pt resumes
    it (cfg.resume is set to it) instead of refusing a directory that already holds a run."""
    global _warned_by
    _warned_by = None
    if slurm_job() is None or restarts() == 0 or cfg.get("resume"):
        return
    if (run_dir / "checkpoints" / "last.pt").is_file():
        cfg.resume = str(run_dir)
        log.info("SLURM job %s restarted (%d): resuming %s from checkpoints/last.pt", slurm_job(), restarts(), run_dir)


def after_stop(run_dir: Path, max_requeues: int) -> None:
    """After a run stopped on a signal (last.pt written): if the signal was SLURM's time-limit warning,
    requeue the job and exit; the requeued job resumes `run_dir`. Returns for any other stop."""
    if _warned_by is None:
        return
    name = signal.Signals(_warned_by).name
    job = slurm_job()
    if job is None:
        log.info("%s received outside a SLURM job: stopped with checkpoints/last.pt written", name)
        return
    done = restarts()
    resume = f"rlrun resume={run_dir}"
    if done >= max_requeues:
        message = (f"SLURM job {job} got its time-limit warning ({name}) after {done} requeue(s), the limit "
                   f"max_requeues={max_requeues}: not requeued; continue it with `{resume}` (last.pt is written) "
                   "or raise max_requeues")
        sys.exit(f"rlrun: error: {message}")
    try:
        proc = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=60)
        reason = (proc.stderr or proc.stdout).strip().splitlines()[0] if proc.returncode else ""
    except (OSError, subprocess.SubprocessError) as error:
        reason = str(error)
    if reason:
        message = (f"SLURM job {job} got its time-limit warning ({name}) but cannot be requeued ({reason}): "
                   f"submit it with `sbatch --requeue`; continue it with `{resume}`")
        sys.exit(f"rlrun: error: {message}")
    message = (f"SLURM job {job} got its time-limit warning ({name}): requeued ({done + 1} of at most "
               f"{max_requeues}); the requeued job resumes {run_dir}")
    log.info(message)
    # SystemExit, not an exception: a submitit job must not record a result (its launcher would take the
    # job as finished); SLURM ends this instance of the job and starts it again.
    sys.exit(0)
