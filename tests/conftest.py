"""Fixtures for the end-to-end CLI tests: run the real `rlrun` command in a subprocess.

Every run uses the interpreter running pytest (`sys.executable -m rlrun.cli`), a working directory
under pytest's tmp_path and an explicit Hydra run (or sweep) directory, so nothing is written to the
repository's outputs/. W&B is kept inside the test's directory too (its config, cache and data dirs).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

# The environment variables a developer may have set that would change what a run does.
_SCRUBBED_ENV = ("HYDRA_FULL_ERROR", "WANDB_MODE", "WANDB_DIR", "WANDB_RUN_ID", "WANDB_RESUME", "WANDB_PROJECT",
                 "WANDB_ENTITY", "WANDB_API_KEY", "OMP_WAIT_POLICY")

# A CartPole run that takes a few seconds: PPO's tuned CartPole settings collect 8 x 32 = 256 steps
# per iteration; one evaluation episode; CSV logging only.
FAST = ("env=CartPole", "logger=csv", "eval.episodes=1")


def pytest_collection_modifyitems(config, items):
    # Tests marked `cluster` rehearse what runs on other machines (a SLURM cluster, a shared PostgreSQL, the
    # GPU box's check script) end to end and take minutes each: `make test-cluster` runs them, `make test`
    # skips them and says how to run them.
    if os.environ.get("RLRUN_CLUSTER_TESTS") == "1":
        return
    skip = pytest.mark.skip(reason="long cluster/other-machine test: run it with `make test-cluster`")
    for item in items:
        if item.get_closest_marker("cluster"):
            item.add_marker(skip)


@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str

    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]

    def describe(self) -> str:
        return (f"rlrun {' '.join(self.args)} -> exit {self.returncode}\n"
                f"--- stdout ---\n{self.stdout[-4000:]}\n--- stderr ---\n{self.stderr[-4000:]}")


class RLRun:
    """Runs `python -m rlrun.cli` with the test's interpreter."""

    @staticmethod
    def command(args: list[str]) -> list[str]:
        return [sys.executable, "-m", "rlrun.cli", *args]

    @staticmethod
    def env(cwd: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
        home = cwd / ".wandb-home"
        env.update(WANDB_CONFIG_DIR=str(home / "config"), WANDB_CACHE_DIR=str(home / "cache"),
                   WANDB_DATA_DIR=str(home / "data"), WANDB_SILENT="true", PYTHONUNBUFFERED="1")
        return env

    def args(self, overrides, run_dir: Path | None) -> list[str]:
        args = [str(o) for o in overrides]
        if run_dir is not None:
            args.append(f"hydra.run.dir={run_dir}")
        return args

    def __call__(self, *overrides, cwd: Path, run_dir: Path | None = None, timeout: float = 180) -> Result:
        """Run to completion. `run_dir` becomes hydra.run.dir (leave it out for resume=, which writes
        into the resumed run's own directory, and for -m, which uses hydra.sweep.dir)."""
        args = self.args(overrides, run_dir)
        proc = subprocess.run(self.command(args), cwd=cwd, env=self.env(cwd), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        return Result(args, proc.returncode, proc.stdout, proc.stderr)

    def start(self, *overrides, cwd: Path, run_dir: Path | None = None) -> tuple[subprocess.Popen, list[str]]:
        """Start a run in the background; stdout and stderr go to files in `cwd`."""
        args = self.args(overrides, run_dir)
        out = open(cwd / "stdout.txt", "w")
        err = open(cwd / "stderr.txt", "w")
        try:
            proc = subprocess.Popen(self.command(args), cwd=cwd, env=self.env(cwd), stdout=out, stderr=err,
                                    stdin=subprocess.DEVNULL, text=True)
        finally:
            out.close()
            err.close()
        return proc, args

    @staticmethod
    def finish(proc: subprocess.Popen, args: list[str], cwd: Path, timeout: float = 60) -> Result:
        """Wait for a started run (killing it, by its own pid, if it outlives `timeout`)."""
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        return Result(args, proc.returncode, (cwd / "stdout.txt").read_text(), (cwd / "stderr.txt").read_text())


@pytest.fixture(scope="session")
def rlrun() -> RLRun:
    """`rlrun(*overrides, cwd=..., run_dir=...)` runs the CLI and returns a Result."""
    return RLRun()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """The Hydra run directory of the test's run (not created: rlrun creates it)."""
    return tmp_path / "run"


@pytest.fixture(scope="session")
def finished_cartpole_run(rlrun: RLRun, tmp_path_factory) -> tuple[Result, Path]:
    """One short CartPole PPO run shared by the tests that only read it (and by the tests that check a
    refused resume= leaves it alone): 2048 steps, an evaluation every 1024, a checkpoint every 1024."""
    cwd = tmp_path_factory.mktemp("finished")
    run_dir = cwd / "run"
    result = rlrun(*FAST, "total_steps=2048", "eval.every_steps=1024", "checkpoint.every_steps=1024",
                   cwd=cwd, run_dir=run_dir)
    return result, run_dir
