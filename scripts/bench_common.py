"""What every benchmark round of rlrun shares: configs from conf/, a timed training loop, and the PPO
comparison's settings (bench_speed.py and bench_startup.py both use them, so neither imports the other)."""

from __future__ import annotations

import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from rlrun.hardware import Hardware

CONF = Path(__file__).resolve().parents[1] / "conf"

# PPO against SB3 (bench_speed.py's ppo row, bench_startup.py's whole-process row): one source of truth
# for both sides; merged over conf/algo/ppo.yaml so an edit there cannot make the comparison unequal
# without anyone noticing.
PPO_ENV_ID = "HalfCheetah-v5"
PPO_HPARAMS = dict(num_envs=1, num_steps=2048, num_minibatches=32, update_epochs=10, learning_rate=3e-4,
                   anneal_lr=True, adam_eps=1e-5, gamma=0.99, gae_lambda=0.95, norm_adv=True, clip_coef=0.2,
                   clip_vloss=False, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5, target_kl=None)
# Value losses differ in form between the libraries: rlrun's is 0.5 * MSE (clipped as max(unclipped,
# clipped), as in OpenAI baselines), SB3's is MSE of the clipped prediction alone. Unclipped on both
# sides and SB3's coefficient halved make the two objectives the same function.
PPO_NETWORK = dict(hidden_sizes=[64, 64], activation="tanh", ortho_init=True, log_std_init=0.0)
PPO_NORMALIZE = dict(normalize_obs=True, normalize_reward=True, clip_obs=10.0, clip_reward=10.0)


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
