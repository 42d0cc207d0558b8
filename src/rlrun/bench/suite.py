"""A benchmark suite (conf/bench/<name>.yaml) run as Hydra multiruns of the `rlrun` command.

Each entry (an algorithm, its overrides, a label) is one multirun over its envs and the suite's
seeds, on the launcher the suite names (joblib, submitit_local, submitit_slurm, ray, or Hydra's basic
one): rlrun schedules nothing itself. Runs land in OUT/runs/<label>/<env>/seed<k>/. Before launching,
every (entry, env) is composed and checked as `rlrun` would check it, so a typo stops the suite in
one line before anything trains; and every run already complete in OUT is skipped, so a suite killed
half-way resumes where it stopped. A run left incomplete (killed, interrupted) is moved to
OUT/incomplete/ and trained again from the start: a Hydra multirun cannot resume single jobs.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from rlrun.bench.figures import parse_figures
from rlrun.bench.runs import ENTRY_FILE, read_run
from rlrun.checkpoint import write_text
from rlrun.config import POSITIVE, ConfigError, check_folder_name, from_config, one_of
from rlrun.hydra_errors import describe_hydra_error
from rlrun.resources import CONF_DIR
from rlrun.secrets import mask_url_passwords

BENCH_DIR = CONF_DIR / "bench"


def ruled(check, default: Any = None) -> Any:
    """An optional dataclass field whose value, when given, must satisfy `check`."""
    return field(default=default, metadata={"rule": check})
LAUNCHERS = ("basic", *sorted(p.stem for p in (CONF_DIR / "hydra" / "launcher").glob("*.yaml")))


@dataclass
class Entry:
    label: str                       # names the entry in the report and its folder OUT/runs/<label>/
    algo: str                        # a name of conf/algo/
    envs: list[str] | None = None    # null: the suite's envs
    overrides: list[str] = field(default_factory=list)  # rlrun overrides of this entry (an ablation)
    total_steps: int | None = ruled(POSITIVE)           # null: the suite's budget


@dataclass
class Suite:
    entries: list[Any]                  # mappings, each one Entry: checked in __post_init__
    description: str = ""
    envs: list[str] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    total_steps: int | None = ruled(POSITIVE)            # null: each (algo, env)'s own (conf/tuned/, config.yaml)
    eval_every_steps: int | None = ruled(POSITIVE)        # null: each (algo, env)'s own
    eval_episodes: int | None = ruled(POSITIVE)
    launcher: str = ruled(one_of(*LAUNCHERS), "joblib")  # where the jobs run (conf/hydra/launcher/)
    overrides: list[str] = field(default_factory=list)   # rlrun overrides for every run (logger=csv, ...)
    out: str | None = None                               # null: outputs/bench/<suite name>
    # Extra report figures (rlrun.bench.figures): value_estimates, workers ({workers: {score: ...}}),
    # normalised_scores; recorded in OUT/runs/bench.json, so `rlrun-report OUT` draws them too.
    figures: list[Any] = field(default_factory=list)
    name: str = ""

    def __post_init__(self):
        parse_figures(self.figures)
        for i, entry in enumerate(self.entries):
            if not isinstance(entry, dict):
                raise ConfigError(f"suite.entries[{i}] must be a mapping ({{label: ..., algo: ...}}), got {entry!r}")
        self.entries = [from_config(Entry, e, f"entries[{i}]") for i, e in enumerate(self.entries)]


def suite_names() -> list[str]:
    return sorted(p.stem for p in BENCH_DIR.glob("*.yaml"))


def load_suite(name_or_path: str, overrides: list[str] = ()) -> Suite:
    """A suite by name (conf/bench/<name>.yaml) or path, with `key=value` overrides of its keys; any other
    override (`hardware=cpu`, `algo.num_envs=4`) is passed to every run."""
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        path = BENCH_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise ConfigError(f"unknown suite '{name_or_path}'; choose one of: {', '.join(suite_names())} "
                          "(or pass the path of a suite .yaml)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a suite is a mapping of keys (entries, envs, seeds, ...)")
    data.setdefault("name", path.stem)
    keys = {f for f in Suite.__dataclass_fields__}
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and key in keys - {"entries", "overrides", "name"}:
            try:
                data[key] = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ConfigError(f"{override}: the value is not valid YAML (e.g. seeds=[0,1])") from None
        else:
            data.setdefault("overrides", []).append(override)
    suite = from_config(Suite, data, "suite")
    if any(o.startswith("total_steps=") for o in overrides):
        for entry in suite.entries:  # a budget given on the command line is every entry's
            entry.total_steps = None
    check_names(suite)
    return suite


def check_names(suite: Suite) -> None:
    algos = sorted(p.stem for p in (CONF_DIR / "algo").glob("*.yaml"))
    envs = sorted(p.stem for p in (CONF_DIR / "env").glob("*.yaml"))
    check_folder_name(suite.name, "suite name")
    if not suite.entries:
        raise ConfigError(f"suite {suite.name} has no entries")
    if not suite.seeds:
        raise ConfigError(f"suite {suite.name}: seeds is empty")
    labels = [e.label for e in suite.entries]
    for entry in suite.entries:
        if not entry.label or "/" in entry.label or entry.label.startswith(".") or labels.count(entry.label) > 1:
            raise ConfigError(f"suite {suite.name}: entry label '{entry.label}' must be unique, non-empty, "
                              "without '/' and not start with '.'")
        if entry.algo not in algos:
            raise ConfigError(f"suite {suite.name}, entry {entry.label}: unknown algo '{entry.algo}'; "
                              f"choose one of: {', '.join(algos)}")
        for env in entry_envs(suite, entry):
            if env not in envs:
                raise ConfigError(f"suite {suite.name}, entry {entry.label}: unknown env '{env}'; "
                                  f"choose one of: {', '.join(envs)}")


def entry_envs(suite: Suite, entry: Entry) -> list[str]:
    envs = entry.envs if entry.envs is not None else suite.envs
    if not envs:
        raise ConfigError(f"suite {suite.name}, entry {entry.label}: no envs (give the suite or the entry envs: [...])")
    return envs


def run_overrides(suite: Suite, entry: Entry) -> list[str]:
    """The rlrun overrides of every run of an entry, except algo, env and seed."""
    budget = entry.total_steps or suite.total_steps
    settings = [f"total_steps={budget}"] if budget else []
    if suite.eval_every_steps:
        settings.append(f"eval.every_steps={suite.eval_every_steps}")
    if suite.eval_episodes:
        settings.append(f"eval.episodes={suite.eval_episodes}")
    return [*settings, *suite.overrides, *entry.overrides]


def compose(algo: str, env: str, overrides: list[str]):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=[f"algo={algo}", f"env={env}", *overrides])


def check(suite: Suite) -> dict[tuple[str, str], int]:
    """Compose and check every (entry, env) as `rlrun` would; returns each one's budget (total_steps)."""
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from rlrun.run import check_config

    budgets = {}
    for entry in suite.entries:
        for env in entry_envs(suite, entry):
            where = f"suite {suite.name}, entry {entry.label} on {env}"
            try:
                # Hydra's own keys (hydra.launcher.*) belong to the launcher, not to the job's config.
                job_overrides = [o for o in run_overrides(suite, entry) if not o.lstrip("+~").startswith("hydra")]
                cfg = compose(entry.algo, env, job_overrides)
                check_config(cfg, entry.algo, env)
            except ConfigError as error:
                raise ConfigError(f"{where}: {error}") from None
            except (HydraException, OmegaConfBaseException) as error:
                raise ConfigError(f"{where}: {describe_hydra_error(error)}") from None
            budgets[entry.label, env] = int(cfg.total_steps)
    return budgets


def out_dir(suite: Suite) -> Path:
    return Path(suite.out) if suite.out else Path("outputs") / "bench" / suite.name


def run_status(run_dir: Path, budget: int) -> str:
    """complete, absent or incomplete; a run made for another budget is an error (its results would
    be mixed with this budget's)."""
    if not run_dir.exists():
        return "absent"
    run = read_run(run_dir)
    if run.budget and run.budget != budget:
        raise ConfigError(f"{run_dir} is a run of total_steps={run.budget:,}, this suite asks {budget:,}: "
                          "give the suite another out=DIR, or move that run away")
    return "complete" if run.complete else "incomplete"


def move_aside(run_dir: Path, out: Path) -> Path:
    relative = run_dir.relative_to(out / "runs")
    target = out / "incomplete" / relative
    n = 1
    while target.with_name(f"{target.name}-{n}").exists():
        n += 1
    target = target.with_name(f"{target.name}-{n}")
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(run_dir), str(target))
    return target


def plan(suite: Suite, budgets: dict[tuple[str, str], int]) -> list[tuple[Entry, list[str], list[int]]]:
    """(entry, envs, seeds) multiruns for the runs not yet complete: envs that miss the same seeds
    share one multirun."""
    out = out_dir(suite)
    todo = []
    for entry in suite.entries:
        missing: dict[tuple[int, ...], list[str]] = {}
        for env in entry_envs(suite, entry):
            seeds = tuple(s for s in suite.seeds
                          if run_status(out / "runs" / entry.label / env / f"seed{s}", budgets[entry.label, env])
                          != "complete")
            if seeds:
                missing.setdefault(seeds, []).append(env)
        todo += [(entry, envs, list(seeds)) for seeds, envs in missing.items()]
    return todo


def multirun_command(suite: Suite, entry: Entry, envs: list[str], seeds: list[int]) -> list[str]:
    sweep_dir = out_dir(suite) / "runs" / entry.label
    launcher = [] if suite.launcher == "basic" else [f"hydra/launcher={suite.launcher}"]
    return [sys.executable, "-m", "rlrun.cli", "-m", f"algo={entry.algo}", f"env={','.join(envs)}",
            f"seed={','.join(str(s) for s in seeds)}", *run_overrides(suite, entry), *launcher,
            f"hydra.sweep.dir={sweep_dir}", "hydra.sweep.subdir=${hydra:runtime.choices.env}/seed${seed}"]


def run_suite(suite: Suite, command: str, dry_run: bool = False) -> tuple[Path, list[str]]:
    """Run what is missing of the suite; returns the output directory and the multiruns that failed."""
    budgets = check(suite)
    out = out_dir(suite)
    todo = plan(suite, budgets)
    log = {"id": f"{time.time_ns()}-{os.getpid()}", "suite": suite.name, "command": command, "multiruns": [],
           "figures": suite.figures, "labels": [entry.label for entry in suite.entries]}
    failed = []
    for entry, envs, seeds in todo:
        cmd = multirun_command(suite, entry, envs, seeds)
        text = shlex.join(["rlrun", *cmd[3:]])
        print(f"rlrun-bench: {entry.label} on {','.join(envs)}, seeds {','.join(map(str, seeds))}: {text}", flush=True)
        if dry_run:
            continue
        run_dirs = [out / "runs" / entry.label / env / f"seed{seed}" for env in envs for seed in seeds]
        for run_dir in run_dirs:
            if run_dir.exists():
                print(f"rlrun-bench: {run_dir} is incomplete: moved to {move_aside(run_dir, out)}", flush=True)
        entry_dir = out / "runs" / entry.label
        entry_dir.mkdir(parents=True, exist_ok=True)
        (entry_dir / ENTRY_FILE).write_text(json.dumps(
            {"label": entry.label, "algo": entry.algo, "overrides": entry.overrides}, indent=2) + "\n")
        log["multiruns"].append(text)
        append_log(out, log)
        # HYDRA_FULL_ERROR is rlrun's own switch for one-line errors; the jobs inherit a clean one.
        env_vars = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
        if run_multirun(cmd, env_vars, run_dirs) != 0:
            failed.append(text)
            print(f"rlrun-bench: failed: {text}", file=sys.stderr, flush=True)
    if not dry_run:
        append_log(out, log)
    return out, failed


def run_multirun(cmd: list[str], env: dict[str, str], run_dirs: list[Path], grace: float = 300.0) -> int:
    """Run one multirun in a process group of its own and return its exit status once none of its runs
    trains any more. A SIGTERM or SIGINT to rlrun-bench goes to the whole group: the multirun, its
    launcher's worker processes (joblib's, submitit_local's) and their runs, which stop as rlrun's runs
    stop on those signals (a checkpoint; summary.json says interrupted, so the next invocation moves them
    aside); then rlrun-bench stops as interrupted. Without this, `kill` of rlrun-bench alone left a joblib
    launcher's workers training into OUT after it had gone; Ctrl-C reaches everything as before (the
    terminal's SIGINT is forwarded)."""
    from rlrun.run import RunDirLock

    child = subprocess.Popen(cmd, env=env, start_new_session=True)
    received: list[int] = []

    def forward(signum, _frame) -> None:
        received.append(signum)
        signal_group(child.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        returncode = child.wait()
        # A signalled launcher ends at once, while its workers' runs still write their checkpoints: wait
        # for each run to let go of its directory, then end what is left of the group (idle workers).
        deadline = time.monotonic() + grace
        for run_dir in run_dirs:
            RunDirLock(run_dir).wait_until_free(deadline)
        signal_group(child.pid, signal.SIGTERM)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt
    return returncode


def signal_group(pgid: int, signum: int) -> None:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:  # the group has ended
        pass


def append_log(out: Path, invocation: dict[str, Any]) -> None:
    """OUT/runs/bench.json: every rlrun-bench invocation on this directory and the multiruns it started
    (the report prints them, so a reader can rerun them)."""
    path = out / "runs" / "bench.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        history = json.loads(path.read_text())
    except (OSError, ValueError):
        history = []
    if history and history[-1].get("id") == invocation["id"]:
        history[-1] = invocation
    else:
        history.append(invocation)
    write_text(path, mask_url_passwords(json.dumps(history, indent=2)) + "\n")
