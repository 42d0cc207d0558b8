"""One experiment: check the config, build, train, evaluate, log, checkpoint, resume.

The algorithm is a generator of metrics; everything with a side effect happens here: the loggers,
evaluation on a separate env with frozen normalisation, checkpoints, the step budget, and stopping
cleanly on Ctrl-C or SIGTERM (at an iteration boundary, after writing checkpoints/last.pt).
"""

from __future__ import annotations

import json
import logging
import math
import random
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from rlrun import checkpoint, hardware
from rlrun.config import NON_NEGATIVE, POSITIVE, ConfigError, from_config, rule
from rlrun.envs import VecEnv, env_config, spaces_of
from rlrun.logging import Logger, logger_config, new_run_id
from rlrun.nets import network_config

log = logging.getLogger("rlrun")

ALGO_DIR = Path(__file__).resolve().parents[2] / "conf" / "algo"


@dataclass
class EvalConfig:
    every_steps: int = rule(NON_NEGATIVE)
    episodes: int = rule(POSITIVE)
    seed_offset: int


@dataclass
class CheckpointConfig:
    every_steps: int = rule(NON_NEGATIVE)
    replay: bool


@dataclass
class RunConfig:
    seed: int = rule(NON_NEGATIVE)
    total_steps: int = rule(POSITIVE)
    resume: str | None
    eval: dict
    checkpoint: dict

    def __post_init__(self):
        self.eval = from_config(EvalConfig, self.eval, "eval")
        self.checkpoint = from_config(CheckpointConfig, self.checkpoint, "checkpoint")


def action_space_kind(space: gym.Space) -> str:
    return "discrete" if isinstance(space, gym.spaces.Discrete) else "continuous"


def algo_target(name: str) -> str:
    """The `_target_` class of conf/algo/<name>.yaml, following its defaults list to the file it extends."""
    node = OmegaConf.load(ALGO_DIR / f"{name}.yaml")
    if "_target_" in node:
        return node["_target_"]
    if "_target_" in node.get("algo", {}):  # a `# @package _global_` file: the algorithm is under algo:
        return node["algo"]["_target_"]
    parents = [entry for entry in node.get("defaults", []) if isinstance(entry, str) and entry != "_self_"]
    return algo_target(parents[0])


def algorithms_for(kind: str) -> list[str]:
    """Names of the algorithms in conf/algo/ whose class can act in an action space of this kind."""
    return [path.stem for path in sorted(ALGO_DIR.glob("*.yaml"))
            if kind in getattr(get_class(algo_target(path.stem)), "action_spaces", ())]


class StopRequest:
    """Turns the first SIGINT/SIGTERM into a request to stop at the next iteration boundary (so the
    last checkpoint holds a consistent state); a second one interrupts at once."""

    def __init__(self):
        self.requested = False
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def git_commit() -> str | None:
    repo = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (commit + ("-dirty" if dirty else "")) or None


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in ("rlrun", "torch", "numpy", "gymnasium", "mujoco", "hydra-core", "omegaconf", "wandb"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return versions


def write_json(path: Path, data: dict) -> None:
    """Strict JSON (NaN and infinities, e.g. no evaluation yet, become null), written atomically."""
    strict = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in data.items()}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(strict, indent=2, allow_nan=False) + "\n")
    tmp.replace(path)


def evaluate(algo, eval_env: VecEnv, train_env: VecEnv, episodes: int, seed: int) -> list[float]:
    """Returns of `episodes` episodes of the deterministic policy, observations normalised with the
    training statistics frozen; the same seed every time, so evaluations are comparable."""
    eval_env.load_state_dict(train_env.state_dict())
    obs = eval_env.reset(seed=seed)
    returns: list[float] = []
    while len(returns) < episodes:
        obs, *_ = eval_env.step(algo.act(obs, deterministic=True))
        returns += eval_env.pop_episodes()[0]
    return returns[:episodes]


def run(cfg: DictConfig) -> float:
    """Train, evaluate and checkpoint one run; returns the final mean evaluation return."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    algo_name = hydra_cfg.runtime.choices["algo"]
    env_name = hydra_cfg.runtime.choices["env"]

    # Check everything the user can get wrong before building or writing anything.
    settings = from_config(RunConfig, {k: cfg[k] for k in ("seed", "total_steps", "resume", "eval", "checkpoint")},
                           "config")
    env_cfg = env_config(cfg.env)
    net_cfg = network_config(cfg.network)
    hw = hardware.resolve(cfg.hardware)
    log_cfg = logger_config(cfg.logger)
    algo_cls = get_class(cfg.algo._target_)
    algo_cfg = algo_cls.parse_config({k: v for k, v in cfg.algo.items() if k != "_target_"})
    _, action_space = spaces_of(env_cfg)
    kind = action_space_kind(action_space)
    if kind not in algo_cls.action_spaces:
        raise ConfigError(f"algo={algo_name} cannot act in {env_name}'s {kind} action space; "
                          f"algorithms for {kind} actions: {', '.join(algorithms_for(kind))}")
    resumed = load_resumable(settings, run_dir, algo_name, env_name) if settings.resume else None

    hardware.apply(hw)
    seed_everything(settings.seed)
    start_step = resumed["global_step"] if resumed else 0
    runner_state = resumed["runner"] if resumed else {"wandb_id": new_run_id(), "best_return": -math.inf,
                                                      "wall_seconds": 0.0}
    gamma = getattr(algo_cfg, "gamma", 0.99)
    num_envs = getattr(algo_cfg, "num_envs", 1)
    # A resumed run starts fresh episodes: seed them by the step so they differ from the first start.
    train_env = VecEnv(env_cfg, num_envs, settings.seed + start_step, hw.vector_backend, gamma)
    eval_env = VecEnv(env_cfg, 1, settings.seed + settings.eval.seed_offset, "sync", gamma, training=False)
    algo = algo_cls(algo_cfg, train_env, net_cfg, hw, settings.seed, settings.total_steps)
    if resumed:
        train_env.load_state_dict(resumed["env"])
        algo.load_state_dict(resumed["algo"])

    write_manifest(run_dir, settings, hw, runner_state["wandb_id"], resumed is not None)
    run_config = OmegaConf.to_container(cfg, resolve=True)
    logger = Logger(log_cfg, run_dir, run_config, settings.total_steps, start_step, runner_state["wandb_id"],
                    resuming=resumed is not None)
    ckpt_dir = run_dir / "checkpoints"

    def save(name: str, step: int) -> None:
        algo_state = algo.state_dict()
        if not settings.checkpoint.replay:
            # An off-policy algorithm's replay buffer (key "replay") is large: kept only when asked for.
            algo_state.pop("replay", None)
        checkpoint.save({"algo_name": algo_name, "env_name": env_name, "env_id": env_cfg.id, "global_step": step,
                         "algo": algo_state, "env": train_env.state_dict(), "runner": dict(runner_state),
                         "config": run_config}, ckpt_dir / name)

    def next_multiple(step: int, every: int) -> float:
        return (step // every + 1) * every if every > 0 else math.inf

    step = start_step
    next_eval = next_multiple(step, settings.eval.every_steps)
    next_ckpt = next_multiple(step, settings.checkpoint.every_steps)
    last_eval: list[float] | None = None
    interrupted = False
    recent_returns: deque[float] = deque(maxlen=20)  # what the progress bar and log lines show
    wall_start = time.perf_counter()
    train_seconds = 0.0
    try:
        with StopRequest() as stop:
            iteration_start = time.perf_counter()
            for metrics in algo.learn():
                iteration_seconds = time.perf_counter() - iteration_start
                train_seconds += iteration_seconds
                previous_step, step = step, metrics.pop("global_step")
                returns, lengths = metrics.pop("episodic_returns"), metrics.pop("episodic_lengths")
                bad = [k for k, v in metrics.items() if isinstance(v, float) and math.isnan(v) and "loss" in k]
                if bad:
                    raise FloatingPointError(
                        f"{', '.join(bad)} became NaN at step {step}; stopping without overwriting "
                        f"{ckpt_dir / 'last.pt'} (the last good checkpoint)")
                recent_returns.extend(returns)
                logger.log_train(step, {
                    "train/episodic_return": float(np.mean(returns)) if returns else math.nan,
                    "train/episodic_length": float(np.mean(lengths)) if lengths else math.nan,
                    **metrics,
                    "time/sps": (step - previous_step) / max(iteration_seconds, 1e-9),
                    "time/elapsed": runner_state["wall_seconds"] + time.perf_counter() - wall_start},
                    recent_return=float(np.mean(recent_returns)) if recent_returns else math.nan)
                done = step >= settings.total_steps or stop.requested
                if step >= next_eval or (done and not stop.requested):
                    last_eval = evaluate(algo, eval_env, train_env, settings.eval.episodes,
                                         settings.seed + settings.eval.seed_offset)
                    mean_return = float(np.mean(last_eval))
                    logger.log_eval(step, {"eval/mean_return": mean_return, "eval/std_return": float(np.std(last_eval))},
                                    settings.total_steps)
                    next_eval = next_multiple(step, settings.eval.every_steps)
                    if mean_return > runner_state["best_return"]:
                        runner_state["best_return"] = mean_return
                        save("best.pt", step)
                if step >= next_ckpt or done:
                    runner_state["wall_seconds"] += time.perf_counter() - wall_start
                    wall_start = time.perf_counter()
                    save("last.pt", step)
                    next_ckpt = next_multiple(step, settings.checkpoint.every_steps)
                if done:
                    interrupted = stop.requested
                    break
                iteration_start = time.perf_counter()
    finally:
        logger.close()
        train_env.close()
        eval_env.close()

    wall_seconds = runner_state["wall_seconds"]
    final_return = float(np.mean(last_eval)) if last_eval else math.nan
    write_json(run_dir / "summary.json", {
        "algo": algo_name, "env": env_name, "env_id": env_cfg.id, "seed": settings.seed,
        "final_eval_mean_return": final_return,
        "final_eval_std_return": float(np.std(last_eval)) if last_eval else math.nan,
        "best_eval_mean_return": runner_state["best_return"], "total_steps": step,
        "wall_seconds": wall_seconds, "steps_per_second": (step - start_step) / max(train_seconds, 1e-9),
        "interrupted": interrupted})
    if interrupted:
        raise KeyboardInterrupt(f"stopped at step {step:,}; resume with: rlrun resume={run_dir}")
    log.info("done: %s steps, final eval return %.1f; run directory %s", f"{step:,}", final_return, run_dir)
    return final_return


def load_resumable(settings: RunConfig, run_dir: Path, algo_name: str, env_name: str) -> dict:
    path = Path(settings.resume)
    if not path.is_dir():
        raise ConfigError(f"resume={settings.resume}: no such run directory")
    if path.resolve() != run_dir.resolve():
        raise ConfigError(f"resume={settings.resume} must be the run's own directory (got run dir {run_dir}); "
                          "resume one run at a time, without -m")
    last = path / "checkpoints" / "last.pt"
    if not last.exists():
        raise ConfigError(f"resume={settings.resume}: no checkpoint at {last}")
    state = checkpoint.load(last)
    if (state["algo_name"], state["env_name"]) != (algo_name, env_name):
        raise ConfigError(f"resume={settings.resume} holds a run of algo={state['algo_name']} "
                          f"env={state['env_name']}, not algo={algo_name} env={env_name}")
    if state["global_step"] >= settings.total_steps:
        raise ConfigError(f"resume={settings.resume} already reached {state['global_step']:,} steps; "
                          f"pass a larger total_steps (got {settings.total_steps:,})")
    return state


def write_manifest(run_dir: Path, settings: RunConfig, hw: hardware.Hardware, wandb_id: str, resuming: bool) -> None:
    path = run_dir / "manifest.json"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    invocation = {"command": " ".join(sys.argv), "time": now, "git_commit": git_commit()}
    if resuming and path.exists():
        manifest = json.loads(path.read_text())
        manifest.setdefault("resumed", []).append(invocation)
    else:
        manifest = {**invocation, "seed": settings.seed, "wandb_run_id": wandb_id,
                    "packages": package_versions(), "hardware": hardware.describe(hw)}
    write_json(path, manifest)
