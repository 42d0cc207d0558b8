"""Sweeps through the real Hydra launchers (conf/hydra/launcher/): joblib and submitit_local run here;
SLURM has its own test (test_slurm.py) and Ray runs only where its extra is installed.

A sweep's jobs must each get their own run directory and W&B run (distinct id), grouped in W&B by the
sweep's name, whatever the launcher.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from rlrun.sweep import parallel_jobs, sweep_name
from test_cli import wandb_records

CONF = Path(__file__).resolve().parents[1] / "conf"

# Three CartPole jobs of 1024 steps each (four PPO iterations), one evaluation episode, W&B offline.
SWEEP = ("-m", "env=CartPole", "seed=0,1,2", "total_steps=1024", "eval.episodes=1", "logger=wandb")


def wandb_run_of(run_dir: Path):
    """The `run` record of the job's W&B offline log: its id, group and config as W&B holds them."""
    (log,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    (run,) = [r.run for r in wandb_records(log) if r.WhichOneof("record_type") == "run"]
    return run


def check_sweep(sweep: Path) -> list[Path]:
    """Three finished jobs, one run directory each, each with its own W&B run in the sweep's group."""
    summaries = sorted(sweep.glob("*/summary.json"))
    assert len(summaries) == 3, f"{sweep} holds {sorted(str(p.relative_to(sweep)) for p in sweep.rglob('*'))[:40]}"
    job_dirs = [p.parent for p in summaries]
    seeds, ids = set(), set()
    for job_dir in job_dirs:
        summary = json.loads((job_dir / "summary.json").read_text())
        assert summary["total_steps"] >= 1024 and summary["interrupted"] is False
        manifest = json.loads((job_dir / "manifest.json").read_text())
        run = wandb_run_of(job_dir)
        assert run.run_id == manifest["wandb_run_id"]
        assert run.run_group == sweep.name, f"{job_dir.name}: W&B group {run.run_group!r}, sweep {sweep.name!r}"
        seeds.add(summary["seed"])
        ids.add(run.run_id)
        assert (job_dir / "checkpoints" / "last.pt").is_file()
    assert seeds == {0, 1, 2}
    assert len(ids) == 3, f"W&B run ids {ids}: jobs of a sweep must not share a W&B run"
    return job_dirs


def test_joblib_sweep_runs_each_job_in_its_own_directory_and_wandb_run_grouped_by_the_sweep(rlrun, tmp_path):
    sweep = tmp_path / "lr-sweep"
    result = rlrun(*SWEEP, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}",
                   cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.describe()
    # Hydra's line naming the engine: two worker processes of joblib's loky pool.
    assert "Joblib.Parallel(n_jobs=2,backend=loky" in result.stdout + result.stderr, result.describe()
    check_sweep(sweep)
    # The deprecation warning about our launcher file matching the plugin's schema is filtered.
    assert "validated against ConfigStore schema" not in result.stderr


def test_submitit_local_sweep_runs_each_job_as_a_submitit_job_with_its_own_logs(rlrun, tmp_path):
    sweep = tmp_path / "seeds"
    result = rlrun(*SWEEP, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.describe()
    job_dirs = check_sweep(sweep)
    # submitit's own record of each job: a folder per job id (the pid of a local job) with the job's
    # stderr and its result (`%j/` holds the submitted pickles).
    submitit_jobs = sorted(p for p in (sweep / ".submitit").iterdir() if p.is_dir() and p.name != "%j")
    assert len(submitit_jobs) == 3, f".submitit holds {[p.name for p in submitit_jobs]}"
    for job in submitit_jobs:
        assert list(job.glob("*_result.pkl")), f"{job} holds {sorted(p.name for p in job.iterdir())}"
    # Each job logged its own run directory.
    logged = "".join(p.read_text() for job in submitit_jobs for p in job.glob("*_log.*"))
    for job_dir in job_dirs:
        assert f"run directory {job_dir}" in logged


@pytest.mark.skipif(importlib.util.find_spec("hydra_plugins.hydra_ray_launcher") is None,
                    reason="hydra-ray-launcher is not installed (optional extra: pip install -e '.[ray]')")
def test_ray_sweep_runs_each_job_in_its_own_directory_and_wandb_run_grouped_by_the_sweep(rlrun, tmp_path):
    sweep = tmp_path / "ray-sweep"
    result = rlrun(*SWEEP, "hydra/launcher=ray", "hydra.launcher.ray.init.num_cpus=2",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.describe()
    check_sweep(sweep)


# ---------------------------------------------------------------------------------------------------
# The launcher files and the resolvers they use, composed without running anything


def compose_with_hydra(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_joblib_runs_as_many_jobs_as_cores_divided_by_the_threads_of_one_job():
    cpus = len(os.sched_getaffinity(0))
    assert parallel_jobs(1) == cpus
    assert parallel_jobs(2) == max(1, cpus // 2)
    assert parallel_jobs(cpus + 1) == 1  # never zero jobs
    assert parallel_jobs(1, workers=2) == max(1, cpus // 2)  # A3C: worker processes per job
    cfg = compose_with_hydra("hydra/launcher=joblib", "hardware=cpu", "hardware.torch_threads=2")
    assert cfg.hydra.launcher.n_jobs == max(1, cpus // 2)


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local", "submitit_slurm", "ray"])
def test_every_launcher_file_composes_and_names_its_plugin(launcher):
    cfg = compose_with_hydra(f"hydra/launcher={launcher}", "env=CartPole")
    target = cfg.hydra.launcher._target_
    assert target.startswith("hydra_plugins.hydra_") and target.endswith("Launcher")
    # Every value resolves (the CPUs of a job come from the hardware profile).
    OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    if launcher.startswith("submitit"):
        assert cfg.hydra.launcher.cpus_per_task == cfg.hardware.torch_threads


def as_multirun_job(cfg, sweep_dir: str) -> None:
    """Make `cfg` the HydraConfig of a multirun job whose sweep directory is `sweep_dir`."""
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = sweep_dir
    HydraConfig.instance().set_config(cfg)


def test_wandb_group_is_the_sweep_name_in_a_multirun_and_null_in_a_single_run():
    cfg = compose_with_hydra("logger=wandb")
    try:
        HydraConfig.instance().set_config(cfg)
        assert cfg.logger.wandb.group is None
        as_multirun_job(cfg, "outputs/multirun/2026-11-26/14-03-59")
        assert cfg.logger.wandb.group == "2026-11-26_14-03-59"
        as_multirun_job(cfg, "/scratch/me/lr-sweep")
        assert sweep_name() == "lr-sweep"
        # A group given on the command line wins.
        assert compose_with_hydra("logger=wandb", "logger.wandb.group=mine").logger.wandb.group == "mine"
    finally:
        HydraConfig.instance().cfg = None
