"""The tuner: an Optuna study whose trials are rlrun runs, K seeds each, pruned on their mean.

    rlrun-tune algo=ppo env=CartPole [tune.n_trials=N tune.seeds=K tune.n_workers=W ...] [rlrun overrides]

- The search space is data: conf/tune/<algo>.yaml maps config keys to distributions. Each trial
  composes the config through Hydra exactly as `rlrun` does (the same defaults list, so the tuned file
  conf/tuned/<algo>_<Env>.yaml and every override apply), with the sampled values as overrides.
- A trial trains its K seeds side by side in this process: `run.experiment` is a generator that stops
  at each evaluation, so the K runs advance in lockstep and the pruner sees the mean return of all
  seeds at every evaluation (RL Zoo prunes one unseeded run; CleanRL's tuner prunes between seeds).
- Its value is the mean (or IQM) of the seeds' final evaluation returns. A NaN or crash fails the trial,
  not the study; a pruned trial's runs stop with their last checkpoint written.
- The study lives in a storage that any number of workers join (Optuna's `load_if_exists`): a journal
  file by default, an RDB URL (PostgreSQL) for many machines; rlrun.tune_storage opens it and recovers
  the trials of dead workers (heartbeats). Rerunning the same command resumes it: only the missing
  trials run.
- Outputs in the study directory: best.yaml (a ready conf/tuned file), trials.csv, history and
  importance plots, the storage, and each trial's run directories under trials/.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf

from rlrun.checkpoint import write_text
from rlrun.config import NON_NEGATIVE, POSITIVE, ConfigError, check_folder_name, from_config, one_of, rule
from rlrun.tune_storage import StudyStorage, counted, enqueue_retry, mask_argv, retried_numbers
from rlrun.resources import CONF_DIR  # the package rlrun.conf: the repository's conf/, installed
TUNE_DIR = CONF_DIR / "tune"
# Override keys that choose how a run is executed or logged, not what it learns: left out of best.yaml.
NOT_TUNED = ("seed", "resume", "logger", "hardware", "checkpoint", "hydra", "algo", "env", "network")
GROUPS = ("algo", "env", "network", "hardware", "logger")


@dataclass
class TuneConfig:
    n_trials: int = rule(POSITIVE)
    seeds: int = rule(POSITIVE)
    objective: str = rule(one_of("mean", "iqm"))
    n_workers: int = rule(POSITIVE)
    pruner: str = rule(one_of("median", "halving", "hyperband", "none"))
    pruner_startup_trials: int = rule(NON_NEGATIVE)
    pruner_warmup_steps: int = rule(NON_NEGATIVE)
    sampler: str = rule(one_of("tpe", "random"))
    sampler_startup_trials: int = rule(NON_NEGATIVE)
    sampler_seed: int | None
    study_name: str | None
    dir: str | None
    storage: str | None
    space: str | None
    heartbeat_s: int = rule(POSITIVE)
    grace_s: int = rule(POSITIVE)


def tune_config(overrides: dict[str, Any]) -> TuneConfig:
    settings = OmegaConf.to_container(OmegaConf.load(TUNE_DIR / "settings.yaml"))
    unknown = [key for key in overrides if key not in settings]
    if unknown:
        raise ConfigError(f"unknown key 'tune.{unknown[0]}'; valid keys: {', '.join(settings)} "
                          "(see conf/tune/settings.yaml)")
    return from_config(TuneConfig, {**settings, **overrides}, "tune")


# ---------------------------------------------------------------------------------------------------
# Search spaces: conf/tune/<algo>.yaml, config key -> distribution


@dataclass
class Distribution:
    key: str
    type: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list | None = None

    def labels(self) -> list:
        """Categorical choices as Optuna stores them: lists (network sizes) as their JSON text."""
        return [json.dumps(c) if isinstance(c, (list, dict)) else c for c in self.choices]

    def suggest(self, trial) -> Any:
        if self.type == "float":
            return trial.suggest_float(self.key, self.low, self.high, log=self.log, step=self.step)
        if self.type == "int":
            return trial.suggest_int(self.key, self.low, self.high, log=self.log, step=self.step or 1)
        return self.value(trial.suggest_categorical(self.key, self.labels()))

    def value(self, param: Any) -> Any:
        """The config value of a parameter as Optuna stores it."""
        if self.type == "categorical":
            return self.choices[self.labels().index(param)]
        return param

    def extremes(self) -> list:
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


def load_space(algo_name: str, path: str | None = None) -> tuple[str, list[Distribution]]:
    """The search space of tune.space (a file) or conf/tune/<algo>.yaml; returns its name for messages."""
    if path is not None:
        where = path
        if not Path(path).is_file():
            raise ConfigError(f"tune.space={path}: no such file")
    else:
        where = f"conf/tune/{algo_name}.yaml"
        path = TUNE_DIR / f"{algo_name}.yaml"
        if not path.is_file():
            known = sorted(p.stem for p in TUNE_DIR.glob("*.yaml") if p.stem != "settings")
            raise ConfigError(f"no search space for algo={algo_name}: write {where} "
                              f"(spaces exist for: {', '.join(known)}) or pass tune.space=<file>")
    space = OmegaConf.to_container(OmegaConf.load(path))
    if not isinstance(space, dict) or not space:
        raise ConfigError(f"{where}: a search space maps config keys to distributions; this file holds none")
    return where, [parse_distribution(where, key, spec) for key, spec in space.items()]


def parse_distribution(where: str, key: str, spec: Any) -> Distribution:
    """One entry, every problem reported as one line naming the file and key."""
    if not isinstance(spec, dict) or spec.get("type") not in ("float", "int", "categorical"):
        raise ConfigError(f"{where}: {key} must be {{type: float|int|categorical, ...}} (got {spec!r})")
    fields = {"float": {"type", "low", "high", "log", "step"}, "int": {"type", "low", "high", "log", "step"},
              "categorical": {"type", "choices"}}[spec["type"]]
    extra = sorted(set(spec) - fields)
    if extra:
        raise ConfigError(f"{where}: {key}: unknown field '{extra[0]}' for type {spec['type']}; "
                          f"valid fields: {', '.join(sorted(fields))}")
    dist = Distribution(key=key, **spec)
    if dist.type == "categorical":
        if not isinstance(dist.choices, list) or not dist.choices:
            raise ConfigError(f"{where}: {key}: choices must be a non-empty list (got {dist.choices!r})")
        if len(set(map(str, dist.labels()))) != len(dist.choices):
            raise ConfigError(f"{where}: {key}: choices repeat a value ({dist.choices})")
        return dist
    number = int if dist.type == "int" else (int, float)
    for name in ("low", "high"):
        value = getattr(dist, name)
        if not isinstance(value, number) or isinstance(value, bool):
            raise ConfigError(f"{where}: {key}: {name} must be {'an int' if number is int else 'a number'} "
                              f"(got {value!r})")
    if not dist.low < dist.high:
        raise ConfigError(f"{where}: {key}: low must be below high (got low={dist.low}, high={dist.high})")
    if dist.log and dist.low <= 0:
        raise ConfigError(f"{where}: {key}: a log scale needs low > 0 (got low={dist.low})")
    if dist.step is not None and (dist.log or not dist.step > 0):
        raise ConfigError(f"{where}: {key}: step must be > 0 and cannot go with log: true (got step={dist.step})")
    if dist.type == "float":
        dist.low, dist.high = float(dist.low), float(dist.high)
    return dist


def override(key: str, value: Any) -> str:
    """`key=value` in Hydra's override grammar, for any YAML value."""
    def text(v: Any) -> str:
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, (list, tuple)):
            return "[" + ",".join(text(item) for item in v) + "]"
        return "'" + str(v).replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{key}={text(value)}"


# ---------------------------------------------------------------------------------------------------
# Composing trials' configs


@dataclass
class Target:
    """What is tuned: the algorithm and env choices and the user's other rlrun overrides."""
    algo: str
    env: str
    overrides: list[str]

    def compose(self, extra: list[str] = ()) -> DictConfig:
        from hydra import compose, initialize_config_dir

        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
            return compose("config", overrides=[f"algo={self.algo}", f"env={self.env}", *self.overrides, *extra])


def check_space(target: Target, where: str, space: list[Distribution]) -> DictConfig:
    """Before any trial: the user's config, every key of the space, and each end of every range (each
    choice) as rlrun would check it. Returns the composed base config."""
    from rlrun.run import check_config

    base = target.compose()
    check_config(base, target.algo, target.env)
    for dist in space:
        if OmegaConf.select(base, dist.key, default=ConfigError) is ConfigError:
            parent, _, _ = dist.key.rpartition(".")
            node = OmegaConf.select(base, parent) if parent else base
            valid = ", ".join(f"{parent}.{k}" if parent else k for k in node) if isinstance(node, DictConfig) else ""
            raise ConfigError(f"{where}: unknown key '{dist.key}' for algo={target.algo} "
                              f"env={target.env}" + (f"; valid keys: {valid}" if valid else ""))
        for value in dist.extremes():
            try:
                check_config(target.compose([override(dist.key, value)]), target.algo, target.env)
            except ConfigError as error:
                raise ConfigError(f"{where}: {dist.key} = {value!r} (an end of its range) "
                                  f"is refused: {error}") from None
    return base


# ---------------------------------------------------------------------------------------------------
# One trial: K seeds in lockstep


def iqm(values: list[float]) -> float:
    """Interquartile mean: the mean of the middle 50% (scipy's trim_mean(x, 0.25), as rliable)."""
    ordered = sorted(values)
    cut = int(0.25 * len(ordered))
    return float(np.mean(ordered[cut:len(ordered) - cut]))


def lockstep(runs: list):
    """Advance the runs (`run.experiment` generators) together, one evaluation at a time; yields
    (step, mean return over the runs still training) and returns the runs' final returns."""
    finals: list[float | None] = [None] * len(runs)
    live = list(range(len(runs)))
    while live:
        evaluations = []
        for i in list(live):
            try:
                evaluations.append(next(runs[i]))
            except StopIteration as finished:
                finals[i] = finished.value
                live.remove(i)
        if evaluations:
            yield max(step for step, _ in evaluations), float(np.mean([r for _, r in evaluations]))
    return finals


class Study:
    """An Optuna study of one (algo, env) target with its search space, run by this worker."""

    def __init__(self, target: Target, settings: TuneConfig, space: list[Distribution], base: DictConfig):
        import optuna

        self.target, self.settings, self.space, self.base = target, settings, space, base
        self.name = settings.study_name or f"{target.algo}_{target.env}"
        self.dir = Path(settings.dir or Path("outputs") / "tune" / self.name)
        optuna.logging.set_verbosity(optuna.logging.ERROR)  # this module prints one line per trial
        # Opened before anything is written: a storage that cannot be opened leaves no study directory.
        self.storage = StudyStorage(settings.storage, self.dir / "study.journal", settings.heartbeat_s,
                                    settings.grace_s)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.study = optuna.create_study(study_name=self.name, storage=self.storage.optuna, direction="maximize",
                                         sampler=self.make_sampler(), pruner=self.make_pruner(),
                                         load_if_exists=True)

    def make_sampler(self):
        import optuna

        if self.settings.sampler == "random":
            return optuna.samplers.RandomSampler(seed=self.settings.sampler_seed)
        # constant_liar: a worker treats the others' running trials as bad, so parallel workers spread out.
        return optuna.samplers.TPESampler(seed=self.settings.sampler_seed, constant_liar=True,
                                          n_startup_trials=self.settings.sampler_startup_trials)

    def make_pruner(self):
        import optuna

        every = int(self.base.eval.every_steps) or int(self.base.total_steps)
        total = int(self.base.total_steps)
        if self.settings.pruner == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=self.settings.pruner_startup_trials,
                                               n_warmup_steps=self.settings.pruner_warmup_steps)
        if self.settings.pruner == "halving":
            return optuna.pruners.SuccessiveHalvingPruner(min_resource=every, reduction_factor=3)
        if self.settings.pruner == "hyperband":
            return optuna.pruners.HyperbandPruner(min_resource=every, max_resource=total, reduction_factor=3)
        return optuna.pruners.NopPruner()

    # --- counting and recovering trials (rlrun.tune_storage) -------------------------------------

    def counted(self) -> int:
        return counted(self.study.get_trials(deepcopy=False))

    def recover(self) -> list[int]:
        """Fail and queue again the running trials of dead workers (their seeds restart from the
        beginning under a new trial number)."""
        return self.storage.recover(self.study)

    # --- running trials --------------------------------------------------------------------------

    def optimize(self) -> None:
        """Run trials until tune.n_trials count; then wait while other workers' trials run, as long as a
        trial of a worker that dies would be queued again for this one to run."""
        from optuna.trial import TrialState

        while True:
            self.recover()
            if self.counted() < self.settings.n_trials:
                self.run_trial()
                self.write_outputs(plots=False)  # trials.csv and best.yaml stay current while the study runs
                continue
            running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if not any(self.storage.recoverable(t) for t in running):
                return
            time.sleep(min(self.settings.heartbeat_s, 5))

    def run_trial(self) -> None:
        import optuna
        from optuna.trial import TrialState

        with warnings.catch_warnings():
            # Optuna warns that its heartbeats need study.optimize(): rlrun beats itself (rlrun.tune_storage).
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used")
            trial = self.study.ask()
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        # Two workers may ask for the last trial at once: the later number is surplus, not run, not counted.
        if counted(self.study.get_trials(deepcopy=False), below=trial.number) >= self.settings.n_trials:
            trial.set_user_attr("surplus", True)
            self.study.tell(trial, state=TrialState.FAIL)
            return
        params = {dist.key: dist.suggest(trial) for dist in self.space}
        try:
            self.run_and_tell(trial, params)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker took this trial for dead (no heartbeat for tune.grace_s: this process was
            # starved of CPU or cut off from the database) and queued it again: its retry runs it.
            self.announce(trial.number, f"given up: no heartbeat for tune.grace_s={self.settings.grace_s} s, so "
                          "another worker queued it again", params)

    def run_and_tell(self, trial, params: dict) -> None:
        import optuna
        from optuna.trial import TrialState

        try:
            with self.storage.beating(self.study, trial):
                finals = self.train(trial, params)
        except optuna.TrialPruned as pruned:
            self.study.tell(trial, state=TrialState.PRUNED)
            self.announce(trial.number, f"pruned {pruned}", params)
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM: the seeds wrote their last checkpoints; the trial is run again on resume.
            try:
                self.study.tell(trial, state=TrialState.FAIL)
                enqueue_retry(self.study, self.study.trials[trial.number])
            except optuna.exceptions.UpdateFinishedTrialError:
                pass  # already failed and queued again by another worker
            self.announce(trial.number, "interrupted (queued again for a resumed study)", params)
            raise
        except Exception as error:  # noqa: BLE001
            if isinstance(error, optuna.exceptions.UpdateFinishedTrialError):
                raise
            # A sampled combination rlrun refuses (ConfigError), a NaN loss (RunError), a crashed env or
            # logger: this trial fails, not the study. But a config that rlrun refuses without the
            # sampled values (conf/ edited since the study started) would fail every trial: stop there.
            message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            trial.set_user_attr("error", message)
            self.study.tell(trial, state=TrialState.FAIL)
            self.announce(trial.number, f"failed: {message}", params)
            if isinstance(error, ConfigError):
                self.check_base()
        else:
            value = iqm(finals) if self.settings.objective == "iqm" else float(np.mean(finals))
            trial.set_user_attr("seed_returns", finals)
            if not math.isfinite(value):
                trial.set_user_attr("error", "non-finite return")
                self.study.tell(trial, state=TrialState.FAIL)
                self.announce(trial.number, "failed: non-finite return", params)
                return
            self.study.tell(trial, value)
            best = self.study.best_trial
            self.announce(trial.number, f"complete: {value:.1f} ({self.settings.objective} of "
                          f"{', '.join(f'{r:.1f}' for r in finals)}); best trial {best.number}: {best.value:.1f}",
                          params)

    def check_base(self) -> None:
        """Raises ConfigError if the study's config without any sampled value is refused."""
        from rlrun.run import check_config

        try:
            check_config(self.target.compose(), self.target.algo, self.target.env)
        except ConfigError as error:
            raise ConfigError(f"the study's config is refused without any sampled value, so every trial would "
                              f"fail: {error}") from None

    def trial_overrides(self, params: dict) -> list[str]:
        return [override(key, value) for key, value in params.items()]

    def train(self, trial, params: dict) -> list[float]:
        """The trial's seeds side by side; reports their mean at each evaluation; raises TrialPruned."""
        import optuna

        from rlrun.run import experiment

        cfg = self.target.compose(self.trial_overrides(params))
        runs = []
        for k in range(self.settings.seeds):
            run_cfg = copy.deepcopy(cfg)
            run_cfg.seed = int(cfg.seed) + k
            run_cfg.logger.progress_bar = False  # K bars in one terminal: the trial's line says enough
            if run_cfg.logger.get("wandb") is not None and run_cfg.logger.wandb.group is None:
                run_cfg.logger.wandb.group = f"{self.name}-trial{trial.number}"  # a trial's seeds together
            run_dir = self.dir / "trials" / f"trial{trial.number:04d}_seed{run_cfg.seed}"
            overrides = [f"algo={self.target.algo}", f"env={self.target.env}", *self.target.overrides,
                         *self.trial_overrides(params), f"seed={run_cfg.seed}"]
            runs.append(experiment(run_cfg, run_dir, self.target.algo, self.target.env,
                                   {"config.yaml": run_cfg, "overrides.yaml": OmegaConf.create(overrides)}))
        evaluations = lockstep(runs)
        # Each run installs its SIGINT/SIGTERM handler when it starts and restores the one it found when
        # it ends; runs ending in another order than they started would leave a finished run's handler.
        handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            while True:
                step, mean_return = next(evaluations)
                trial.report(mean_return, step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"at step {step:,}: mean return {mean_return:.1f}")
        except StopIteration as finished:
            return finished.value
        finally:
            # Pruned or failed: stop every seed (each writes last.pt and a summary with stopped_early).
            for run in runs:
                run.close()
            for sig, handler in handlers.items():
                signal.signal(sig, handler)

    def announce(self, number: int, outcome: str, params: dict) -> None:
        print(f"trial {number} {outcome} | " + " ".join(f"{k}={format_value(v)}" for k, v in params.items()),
              flush=True)

    # --- outputs ---------------------------------------------------------------------------------

    def write_outputs(self, plots: bool = True) -> str:
        """trials.csv, best.yaml, the plots; returns the printed summary."""
        from optuna.trial import TrialState

        trials = self.study.get_trials(deepcopy=False)
        write_trials_csv(self.dir / "trials.csv", trials, [d.key for d in self.space])
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        counts = {state: sum(t.state == state for t in trials)
                  for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
        lines = [f"study {self.name}: {len(trials)} trials ({counts[TrialState.COMPLETE]} complete, "
                 f"{counts[TrialState.PRUNED]} pruned, {counts[TrialState.FAIL]} failed) in {self.dir}"]
        if complete:
            best = self.study.best_trial
            write_text(self.dir / "best.yaml", self.best_yaml(best))
            lines.append(f"best trial {best.number}: {self.settings.objective} final return {best.value:.1f} | "
                         + " ".join(f"{d.key}={format_value(d.value(best.params[d.key]))}" for d in self.space))
            lines.append(f"tuned file: {self.dir / 'best.yaml'} -> use it with: cp {self.dir / 'best.yaml'} "
                         f"conf/tuned/{self.target.algo}_{self.target.env}.yaml")
        if plots:
            lines += self.plot(len(complete))
        lines.append(f"trials: {self.dir / 'trials.csv'}; storage: {self.storage_text()} "
                     f"(optuna-dashboard {self.storage_text()})")
        return "\n".join(lines)

    def storage_text(self) -> str:
        return self.storage.text()  # the URL without its password

    def best_yaml(self, best) -> str:
        """The best trial as a conf/tuned/<algo>_<Env>.yaml file: the tuned file's own keys, the user's
        overrides of what is learned (budget, algo/env/network values) and the sampled values."""
        params = {d.key: d.value(best.params[d.key]) for d in self.space}
        cfg = self.target.compose(self.trial_overrides(params))
        keys: list[str] = []
        tuned = CONF_DIR / "tuned" / f"{self.target.algo}_{self.target.env}.yaml"
        if tuned.is_file():
            node = OmegaConf.load(tuned)
            node.pop("defaults", None)
            keys += flat_keys(OmegaConf.to_container(node))
        for text in self.target.overrides:
            key = text.split("=", 1)[0].lstrip("+~")
            # Values of what is learned (algo.x, env.x, network.x, total_steps, eval.x); not group choices.
            if key.startswith(("algo.", "env.", "network.")) or key.split(".")[0] not in NOT_TUNED:
                keys.append(key)
        keys += list(params)
        resolved = OmegaConf.create(OmegaConf.to_container(cfg, resolve=True))
        out = OmegaConf.create({})
        for key in dict.fromkeys(keys):
            OmegaConf.update(out, key, OmegaConf.select(resolved, key), force_add=True)
        seeds = best.user_attrs.get("seed_returns", [])
        header = (f"# @package _global_\n"
                  f"# {self.target.algo} on {self.target.env}, tuned by rlrun-tune: study {self.name}, trial "
                  f"{best.number} of {len(self.study.trials)}:\n"
                  f"# {self.settings.objective} final evaluation return {best.value:.1f} over {len(seeds)} seeds "
                  f"({', '.join(f'{r:.1f}' for r in seeds)}).\n"
                  f"# Use it: cp best.yaml conf/tuned/{self.target.algo}_{self.target.env}.yaml\n")
        return header + OmegaConf.to_yaml(out)

    def plot(self, n_complete: int) -> list[str]:
        import warnings

        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as optuna_plots

        written = []
        plots = [("history.png", optuna_plots.plot_optimization_history, 1),
                 # fANOVA needs a few finished trials that differ to attribute variance to parameters.
                 ("importances.png", optuna_plots.plot_param_importances, 2)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
            for name, plot, needed in plots:
                if n_complete < needed:
                    continue
                try:
                    axes = plot(self.study)
                except (RuntimeError, ValueError) as error:
                    written.append(f"{name}: not drawn ({str(error).splitlines()[0]})")
                    continue
                axes.figure.tight_layout()
                axes.figure.savefig(self.dir / name, dpi=100)
                plt.close(axes.figure)
                written.append(f"plot: {self.dir / name}")
        return written


def flat_keys(node: dict, prefix: str = "") -> list[str]:
    keys = []
    for key, value in node.items():
        if isinstance(value, dict) and value:
            keys += flat_keys(value, f"{prefix}{key}.")
        else:
            keys.append(f"{prefix}{key}")
    return keys


def format_value(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def write_trials_csv(path: Path, trials: list, keys: list[str]) -> None:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(["number", "state", "value", *keys, "last_step", "seed_returns", "note"])
    retried = retried_numbers(trials)
    for t in trials:
        last_step = max(t.intermediate_values) if t.intermediate_values else ""
        note = t.user_attrs.get("error") or ("queued again" if t.number in retried else "") or (
            "surplus (not run)" if t.user_attrs.get("surplus") else "")
        writer.writerow([t.number, t.state.name.lower(), "" if t.value is None else t.value,
                         *(t.params.get(k, "") for k in keys), last_step,
                         json.dumps(t.user_attrs.get("seed_returns", [])) if "seed_returns" in t.user_attrs else "",
                         note])
    write_text(path, text.getvalue())  # workers may write at once: each writes its own file and renames it


# ---------------------------------------------------------------------------------------------------
# The command


def split_args(argv: list[str]) -> tuple[Target, dict[str, Any]]:
    """`algo=... env=... tune.k=v ... other overrides` -> the target and the tune.* values."""
    tune_args = [a for a in argv if a.startswith("tune.")]
    rest = [a for a in argv if not a.startswith("tune.")]
    bad = [a for a in argv if "=" not in a]
    if bad:
        raise ConfigError(f"'{bad[0]}' is not an override: rlrun-tune takes key=value arguments only "
                          "(algo=ppo env=CartPole tune.n_trials=50 total_steps=100000)")
    choices = {}
    for name in ("algo", "env"):
        values = [a.split("=", 1)[1] for a in rest if a.split("=", 1)[0] == name]
        if not values:
            raise ConfigError(f"rlrun-tune needs {name}=...: e.g. rlrun-tune algo=ppo env=CartPole")
        choices[name] = values[-1]
    # Resolved here, so that tune.storage=${oc.env:PGURL} keeps the password out of the command line.
    tune_values = (OmegaConf.to_container(OmegaConf.from_dotlist(tune_args), resolve=True).get("tune", {})
                   if tune_args else {})
    overrides = [a for a in rest if a.split("=", 1)[0] not in ("algo", "env")]
    return Target(choices["algo"], choices["env"], overrides), tune_values


def prepare(argv: list[str]) -> Study:
    """Everything checked before any trial: the arguments, the search space, the config; then the study."""
    target, tune_values = split_args(argv)
    settings = tune_config(tune_values)
    check_folder_name(settings.study_name, "tune.study_name")  # outputs/tune/<study_name>/
    where, space = load_space(target.algo, settings.space)
    base = check_space(target, where, space)
    return Study(target, settings, space, base)


def tune(argv: list[str]) -> str:
    """Run the study to tune.n_trials (joining it if it exists) and write its outputs; returns the summary."""
    # The trials' manifests and W&B runs record this process's command line: never the storage's password.
    sys.argv[1:] = mask_argv(sys.argv[1:])
    study = prepare(argv)
    recovered = study.recover()
    if recovered:
        print(f"resuming study {study.name}: trials {', '.join(map(str, recovered))} of a stopped worker "
              "are queued again", flush=True)
    done = study.counted()
    print(f"study {study.name}: {done} of {study.settings.n_trials} trials done; {study.settings.seeds} seeds per "
          f"trial, pruner {study.settings.pruner}, {study.settings.n_workers} worker(s); storage "
          f"{study.storage_text()}", flush=True)
    workers = []
    try:
        if study.settings.n_workers == 1:
            study.optimize()
        else:
            workers = start_workers(argv, study.settings)
            for worker in workers:
                worker.wait()
            failed = [w.returncode for w in workers if w.returncode != 0]
            if failed:
                raise RuntimeError(f"{len(failed)} of {len(workers)} workers exited with an error "
                                   f"({failed[0]}); rerun the same command to resume the study")
    except KeyboardInterrupt:
        for worker in workers:
            worker.wait()  # Ctrl-C reached them too: each finishes its trial's checkpoints
        print(study.write_outputs(), flush=True)
        raise
    return study.write_outputs()


def start_workers(argv: list[str], settings: TuneConfig) -> list[subprocess.Popen]:
    """tune.n_workers processes joining the same study, each with its own sampler seed (the same seed
    would make them propose the same random trials)."""
    workers = []
    for i in range(settings.n_workers):
        seed = None if settings.sampler_seed is None else settings.sampler_seed + i
        args = [a for a in argv if not a.startswith(("tune.n_workers=", "tune.sampler_seed="))]
        args += ["tune.n_workers=1", f"tune.sampler_seed={'null' if seed is None else seed}"]
        workers.append(subprocess.Popen([sys.executable, "-m", "rlrun.tune", *args]))
    return workers


def worker_main() -> None:
    """A worker started by `tune`: joins the study and runs trials until it has enough; no outputs."""
    from hydra.errors import HydraException

    try:
        argv = sys.argv[1:]
        sys.argv[1:] = mask_argv(argv)
        study = prepare(argv)
        study.optimize()
    except ConfigError as error:
        sys.exit(f"rlrun-tune: error: {error}")
    except HydraException as error:
        sys.exit(f"rlrun-tune: error: {str(error).splitlines()[0]}")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    worker_main()
