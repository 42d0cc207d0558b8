"""Config resolvers for sweeps, registered when the package is imported.

- `${rlrun.sweep_name:}`: in a job of a multirun (`rlrun -m ...`, whatever the launcher), the name of
  its sweep; null in a single run. conf/logger/wandb.yaml makes it the default W&B group, so the jobs
  of one sweep show up together in the W&B UI while each keeps its own run and id.
- `${rlrun.parallel_jobs:${hardware.torch_threads},${hardware.workers}}`: how many jobs fit on the
  CPUs this process may use side by side (conf/hydra/launcher/joblib.yaml's n_jobs).

OmegaConf resolves them when a key is read, not when the config is composed, so they must be
registered in every process that reads the config: the launcher's, and each job's. Importing `rlrun`
(which every entry point and every launcher's job does, to reach `rlrun.cli.task`) registers them.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from omegaconf import OmegaConf

from rlrun.processes import usable_cores


def sweep_name() -> str | None:
    """The sweep directory's name below outputs/multirun/ (`2026-11-26_14-03-59` for the default
    `outputs/multirun/2026-11-26/14-03-59`), or its last component when the sweep directory was chosen
    by hand (`hydra.sweep.dir=/scratch/me/lr-sweep` -> `lr-sweep`); None outside a multirun."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    parts = Path(hydra_cfg.sweep.dir).parts
    if "multirun" in parts[:-1]:
        below = parts[len(parts) - parts[::-1].index("multirun"):]
        return "_".join(below)
    return parts[-1]


def parallel_jobs(torch_threads: int, workers: int = 1) -> int:
    """One job keeps `torch_threads` cores busy in each of its `workers` processes (A3C has several,
    other algorithms one): more jobs than that oversubscribes the cores, and measured on 2 cores a
    second busy process cuts small-network PPO to 0.3x (ECOSYSTEM.md, "PyTorch on 2 cores")."""
    if workers == "auto":  # as rlrun.hardware.resolve_workers: one per core with CUDA, else 1
        import torch

        workers = usable_cores() if torch.cuda.is_available() else 1
    return max(1, usable_cores() // max(1, int(torch_threads) * workers))


def register() -> None:
    # conf/hydra/launcher/<name>.yaml shares its name with the plugin's schema, so Hydra type-checks
    # our file against it (wanted), and warns on every job that this matching is deprecated; Hydra
    # 1.3, which rlrun pins, still does it.
    warnings.filterwarnings("ignore", message=r"\s*'hydra/launcher/\w+' is validated against ConfigStore schema")
    OmegaConf.register_new_resolver("rlrun.sweep_name", sweep_name, replace=True, use_cache=False)
    OmegaConf.register_new_resolver("rlrun.parallel_jobs", parallel_jobs, replace=True)
