"""What every benchmark round of rlrun shares: configs from conf/ and a timed training loop."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from rlrun.hardware import Hardware

CONF = Path(__file__).resolve().parents[1] / "conf"


def load(group: str, name: str, overrides: dict) -> dict:
    """conf/<group>/<name>.yaml with the benchmark's settings on top, as a plain dict (for a
    `# @package _global_` algo file, its `algo:` block)."""
    node = OmegaConf.load(CONF / group / f"{name}.yaml")
    if group == "algo" and "algo" in node:
        node = node.algo
    node = OmegaConf.merge(node, overrides)
    return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in ("_target_", "defaults")}


def cpu(workers: int = 1) -> Hardware:
    """The CPU profile at the thread count bench_speed.py set for both libraries."""
    return Hardware(torch.device("cpu"), torch.get_num_threads(), "sync", workers)


def timed_learning(algo, budget: int, timed_from: int = 0) -> tuple[int, float, list[float]]:
    """Run `algo.learn()` to `budget` steps; returns (steps timed, their seconds, training episodic
    returns). With `timed_from`, the clock starts at the first report at or past that step (off-policy:
    time the learning phase only). The generator is closed inside the timed part (A3C joins its workers)."""
    returns: list[float] = []
    start, start_step = (time.perf_counter(), algo.global_step) if timed_from == 0 else (None, 0)
    learning = algo.learn()
    for metrics in learning:
        returns += metrics["episodic_returns"]
        if start is None and metrics["global_step"] >= timed_from:
            start, start_step = time.perf_counter(), metrics["global_step"]
        if metrics["global_step"] >= budget:
            break
    learning.close()
    return algo.global_step - start_step, time.perf_counter() - start, returns
