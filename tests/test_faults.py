"""Faults that must never lose or poison a run: rejected resumes, NaN weights, torn or killed writes, two
processes on one run directory, unreadable files, a full disk, W&B without a key or a network.

Every case runs the real `rlrun` command in a subprocess and inspects what it left on disk.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import FAST

SHORT = (*FAST, "total_steps=2048", "eval.every_steps=1024", "checkpoint.every_steps=1024")


def digests(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "cli.log"}


def assert_one_error_line(result, *names: str) -> str:
    lines = result.stderr_lines()
    assert result.returncode != 0, result.describe()
    assert lines and lines[-1].startswith("rlrun: error: "), result.describe()
    assert "Traceback" not in result.stderr + result.stdout, result.describe()
    for name in names:
        assert name.lower() in lines[-1].lower(), f"the error does not name {name!r}: {lines[-1]}"
    return lines[-1]


@pytest.fixture
def finished(rlrun, tmp_path) -> Path:
    """A fresh finished 2048-step CartPole PPO run of this test's own."""
    run_dir = tmp_path / "run"
    result = rlrun(*SHORT, cwd=tmp_path, run_dir=run_dir)
    assert result.returncode == 0, result.describe()
    return run_dir


def test_a_rejected_resume_changes_nothing_and_a_later_resume_still_works(rlrun, finished, tmp_path):
    before = digests(finished)
    rejected = rlrun(f"resume={finished}", "total_steps=4096", "algo.gamma=1.5", cwd=tmp_path)
    assert_one_error_line(rejected, "algo.gamma")
    assert digests(finished) == before  # .hydra/overrides.yaml included
    resumed = rlrun(f"resume={finished}", "total_steps=4096", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.describe()
    assert json.loads((finished / "summary.json").read_text())["total_steps"] == 4096


def test_a_diverged_update_never_replaces_the_last_finite_checkpoint(rlrun, finished, tmp_path):
    # lr 1e39 overflows float32 in the first Adam step, while the losses reported for that update were
    # computed before it and are finite: only a check of the weights themselves catches it. (Annealing sets
    # the rate from the config at every update; the resumed optimiser state would otherwise keep 1e-3.)
    result = rlrun(f"resume={finished}", "total_steps=4096", "schedule_steps=4096", "algo.anneal_lr=true",
                   "algo.learning_rate=1e39", "algo.update_epochs=1", "algo.num_minibatches=1",
                   "checkpoint.every_steps=256", cwd=tmp_path)
    line = assert_one_error_line(result, "non-finite", "last.pt", "2,048")
    assert "last finite checkpoint" in line
    state = torch.load(finished / "checkpoints" / "last.pt", weights_only=True)
    assert state["global_step"] == 2048
    assert all(torch.isfinite(t).all() for t in state["algo"]["net"].values())


def test_resume_survives_an_empty_metrics_file_and_drops_a_torn_last_line(rlrun, finished, tmp_path):
    (finished / "eval.csv").write_text("")  # a kill during the old non-atomic rewrite left this
    metrics = finished / "metrics.csv"
    text = metrics.read_text()
    metrics.write_text(text + "17,3.5,12")  # a row cut off mid-append: its step goes backwards
    result = rlrun(f"resume={finished}", "total_steps=4096", cwd=tmp_path)
    assert result.returncode == 0, result.describe()
    steps = [int(line.split(",")[0]) for line in metrics.read_text().splitlines()[1:]]
    assert steps == sorted(set(steps)) and steps[-1] == 4096
    assert "17" not in [line.split(",")[0] for line in metrics.read_text().splitlines()]
    eval_steps = [int(line.split(",")[0]) for line in (finished / "eval.csv").read_text().splitlines()[1:]]
    assert eval_steps == [3072, 4096]


def test_a_second_process_on_a_run_directory_stops_naming_the_holder(rlrun, finished, tmp_path):
    first, args = rlrun.start(f"resume={finished}", "total_steps=2000000", "eval.every_steps=0", cwd=tmp_path)
    try:
        lock = finished / ".rlrun.lock"
        deadline = time.time() + 60
        while time.time() < deadline and not (lock.exists() and lock.read_text().strip() == str(first.pid)):
            time.sleep(0.2)
        assert lock.read_text().strip() == str(first.pid)
        second_cwd = tmp_path / "second"
        second_cwd.mkdir()
        second = rlrun(f"resume={finished}", "total_steps=4000000", cwd=second_cwd)
        assert_one_error_line(second, "in use", f"pid {first.pid}")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # The kernel released the dead holder's lock: the run resumes.
    reached = torch.load(finished / "checkpoints" / "last.pt", weights_only=True)["global_step"]
    resumed = rlrun(f"resume={finished}", f"total_steps={reached + 1024}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.describe()


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_an_unreadable_checkpoint_is_one_error_line(rlrun, finished, tmp_path, damage):
    last = finished / "checkpoints" / "last.pt"
    data = last.read_bytes()
    last.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"")
    before = digests(finished)
    result = rlrun(f"resume={finished}", "total_steps=4096", cwd=tmp_path)
    assert_one_error_line(result, "last.pt")
    assert digests(finished) == before


def test_garbage_hydra_overrides_are_one_error_line(rlrun, finished, tmp_path):
    (finished / ".hydra" / "overrides.yaml").write_text("{[: not yaml")
    result = rlrun(f"resume={finished}", "total_steps=4096", cwd=tmp_path)
    assert_one_error_line(result, ".hydra")


def test_a_checkpoint_of_another_network_shape_is_one_error_line_and_changes_nothing(rlrun, finished, tmp_path):
    before = digests(finished)
    result = rlrun(f"resume={finished}", "total_steps=4096", "network.hidden_sizes=[32]", cwd=tmp_path)
    assert_one_error_line(result, "does not fit")
    assert digests(finished) == before


def test_leftover_temporary_files_of_a_killed_write_are_removed_on_the_next_start(rlrun, finished, tmp_path):
    leftovers = [finished / "checkpoints" / ".last.pt.12345.tmp", finished / ".summary.json.12345.tmp"]
    for path in leftovers:
        path.write_bytes(b"half")
    assert rlrun(f"resume={finished}", "total_steps=4096", cwd=tmp_path).returncode == 0
    assert not any(path.exists() for path in leftovers)


def test_unknown_top_level_keys_are_rejected_before_anything_is_written(rlrun, tmp_path, run_dir):
    for typo in ("+totl_steps=999", "+foo=1"):
        result = rlrun(*SHORT, typo, cwd=tmp_path, run_dir=run_dir)
        assert_one_error_line(result, typo[1:].split("=")[0])
        assert not run_dir.exists()  # a refused command leaves no run directory behind


def test_wandb_online_without_an_api_key_is_one_error_line(rlrun, tmp_path, run_dir, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc with a key
    result = rlrun(*SHORT, "logger=wandb", "logger.wandb.mode=online", cwd=tmp_path, run_dir=run_dir)
    assert_one_error_line(result, "WANDB_API_KEY")
    assert not run_dir.exists()


def test_wandb_online_without_a_network_logs_offline_after_a_bounded_wait(rlrun, tmp_path, run_dir, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    netrc = tmp_path / ".netrc"  # a key as `wandb login` stores it (the test runner drops WANDB_API_KEY)
    netrc.write_text(f"machine 127.0.0.1:9\n  login user\n  password {'a' * 40}\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    result = rlrun(*SHORT, "logger=wandb", "logger.wandb.mode=online", "logger.wandb.init_timeout=3",
                   cwd=tmp_path, run_dir=run_dir)
    assert result.returncode == 0, result.describe()
    assert "logging offline" in result.stdout + result.stderr
    assert list((run_dir / "wandb").glob("offline-run-*"))


def test_tensorboard_keeps_the_checkpoint_step_after_a_resume(rlrun, tmp_path, run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = rlrun(*SHORT, "logger=tensorboard", cwd=tmp_path, run_dir=run_dir)
    assert first.returncode == 0, first.describe()
    assert rlrun(f"resume={run_dir}", "total_steps=4096", cwd=tmp_path).returncode == 0
    events = EventAccumulator(str(run_dir / "tb"))
    events.Reload()
    eval_steps = [e.step for e in events.Scalars("eval/mean_return")]
    assert eval_steps == [1024, 2048, 3072, 4096]


def test_a_diverging_run_warns(rlrun, tmp_path, run_dir):
    result = rlrun(*FAST, "total_steps=4096", "algo.learning_rate=1e6", "algo.max_grad_norm=1e9", cwd=tmp_path,
                   run_dir=run_dir)
    assert "looks diverged" in result.stdout + result.stderr, result.describe()


def test_sighup_stops_at_an_iteration_boundary_with_a_checkpoint_and_summary(rlrun, tmp_path, run_dir):
    proc, args = rlrun.start(*FAST, "total_steps=2000000", "eval.every_steps=0", "checkpoint.every_steps=0",
                             cwd=tmp_path, run_dir=run_dir)
    deadline = time.time() + 60
    while time.time() < deadline and not (run_dir / "metrics.csv").exists():
        time.sleep(0.2)
    time.sleep(1)
    proc.send_signal(signal.SIGHUP)
    result = rlrun.finish(proc, args, tmp_path)
    assert result.returncode == 130, result.describe()
    summary = json.loads((run_dir / "summary.json").read_text())
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert summary["interrupted"] is True and summary["total_steps"] == state["global_step"] > 0
    assert summary["status"] == "interrupted" and "error" not in summary


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("mount") is None, reason="mounting a small tmpfs needs root")
def test_a_full_disk_is_one_error_line_and_keeps_what_was_written(rlrun, tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        run_dir = disk / "run"
        # A 256x256 network's checkpoint (~0.8 MB with Adam's moments) cannot fit in 600 kB.
        result = rlrun(*SHORT, "network.hidden_sizes=[256,256]", cwd=tmp_path, run_dir=run_dir)
        assert_one_error_line(result, "cannot write", "free disk space")
        assert not list(run_dir.rglob("*.tmp"))
        json.loads((run_dir / "manifest.json").read_text())
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_schedules_keep_their_horizon_on_resume_unless_extended_explicitly(rlrun, tmp_path):
    """PPO's annealed learning rate reaches 0 at the end of a 2048-step run; resumed to 4096 steps it
    stays 0 (the run's horizon), and only `schedule_steps=` moves the horizon."""
    def learning_rates(run_dir: Path) -> dict[int, float]:
        lines = (run_dir / "metrics.csv").read_text().splitlines()
        header = lines[0].split(",")
        rows = [dict(zip(header, line.split(","), strict=True)) for line in lines[1:]]
        return {int(r["global_step"]): float(r["learning_rate"]) for r in rows}

    kept, extended = tmp_path / "kept", tmp_path / "extended"
    for run_dir in (kept, extended):
        first = rlrun(*SHORT, "algo.anneal_lr=true", cwd=tmp_path, run_dir=run_dir)
        assert first.returncode == 0, first.describe()
    assert rlrun(f"resume={kept}", "total_steps=4096", cwd=tmp_path).returncode == 0
    assert rlrun(f"resume={extended}", "total_steps=4096", "schedule_steps=4096", cwd=tmp_path).returncode == 0
    assert all(lr == 0.0 for step, lr in learning_rates(kept).items() if step > 2048)
    resumed_rates = [lr for step, lr in sorted(learning_rates(extended).items()) if step > 2048]
    assert resumed_rates[0] > 0 and resumed_rates == sorted(resumed_rates, reverse=True)


# ---------------------------------------------------------------------------------------------------
# SIGKILL at random moments


def check_run_directory(run_dir: Path) -> int:
    """What must hold after any kill: last.pt loads with weights_only, CSV steps strictly increase,
    JSON files parse and summary.json describes last.pt's step. Returns last.pt's step (0 if none)."""
    for name in ("manifest.json", "summary.json"):
        if (run_dir / name).exists():
            json.loads((run_dir / name).read_text())
    for name in ("metrics.csv", "eval.csv"):
        path = run_dir / name
        if path.exists():
            from rlrun.logging import read_rows

            _, rows = read_rows(path)  # what a resume keeps: the torn last line dropped
            steps = [int(row["global_step"]) for row in rows]
            assert steps == sorted(set(steps)), f"{name} steps not strictly increasing: {steps}"
    last = run_dir / "checkpoints" / "last.pt"
    if not last.exists():
        return 0
    state = torch.load(last, weights_only=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["total_steps"] >= state["global_step"], "summary.json describes an older state than last.pt"
    return state["global_step"]


def test_random_sigkills_never_lose_or_corrupt_a_run(rlrun, tmp_path, run_dir):
    """Kill a run several times at random moments (with a checkpoint and CSV rows written every
    iteration, many kills land inside a write), check the directory after each, then finish it."""
    rng = __import__("random").Random(0)
    budget = 12_288
    every_iteration = (*FAST, f"total_steps={budget}", "eval.every_steps=512", "checkpoint.every_steps=256")
    last_step = 0
    for attempt in range(5):
        if (run_dir / "checkpoints" / "last.pt").exists():
            proc, args = rlrun.start(f"resume={run_dir}", f"total_steps={budget}", cwd=tmp_path)
        else:
            proc, args = rlrun.start(*every_iteration, cwd=tmp_path, run_dir=run_dir)
        # Imports take ~3 s; kill somewhere in the first seconds of training.
        time.sleep(3.0 + rng.uniform(0.0, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        step = check_run_directory(run_dir)
        assert step >= last_step, f"attempt {attempt}: last.pt went back from {last_step} to {step}"
        last_step = step
        if step >= budget:
            break
    if last_step < budget:
        result = rlrun(f"resume={run_dir}", f"total_steps={budget}", cwd=tmp_path) if last_step else \
            rlrun(*every_iteration, cwd=tmp_path, run_dir=run_dir)
        assert result.returncode == 0, result.describe()
    assert check_run_directory(run_dir) >= budget
    summary = json.loads((run_dir / "summary.json").read_text())
    assert math.isfinite(summary["final_eval_mean_return"])
    assert yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())


@pytest.mark.skipif(shutil.which("strace") is None, reason="strace (apt install strace) injects the kills")
@pytest.mark.parametrize(("syscall", "path", "when"), [
    ("rename", None, 3),            # the moment a checkpoint, summary or CSV rewrite is renamed into place
    ("rename", None, 8),
    ("write", "metrics.csv", 6),    # in the middle of appending rows
    ("fsync", None, 1),             # a checkpoint or file fully written to its temporary name, not yet renamed
    ("fsync", None, 5),
])
def test_a_sigkill_inside_a_write_keeps_the_run_resumable(rlrun, tmp_path, run_dir, syscall, path, when):
    """strace kills the run (SIGKILL, whole process) at an exact system call of a write."""
    budget = 4096
    traced = ["-P", str(run_dir / path), "-e", f"trace={syscall}"] if path else ["-e", f"trace={syscall}"]
    args = rlrun.args((*FAST, f"total_steps={budget}", "eval.every_steps=512", "checkpoint.every_steps=256"),
                      run_dir)
    killed = subprocess.run(["strace", "-f", "-qq", "-o", "/dev/null", *traced,
                             "-e", f"inject={syscall}:signal=SIGKILL:when={when}", *rlrun.command(args)],
                            cwd=tmp_path, env=rlrun.env(tmp_path), capture_output=True, text=True, timeout=180)
    assert killed.returncode != 0, f"strace found no {syscall} #{when} to kill at:\n{killed.stderr[-2000:]}"
    step = check_run_directory(run_dir)
    if step:
        result = rlrun(f"resume={run_dir}", f"total_steps={budget}", cwd=tmp_path)
    else:
        shutil.rmtree(run_dir)
        result = rlrun(*FAST, f"total_steps={budget}", cwd=tmp_path, run_dir=run_dir)
    assert result.returncode == 0, result.describe()
    assert check_run_directory(run_dir) == budget


# --- failures leave a record --------------------------------------------------------------------------

FAULTY_ENVS = '''
import gymnasium as gym
import numpy as np
from gymnasium.envs.classic_control import CartPoleEnv


class FaultyCartPole(CartPoleEnv):
    """CartPole whose every instance goes wrong from its `at`-th step on, as a user's env can."""

    def __init__(self, fault="none", at=200, render_mode=None):
        super().__init__(render_mode=render_mode)
        self.fault, self.at, self.steps = fault, at, 0

    def step(self, action):
        obs, reward, terminated, truncated, info = super().step(action)
        self.steps += 1
        if self.steps >= self.at:
            if self.fault == "raise":
                raise RuntimeError("the simulator lost its state")
            if self.fault == "nan_reward":
                reward = float("nan")
            if self.fault == "nan_observation":
                obs = np.full_like(obs, np.nan)
        return obs, reward, terminated, truncated, info


gym.register("FaultyCartPole-v0", entry_point=FaultyCartPole, max_episode_steps=500)
'''

FAULTY_ENV_YAML = """
id: faulty_envs:FaultyCartPole-v0
kwargs: {fault: none, at: 200}
max_episode_steps: null
normalize_obs: false
normalize_reward: false
clip_obs: 10.0
clip_reward: 10.0
"""


@pytest.fixture
def faulty_env(tmp_path, monkeypatch) -> list[str]:
    """A user's env package (on PYTHONPATH) and its env yaml under --config-dir: the overrides that choose it.
    Each of its 8 training envs (PPO's CartPole settings) reaches step 200 at global step 1,600, after the
    checkpoint at 1,024 and before any evaluation."""
    (tmp_path / "faulty_envs.py").write_text(FAULTY_ENVS)
    (tmp_path / "my_conf" / "env").mkdir(parents=True)
    (tmp_path / "my_conf" / "env" / "Faulty.yaml").write_text(FAULTY_ENV_YAML)
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return ["--config-dir", str(tmp_path / "my_conf"), "algo=ppo", "env=Faulty", "logger=csv", "eval.episodes=1",
            "total_steps=4096", "eval.every_steps=100000", "checkpoint.every_steps=1024",
            "algo.num_envs=8", "algo.num_steps=32"]


def summary_and_log(run_dir: Path) -> tuple[dict, str]:
    return json.loads((run_dir / "summary.json").read_text()), (run_dir / "cli.log").read_text()


def test_an_env_that_raises_mid_run_leaves_a_failed_summary_and_its_traceback_in_cli_log(rlrun, faulty_env, tmp_path,
                                                                                          run_dir):
    result = rlrun(*faulty_env, "env.kwargs.fault=raise", cwd=tmp_path, run_dir=run_dir)
    assert result.returncode != 0 and "the simulator lost its state" in result.stderr, result.describe()
    summary, log = summary_and_log(run_dir)
    assert summary["status"] == "failed" and summary["error"] == "RuntimeError: the simulator lost its state"
    assert "rlrun: error: RuntimeError: the simulator lost its state" in log
    assert "Traceback (most recent call last)" in log and "faulty_envs.py" in log
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["global_step"] == 1024


@pytest.mark.parametrize("fault, produced", [("nan_reward", "reward"), ("nan_observation", "observation")])
def test_the_nan_guard_names_the_envs_output_when_the_nan_came_from_the_env(rlrun, faulty_env, tmp_path, run_dir,
                                                                           fault, produced):
    result = rlrun(*faulty_env, f"env.kwargs.fault={fault}", cwd=tmp_path, run_dir=run_dir)
    line = assert_one_error_line(result, f"returned a non-finite {produced}", "FaultyCartPole-v0", "last.pt",
                                 "1,024")
    summary, log = summary_and_log(run_dir)
    assert summary["status"] == "failed" and summary["error"] == line.removeprefix("rlrun: error: ")
    assert line in log
    assert torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)["global_step"] == 1024


@pytest.mark.parametrize("module_text, named", [
    (None, "No module named 'missing_envs'"),
    ("import a_dependency_that_is_not_installed\n", "No module named 'a_dependency_that_is_not_installed'"),
    ("raise RuntimeError('broken at import')\n", "RuntimeError: broken at import"),
])
def test_an_env_module_that_cannot_be_imported_is_one_line_and_leaves_no_run_directory(rlrun, tmp_path, run_dir,
                                                                                        monkeypatch, module_text,
                                                                                        named):
    if module_text is not None:
        (tmp_path / "missing_envs.py").write_text(module_text)
        monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    result = rlrun(*FAST, "env.id=missing_envs:Reach-v0", "total_steps=512", cwd=tmp_path, run_dir=run_dir)
    assert_one_error_line(result, "'missing_envs:Reach-v0'", named)
    assert not run_dir.exists()


def test_a_completed_run_says_so_in_its_summary(finished):
    summary = json.loads((finished / "summary.json").read_text())
    assert summary["status"] == "completed" and "error" not in summary


@pytest.mark.parametrize("overrides, warning", [
    (("algo=sac", "env=Pendulum", "algo.learning_starts=2000", "total_steps=400"),
     "algo.learning_starts=2,000 >= total_steps=400"),
    (("algo=ppo", "env=CartPole", "algo.num_envs=1", "algo.num_steps=512", "algo.num_minibatches=4",
      "total_steps=256"), "one rollout (algo.num_envs * algo.num_steps = 512 steps) is longer than total_steps=256"),
])
def test_a_budget_that_cannot_reach_the_first_update_warns_at_the_start(rlrun, tmp_path, run_dir, overrides, warning):
    result = rlrun(*overrides, "logger=csv", "eval.episodes=1", cwd=tmp_path, run_dir=run_dir)
    assert result.returncode == 0, result.describe()
    warned = [line for line in result.stderr_lines() + result.stdout.splitlines() if warning in line]
    assert len(warned) == 1, result.describe()
    assert warning in (run_dir / "cli.log").read_text()
