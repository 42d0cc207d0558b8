"""One experiment: check the config, build, train, evaluate, log, checkpoint, resume.

The algorithm is a generator of metrics; everything with a side effect happens here: the loggers,
evaluation on a separate env with frozen normalisation, checkpoints, the step budget, and stopping
cleanly on Ctrl-C, SIGTERM or SIGHUP (at an iteration boundary, after writing checkpoints/last.pt).

`experiment()` is itself a generator that yields at each evaluation, so whoever drives it (the Hydra
task through `run()`, the tuner, tests) can advance several runs side by side and stop one early.
Nothing in the run directory changes until the whole config (and, on resume, the checkpoint) has
been accepted and the directory is locked against a second process.
"""

from __future__ import annotations

import fcntl
import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
import torch
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from rlrun import checkpoint, cluster, hardware
from rlrun.config import GROUP_KEYS, NON_NEGATIVE, POSITIVE, RUN_KEYS, ConfigError, from_config, rule
from rlrun.envs import VecEnv, env_config, spaces_of
from rlrun.envs.spaces import action_space_kind, check_spaces
from rlrun.logging import Logger, logger_config, new_run_id
from rlrun.nets import network_config
from rlrun.resources import ALGO_DIR, algo_target
from rlrun.returns import Segment, ValueCheck, value_check
from rlrun.secrets import mask_log_lines, mask_url_passwords, recordable_config

log = logging.getLogger("rlrun")

# A loss this large means the run diverged (seen: value loss 2e14 with algo.learning_rate=1e6); the
# largest we measured in healthy runs are critic losses of ~1e5 on unnormalised MuJoCo rewards.
DIVERGED_LOSS = 1e8


class RunError(RuntimeError):
    """A run that cannot go on (a NaN, a full disk): reported as one line, keeping the last good checkpoint."""


@dataclass
class EvalConfig:
    every_steps: int = rule(NON_NEGATIVE)
    episodes: int = rule(POSITIVE)
    seed_offset: int
    # Training videos (rlrun.envs.video.record_training_video); defaults keep configs without the keys valid.
    video_every_steps: int = field(default=0, metadata={"rule": NON_NEGATIVE})
    video_frames: int | None = field(default=300, metadata={"rule": POSITIVE})
    video_size: list[int] | None = None


@dataclass
class CheckpointConfig:
    every_steps: int = rule(NON_NEGATIVE)
    replay: bool


@dataclass
class RunConfig:
    seed: int = rule(NON_NEGATIVE)
    total_steps: int = rule(POSITIVE)
    schedule_steps: int | None = rule(POSITIVE)
    resume: str | None
    eval: dict
    checkpoint: dict
    max_requeues: int = field(default=5, metadata={"rule": NON_NEGATIVE})  # rlrun.cluster

    def __post_init__(self):
        self.eval = from_config(EvalConfig, self.eval, "eval")
        self.checkpoint = from_config(CheckpointConfig, self.checkpoint, "checkpoint")


def algorithms_for(kind: str) -> list[str]:
    """Names of the algorithms in conf/algo/ whose class can act in an action space of this kind."""
    return [path.stem for path in sorted(ALGO_DIR.glob("*.yaml"))
            if kind in getattr(get_class(algo_target(path.stem)), "action_spaces", ())]


class StopRequest:
    """Turns the first SIGINT/SIGTERM/SIGHUP into a request to stop at the next iteration boundary (so
    the last checkpoint holds a consistent state); a second one interrupts at once. SIGHUP is what a
    closed terminal or a dropped ssh session sends: it must not cost the steps since the last checkpoint."""

    # SIGUSR1/SIGUSR2: SLURM's warning before a time limit (sbatch --signal; submitit): rlrun.cluster requeues.
    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)

    def __init__(self):
        self.requested = False
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        cluster.note_signal(signum)
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class RunDirLock:
    """An exclusive lock on a run directory, held while a process trains into it: a second process
    (two resumes of one run) stops with one line naming the holder. flock is released by the kernel
    when the holder dies, so a killed run never leaves a stale lock."""

    def __init__(self, run_dir: Path):
        self.path = run_dir / ".rlrun.lock"
        self.fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(f"run directory {self.path.parent} is in use by another rlrun process "
                              f"(pid {holder}); wait for it to finish or stop it first") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor releases the flock
            self.fd = None

    def wait_until_free(self, deadline: float) -> bool:
        """Wait until no process trains into the run directory (nobody holds its lock, or it has none);
        False if one still does at `deadline` (time.monotonic())."""
        while True:
            try:
                fd = os.open(self.path, os.O_RDONLY)
            except FileNotFoundError:
                return True
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
            finally:
                os.close(fd)
            time.sleep(0.1)


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
    checkpoint.write_text(path, json.dumps(strict, indent=2, allow_nan=False) + "\n")


def remove_leftover_temp_files(run_dir: Path) -> None:
    """Temporary files of atomic writes that a killed process left behind (`.last.pt.<pid>.tmp`)."""
    for folder in (run_dir, run_dir / "checkpoints", run_dir / ".hydra"):
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)


def non_finite_tensors(state, prefix: str = "") -> list[str]:
    """Names of the floating-point tensors in a (nested) state dict that hold a NaN or an infinity."""
    if isinstance(state, torch.Tensor):
        return [prefix] if state.is_floating_point() and not bool(torch.isfinite(state).all()) else []
    if isinstance(state, dict):
        items = state.items()
    elif isinstance(state, (list, tuple)):
        items = enumerate(state)
    else:
        return []
    return [name for key, value in items for name in non_finite_tensors(value, f"{prefix}.{key}".lstrip("."))]


@dataclass
class Evaluation:
    """What one evaluation measured, per episode and, for an algorithm with a value estimate, per state."""
    returns: list[float]             # undiscounted, as the env paid them (eval/mean_return)
    lengths: list[int]
    discounted_returns: list[float]  # sum_t gamma^t r_t of each episode, raw rewards, gamma = the algorithm's
    values: ValueCheck | None        # max_a Q against the actual return-to-go (rlrun.returns); None without Q


def evaluate(algo, eval_env: VecEnv, train_env: VecEnv, episodes: int, seed: int) -> Evaluation:
    """`episodes` episodes of the deterministic policy, observations normalised with the training
    statistics frozen; the same seed every time, so evaluations are comparable (and rlrun-eval replays them).

    An algorithm with `act_with_q_values(obs)` (the DQN family: its evaluation actions and Q(s, .) from
    one forward pass) also has its value estimate checked against the
    discounted return it actually collects (van Hasselt et al. 2016, Figure 3; rlrun.returns says which
    states count). Those returns are in the learner's terms: episodes end at its terminals (a lost life
    under the Atari "nature" protocol) and rewards are what it learns from (normalised with the frozen
    statistics, sign(r) with algo.clip_reward), while `discounted_returns` are whole games in raw rewards."""
    if eval_env.num_envs != 1:
        raise ValueError(f"evaluate() steps one env (got {eval_env.num_envs}): episodes must finish in order")
    gamma = train_env.gamma  # the algorithm's cfg.gamma, which the training env was built with
    act_with_q_values = getattr(algo, "act_with_q_values", None)
    clip_reward = bool(getattr(getattr(algo, "cfg", None), "clip_reward", False))
    normalizers = train_env.state_dict()
    eval_env.load_state_dict({"obs_rms": normalizers["obs_rms"], "return_rms": normalizers["return_rms"]})
    obs = eval_env.reset(seed=seed)
    returns: list[float] = []
    lengths: list[int] = []
    discounted: list[float] = []
    game_return, discount = 0.0, 1.0
    segments: list[Segment] = []
    max_q: list[float] = []
    rewards: list[float] = []
    while len(returns) < episodes:
        if act_with_q_values is not None:
            actions, q = act_with_q_values(obs)
            max_q.append(float(q[0].max()))
        else:
            actions = algo.act(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = eval_env.step(actions)
        game_return += discount * float(eval_env.raw_reward[0])
        discount *= gamma
        if act_with_q_values is not None:
            rewards.append(float(np.sign(reward[0]) if clip_reward else reward[0]))
            if terminated[0] or truncated[0]:
                segments.append(Segment(max_q, rewards, truncated=bool(truncated[0] and not terminated[0])))
                max_q, rewards = [], []
        finished_returns, finished_lengths = eval_env.pop_episodes()
        if finished_returns:  # the game is over (not only a life lost): one episode of the records
            returns += finished_returns
            lengths += finished_lengths
            discounted.append(game_return)
            game_return, discount = 0.0, 1.0
    return Evaluation(returns[:episodes], lengths[:episodes], discounted[:episodes],
                      value_check(segments, gamma) if act_with_q_values is not None else None)


def run(cfg: DictConfig, run_dir: Path | None = None, algo_name: str | None = None, env_name: str | None = None,
        on_eval: Callable[[int, float], bool] | None = None) -> float:
    """Train one run to its budget; returns the final mean evaluation return.

    Without `run_dir`, the run directory and the algo/env names come from Hydra (the `rlrun` task), and
    the composed config is saved under .hydra/ once it has been accepted. `on_eval(step, mean_return)`
    is called after each evaluation; returning True stops the run there (a tuner's pruning).
    """
    hydra_files = tuned = None
    if run_dir is None:
        from hydra.core.hydra_config import HydraConfig

        hydra_cfg = HydraConfig.get()
        run_dir = Path(hydra_cfg.runtime.output_dir)
        algo_name, env_name = hydra_cfg.runtime.choices["algo"], hydra_cfg.runtime.choices["env"]
        tuned = applied_tuned_file(hydra_cfg)
        # As Hydra writes them: unresolved (iterating a ListConfig would resolve `${oc.env:TOKEN}` into the file).
        hydra_files = {"config.yaml": cfg, "hydra.yaml": OmegaConf.create({"hydra": hydra_cfg}),
                       "overrides.yaml": OmegaConf.create(OmegaConf.to_container(hydra_cfg.overrides.task,
                                                                                 resolve=False))}
    cluster.prepare(cfg, Path(run_dir))  # a requeued SLURM job resumes its run directory
    evaluations = experiment(cfg, Path(run_dir), algo_name, env_name, hydra_files, tuned)
    mean_return = math.nan
    try:
        while True:
            step, mean_return = next(evaluations)
            if on_eval is not None and on_eval(step, mean_return):
                evaluations.close()
                return mean_return
    except StopIteration as finished:
        return finished.value
    except KeyboardInterrupt:
        cluster.after_stop(Path(run_dir), int(cfg.max_requeues))  # SLURM's time-limit warning: requeue
        raise


def applied_tuned_file(hydra_cfg) -> str | None:
    """The tuned file (`- optional tuned: ${algo}_${env}`) that Hydra found on its search path, if any:
    the choice is recorded whether or not the optional file exists."""
    name = hydra_cfg.runtime.choices.get("tuned")
    for source in hydra_cfg.runtime.config_sources if name else ():
        if source.schema == "file":
            path = Path(source.path) / "tuned" / f"{name}.yaml"
            if path.is_file():
                return str(path)
        elif source.schema == "pkg":
            from importlib import resources

            try:
                if resources.files(source.path).joinpath("tuned", f"{name}.yaml").is_file():
                    return f"pkg://{source.path}/tuned/{name}.yaml"
            except ModuleNotFoundError:
                continue
    return None


def warn_if_no_update(algo_cfg, total_steps: int) -> None:
    """A budget that cannot reach the algorithm's first update trains nothing: say so at the start."""
    learning_starts = getattr(algo_cfg, "learning_starts", None)
    if learning_starts is not None and learning_starts >= total_steps:
        log.warning("algo.learning_starts=%s >= total_steps=%s: the run acts at random and makes no update; "
                    "lower algo.learning_starts or raise total_steps", f"{learning_starts:,}", f"{total_steps:,}")
    num_steps = getattr(algo_cfg, "num_steps", None)
    rollout = getattr(algo_cfg, "num_envs", 1) * num_steps if num_steps is not None else 0
    if rollout > total_steps:
        log.warning("one rollout (algo.num_envs * algo.num_steps = %s steps) is longer than total_steps=%s: the run "
                    "takes %s steps for a single update; lower algo.num_steps or raise total_steps",
                    f"{rollout:,}", f"{total_steps:,}", f"{rollout:,}")


SDE_ALGORITHMS = ("ppo", "ppo_kl", "a2c", "trpo")  # the on-policy algorithms with gSDE (algo.use_sde)


def check_config(cfg: DictConfig, algo_name: str, env_name: str):
    """Every check of the user's input that needs no file of the run directory."""
    unknown = [key for key in cfg if key not in (*GROUP_KEYS, *RUN_KEYS)]
    if unknown:
        raise ConfigError(f"unknown top-level key '{unknown[0]}'; valid keys: {', '.join(RUN_KEYS)} "
                          f"and the groups {', '.join(GROUP_KEYS)}")
    settings = from_config(RunConfig, {k: cfg[k] for k in RUN_KEYS if k in cfg}, "config")
    env_cfg = env_config(cfg.env)
    net_cfg = network_config(cfg.network)
    hw = hardware.resolve(cfg.hardware)
    log_cfg = logger_config(cfg.logger)
    algo_cls = get_class(cfg.algo._target_)
    observation_space, action_space = spaces_of(env_cfg)
    kind = action_space_kind(action_space)
    if cfg.algo.get("use_sde") is True and not (algo_name in SDE_ALGORITHMS and kind == "continuous"):
        raise ConfigError(f"algo.use_sde=true: gSDE explores continuous actions of {', '.join(SDE_ALGORITHMS)} "
                          f"(got algo={algo_name}, {env_name}'s {kind} actions); drop algo.use_sde")
    algo_cfg = algo_cls.parse_config({k: v for k, v in cfg.algo.items() if k != "_target_"})
    check_spaces(algo_cls, algo_name, env_name, observation_space, action_space, algorithms_for)
    return settings, env_cfg, net_cfg, hw, log_cfg, algo_cls, algo_cfg


def experiment(cfg: DictConfig, run_dir: Path, algo_name: str, env_name: str,
               hydra_files: dict | None = None, tuned: str | None = None) -> Generator[tuple[int, float], None, float]:
    """One run as a generator: yields (global_step, mean evaluation return) after each evaluation and
    returns the final mean evaluation return. Closing it early stops the run as Ctrl-C does (last.pt
    and summary.json written, `stopped_early` recorded)."""
    mask_log_lines()
    settings, env_cfg, net_cfg, hw, log_cfg, algo_cls, algo_cfg = check_config(cfg, algo_name, env_name)
    if settings.resume:
        resumed = load_resumable(settings, run_dir, algo_name, env_name)
    else:
        resumed = None
        if (run_dir / "checkpoints" / "last.pt").exists():
            raise ConfigError(f"{run_dir} already holds a run: continue it with resume={run_dir}, or choose "
                              "another hydra.run.dir")
    start_step = resumed["global_step"] if resumed else 0
    if resumed:
        runner_state = resumed["runner"]
        # The schedules' horizon (learning-rate annealing, epsilon decay) stays that of the run, whatever the
        # new budget; a user extends it only by passing schedule_steps=N explicitly.
        runner_state.setdefault("schedule_steps", resumed["config"]["total_steps"])
        if settings.schedule_steps is not None:
            runner_state["schedule_steps"] = settings.schedule_steps
    else:
        runner_state = {"wandb_id": new_run_id(), "best_return": -math.inf, "wall_seconds": 0.0,
                        "schedule_steps": settings.schedule_steps or settings.total_steps}

    # Build everything before the first write, so that a checkpoint that does not fit this config (another
    # network shape, a truncated file) is refused with the run directory untouched.
    hardware.apply(hw)
    seed_everything(settings.seed)
    gamma = getattr(algo_cfg, "gamma", 0.99)
    num_envs = getattr(algo_cfg, "num_envs", 1)
    train_env = VecEnv(env_cfg, num_envs, settings.seed, hw.vector_backend, gamma)
    eval_env = VecEnv(env_cfg, 1, settings.seed + settings.eval.seed_offset, "sync", gamma, training=False)
    lock = RunDirLock(run_dir)
    logger = None
    try:
        algo = algo_cls(algo_cfg, train_env, net_cfg, hw, settings.seed, runner_state["schedule_steps"])
        if resumed:
            try:
                algo.load_state_dict(resumed["algo"])
                train_env.load_state_dict(resumed["env"])
            except (RuntimeError, KeyError, ValueError, TypeError) as error:
                raise ConfigError(f"resume={settings.resume}: its checkpoint does not fit this config "
                                  f"({str(error).splitlines()[0]}); resume with the config it was made with") from None

        lock.acquire()
        remove_leftover_temp_files(run_dir)
        if hydra_files is not None:
            (run_dir / ".hydra").mkdir(parents=True, exist_ok=True)
            for name, node in hydra_files.items():
                checkpoint.write_text(run_dir / ".hydra" / name, mask_url_passwords(OmegaConf.to_yaml(node)))
        write_manifest(run_dir, settings, hw, train_env.backend, runner_state["wandb_id"], resumed is not None)
        run_config = recordable_config(cfg)
        logger = Logger(log_cfg, run_dir, run_config, settings.total_steps, start_step, runner_state["wandb_id"],
                        resuming=resumed is not None)
        warn_if_no_update(algo_cfg, settings.total_steps)
        log.info("%s algo=%s on %s (env=%s%s), seed %d, %s: %s steps%s (budgets round up to whole iterations); "
                 "run directory %s", "resuming" if resumed else "training", algo_name, env_cfg.id, env_name,
                 f", tuned file {tuned}" if tuned else "", settings.seed, hw.device,
                 f"{settings.total_steps:,}", f" from step {start_step:,}" if resumed else "", run_dir)
        log.info("hardware: %s", hardware.plan(hw, algo_cls, algo_cfg))
        return (yield from train(settings, run_dir, algo_name, env_name, env_cfg, algo, train_env, eval_env, logger,
                                 runner_state, run_config, start_step))
    finally:
        if logger is not None:
            logger.close()
        train_env.close()
        eval_env.close()
        lock.release()


class Schedule:
    """Something done every `every` steps (0: never), at the first iteration at or past each multiple."""

    def __init__(self, every: int, step: int):
        self.every = every
        self.advance(step)

    def due(self, step: int) -> bool:
        return step >= self.next

    def advance(self, step: int) -> None:
        self.next = (step // self.every + 1) * self.every if self.every > 0 else math.inf


class Training:
    """What the training loop keeps between iterations, and each of its steps as a named method: take an
    iteration's metrics (NaN guard, logging), evaluate (video, best.pt), checkpoint (last.pt and
    summary.json). `train` below is the loop that calls them."""

    def __init__(self, settings: RunConfig, run_dir: Path, algo_name: str, env_name: str, env_cfg, algo,
                 train_env: VecEnv, eval_env: VecEnv, logger: Logger, runner_state: dict, run_config: dict,
                 start_step: int):
        self.settings, self.run_dir, self.algo_name, self.env_name, self.env_cfg = (settings, run_dir, algo_name,
                                                                                    env_name, env_cfg)
        self.algo, self.train_env, self.eval_env, self.logger = algo, train_env, eval_env, logger
        self.runner_state, self.run_config, self.start_step = runner_state, run_config, start_step
        self.ckpt_dir = run_dir / "checkpoints"
        self.last_good_step = start_step if start_step else None  # of checkpoints/last.pt
        self.step = start_step
        self.evaluations = Schedule(settings.eval.every_steps, start_step)
        self.videos = Schedule(settings.eval.video_every_steps, start_step)
        self.checkpoints = Schedule(settings.checkpoint.every_steps, start_step)
        self.last_eval: list[float] | None = None
        self.interrupted = self.stopped_early = self.warned_divergence = False
        # How the run ended, for summary.json: running (a periodic checkpoint's summary, which a killed run
        # keeps), completed, interrupted (a stop request, or the driver stopped it early) or failed (`error`).
        self.status, self.error = "running", None
        # What the progress bar and log lines show; in the checkpoint, so a resumed run shows the same.
        self.recent_returns: deque[float] = deque(runner_state.get("recent_returns", []), maxlen=20)
        self.wall_start = time.perf_counter()
        self.train_seconds = 0.0
        self.iteration_start = self.iteration_elapsed = 0.0

    # --- one iteration's metrics -------------------------------------------------------------------

    def take_iteration(self, metrics: dict) -> None:
        """Account for one iteration of the algorithm: stop on a NaN, then log its metrics."""
        iteration_seconds = time.perf_counter() - self.iteration_start
        self.train_seconds += iteration_seconds
        previous_step, self.step = self.step, metrics.pop("global_step")
        returns, lengths = metrics.pop("episodic_returns"), metrics.pop("episodic_lengths")
        self.guard_against_nan(metrics, returns)
        self.recent_returns.extend(returns)
        self.iteration_elapsed = elapsed = self.elapsed()
        self.logger.log_episodes("train", self.step, returns, lengths, elapsed)
        self.logger.log_train(self.step, {
            "train/episodic_return": float(np.mean(returns)) if returns else math.nan,
            "train/episodic_length": float(np.mean(lengths)) if lengths else math.nan,
            **metrics,
            "time/sps": (self.step - previous_step) / max(iteration_seconds, 1e-9),
            "time/elapsed": elapsed},
            recent_return=float(np.mean(self.recent_returns)) if self.recent_returns else math.nan)

    def guard_against_nan(self, metrics: dict, returns: list[float]) -> None:
        """A NaN or infinity from the env, or a NaN loss, stops the run (the last good checkpoint is kept);
        a huge loss warns once. The env is checked first: a NaN reward or observation reaches the losses."""
        produced = self.env_non_finite(returns)
        if produced is not None:
            raise RunError(f"the env {self.env_cfg.id} returned a non-finite {produced} (NaN or infinity) by step "
                           f"{self.step:,}; stopping: {self.kept('good')}; check the env's step()")
        losses = {k: v for k, v in metrics.items() if "loss" in k and isinstance(v, float)}
        bad = [k for k, v in losses.items() if math.isnan(v)]
        if bad:
            raise RunError(f"{', '.join(bad)} became NaN at step {self.step:,} (no NaN seen in the env's rewards or "
                           f"observations); stopping: {self.kept('good')}")
        diverged = [k for k, v in losses.items() if abs(v) > DIVERGED_LOSS]
        if diverged and not self.warned_divergence:
            self.warned_divergence = True
            log.warning("the run looks diverged at step %s: %s = %.3g (check the learning rate)",
                        f"{self.step:,}", diverged[0], losses[diverged[0]])

    def env_non_finite(self, returns: list[float]) -> str | None:
        """"reward" or "observation" if the training env produced a NaN or infinity there, as far as what it
        keeps shows: every reward adds to its episode's return (finished or running) and to the return
        statistics, every observation to the observation statistics; the current observations too."""
        env = self.train_env

        def finite(*arrays) -> bool:
            return all(np.isfinite(np.asarray(a, dtype=float)).all() for a in arrays if a is not None)

        if not finite(returns, getattr(env, "episode_return", None)):
            return "reward"
        for name, rms in (("observation", getattr(env, "obs_rms", None)), ("reward", getattr(env, "return_rms", None))):
            if not finite(getattr(rms, "mean", None), getattr(rms, "var", None)):
                return name
        current = getattr(getattr(env, "envs", None), "obs", None)  # the sync backend's current observations
        if isinstance(current, np.ndarray) and current.dtype.kind == "f" and not finite(current):
            return "observation"
        return None

    def kept(self, adjective: str) -> str:
        """What a stopped run keeps: the last checkpoint written, if any."""
        if self.last_good_step is None:
            return "no checkpoint was written"
        return f"{self.ckpt_dir / 'last.pt'} (step {self.last_good_step:,}) is the last {adjective} checkpoint"

    def elapsed(self) -> float:
        """The run's wall-clock seconds, counted across resumes."""
        return self.runner_state["wall_seconds"] + time.perf_counter() - self.wall_start

    # --- evaluation --------------------------------------------------------------------------------

    def evaluate(self) -> float:
        """Evaluate the policy, log it, record a video when one is due, keep best.pt; returns the mean return."""
        settings, step = self.settings, self.step
        # eval/elapsed: the run's wall-clock seconds when the evaluated policy was taken (before this
        # evaluation ran), counted across resumes: time to a score (Mnih et al. 2016, Fig. 3).
        elapsed = self.iteration_elapsed
        evaluation = evaluate(self.algo, self.eval_env, self.train_env, settings.eval.episodes,
                              settings.seed + settings.eval.seed_offset)
        self.last_eval = evaluation.returns
        self.logger.log_episodes("eval", step, evaluation.returns, evaluation.lengths, elapsed,
                                 evaluation.discounted_returns)
        mean_return = float(np.mean(evaluation.returns))
        eval_metrics = {"eval/mean_return": mean_return, "eval/std_return": float(np.std(evaluation.returns)),
                        "eval/mean_discounted_return": float(np.mean(evaluation.discounted_returns)),
                        "eval/elapsed": elapsed}
        if evaluation.values is not None:
            eval_metrics |= {"eval/value_estimate": evaluation.values.value_estimate,
                             "eval/return_to_go": evaluation.values.return_to_go,
                             "eval/value_states": evaluation.values.states}
        self.logger.log_eval(step, eval_metrics, settings.total_steps)
        self.evaluations.advance(step)
        if self.videos.due(step):
            self.record_video()
        if mean_return > self.runner_state["best_return"]:
            self.runner_state["best_return"] = mean_return
            self.save("best.pt")
        return mean_return

    def record_video(self) -> None:
        from rlrun.envs.video import record_training_video

        settings = self.settings
        video = record_training_video(self.algo, self.train_env, self.env_cfg, self.run_dir, self.step,
                                      settings.seed + settings.eval.seed_offset, self.logger,
                                      settings.eval.video_frames, settings.eval.video_size)
        log.info("video of one evaluation episode: %s (%d frames)", video["path"], video["frames"])
        self.videos.advance(self.step)

    # --- checkpoints and the summary ---------------------------------------------------------------

    def checkpoint_last(self) -> None:
        """checkpoints/last.pt (and summary.json), with the wall-clock time so far."""
        self.runner_state["wall_seconds"] += time.perf_counter() - self.wall_start
        self.wall_start = time.perf_counter()
        self.save("last.pt")
        self.checkpoints.advance(self.step)

    def save(self, name: str) -> None:
        algo_state = self.algo.state_dict()
        if name != "last.pt" or not self.settings.checkpoint.replay:
            # An off-policy algorithm's replay buffer (key "replay") is large: kept only when asked for, and
            # only in last.pt, which a resume reads; best.pt is for evaluation (load_policy ignores a replay).
            algo_state.pop("replay", None)
        # A diverged update can leave NaN weights while the losses reported before it were finite: such a
        # state must never replace the last good checkpoint (resuming it would only hit the NaN again).
        bad = non_finite_tensors({k: v for k, v in algo_state.items() if k != "replay"})
        if bad:
            raise RunError(f"non-finite values in {', '.join(bad[:3])} at step {self.step:,}; stopping: "
                           f"{self.kept('finite')}")
        self.runner_state["recent_returns"] = list(self.recent_returns)
        path = self.ckpt_dir / name
        if name == "last.pt":
            # Before last.pt, so that a kill between the two leaves a summary newer than last.pt, never older.
            self.write_summary()
        try:
            checkpoint.save({"algo_name": self.algo_name, "env_name": self.env_name, "env_id": self.env_cfg.id,
                             "global_step": self.step, "algo": algo_state, "env": self.train_env.state_dict(),
                             "runner": dict(self.runner_state), "config": self.run_config}, path)
        except (OSError, RuntimeError) as error:  # torch.save reports a full disk as a RuntimeError
            reason = getattr(error, "strerror", None) or str(error).splitlines()[0]
            raise RunError(f"cannot write {path} ({reason}); the previous {name}, if any, is kept: "
                           "free disk space, then resume the run") from None
        if name == "last.pt":
            self.last_good_step = self.step

    def write_summary(self) -> None:
        last_eval, step = self.last_eval, self.step
        try:
            write_json(self.run_dir / "summary.json", {
                "algo": self.algo_name, "env": self.env_name, "env_id": self.env_cfg.id, "seed": self.settings.seed,
                "final_eval_mean_return": float(np.mean(last_eval)) if last_eval else math.nan,
                "final_eval_std_return": float(np.std(last_eval)) if last_eval else math.nan,
                "best_eval_mean_return": self.runner_state["best_return"], "total_steps": step,
                "wall_seconds": self.runner_state["wall_seconds"],
                "steps_per_second": (step - self.start_step) / max(self.train_seconds, 1e-9),
                "status": self.status, **({"error": self.error} if self.error else {}),
                "interrupted": self.interrupted, "stopped_early": self.stopped_early})
        except OSError as error:
            raise RunError(f"cannot write {self.run_dir / 'summary.json'}: {error.strerror or error}") from None

    def record_failure(self, error: Exception) -> Exception:
        """Record a failed run; returns the error to report: a RunError naming the env's output when the
        algorithm choked on a NaN the env returned (the logits of a NaN observation), else `error` itself."""
        produced = None if isinstance(error, RunError) else self.env_non_finite([])
        if produced is not None:
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            error = RunError(f"the env {self.env_cfg.id} returned a non-finite {produced} (NaN or infinity) after "
                             f"step {self.step:,}, and then {type(error).__name__}: {first}; stopping: "
                             f"{self.kept('good')}; check the env's step()")
        self.record_end("failed", error)
        return error

    def record_end(self, status: str, error: BaseException | None = None) -> None:
        """summary.json says how a run that stopped by an exception ended (failed, with the error in one line;
        interrupted by a second Ctrl-C); a summary that cannot be written leaves the error to be reported."""
        self.status = status
        if error is not None:
            text = str(error).strip().splitlines()[0] if str(error).strip() else ""
            self.error = text if isinstance(error, RunError) else f"{type(error).__name__}: {text}".rstrip(": ")
        try:
            self.write_summary()
        except RunError:
            pass


def train(settings: RunConfig, run_dir: Path, algo_name: str, env_name: str, env_cfg, algo, train_env: VecEnv,
          eval_env: VecEnv, logger: Logger, runner_state: dict, run_config: dict,
          start_step: int) -> Generator[tuple[int, float], None, float]:
    """The training loop of `experiment`, once everything is built and the run directory is locked:
    each iteration is taken (NaN guard, logging), evaluated when due or at the end, checkpointed when due
    or at the end; a stop request (rlrun.run.StopRequest) ends it at the iteration boundary, with a checkpoint."""
    run = Training(settings, run_dir, algo_name, env_name, env_cfg, algo, train_env, eval_env, logger,
                   runner_state, run_config, start_step)
    learning = algo.learn()
    try:
        with StopRequest() as stop:
            run.iteration_start = time.perf_counter()
            for metrics in learning:
                run.take_iteration(metrics)
                done = run.step >= settings.total_steps or stop.requested
                run.interrupted = stop.requested
                run.status = "interrupted" if stop.requested else "completed" if done else "running"
                if run.evaluations.due(run.step) or (done and not stop.requested):
                    mean_return = run.evaluate()
                    if not done:
                        try:
                            yield run.step, mean_return
                        except GeneratorExit:
                            # The driver stops the run here (a pruned trial): keep it resumable.
                            run.stopped_early = True
                            run.status = "interrupted"
                            run.checkpoint_last()
                            return mean_return
                if run.checkpoints.due(run.step) or done:
                    run.checkpoint_last()
                if done:
                    break
                run.iteration_start = time.perf_counter()
    except KeyboardInterrupt:  # a second Ctrl-C: at once, without a checkpoint
        run.interrupted = True
        run.record_end("interrupted")
        raise
    except Exception as error:  # a NaN, a full disk, an env that raised: the last good checkpoint is kept
        reported = run.record_failure(error)
        if reported is not error:
            raise reported from None
        raise
    finally:
        learning.close()

    final_return = float(np.mean(run.last_eval)) if run.last_eval else math.nan
    if run.interrupted:
        raise KeyboardInterrupt(f"stopped at step {run.step:,}; resume with: rlrun resume={run_dir}")
    log.info("done: %s steps, final eval return %.1f; run directory %s", f"{run.step:,}", final_return, run_dir)
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
    try:
        state = checkpoint.load(last)
    except Exception as error:  # a truncated, empty or foreign file: torch raises many kinds
        raise ConfigError(f"resume={settings.resume}: {last} cannot be read ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else 'empty or truncated'}); "
                          "it was not written by a finished checkpoint save") from None
    if (state["algo_name"], state["env_name"]) != (algo_name, env_name):
        raise ConfigError(f"resume={settings.resume} holds a run of algo={state['algo_name']} "
                          f"env={state['env_name']}, not algo={algo_name} env={env_name}")
    if state["global_step"] >= settings.total_steps:
        raise ConfigError(f"resume={settings.resume} already reached {state['global_step']:,} steps; "
                          f"pass a larger total_steps (got {settings.total_steps:,})")
    return state


def write_manifest(run_dir: Path, settings: RunConfig, hw: hardware.Hardware, vector_backend: str, wandb_id: str,
                   resuming: bool) -> None:
    """`vector_backend`: the backend that steps the training envs, which is sync where envpool was
    asked for and cannot run the env (the manifest then keeps what was asked for beside it)."""
    path = run_dir / "manifest.json"
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    invocation = {"command": mask_url_passwords(" ".join(sys.argv)), "time": now, "git_commit": git_commit()}
    manifest = None
    if resuming and path.exists():
        try:
            manifest = json.loads(path.read_text())
        except (OSError, ValueError):
            log.warning("manifest.json of %s could not be read; writing a new one", run_dir)
    if manifest is not None:
        manifest.setdefault("resumed", []).append(invocation)
    else:
        described = hardware.describe(hw)
        if vector_backend != hw.vector_backend:
            described.update(vector_backend=vector_backend, vector_backend_asked=hw.vector_backend)
        manifest = {**invocation, "seed": settings.seed, "wandb_run_id": wandb_id,
                    "packages": package_versions(), "hardware": described}
    try:
        write_json(path, manifest)
    except OSError as error:
        raise RunError(f"cannot write {path}: {error.strerror or error}") from None
