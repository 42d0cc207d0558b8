"""Reading run directories (written by rlrun/run.py) into records the report aggregates.

A run directory holds .hydra/{config,overrides}.yaml, manifest.json, eval.csv, episodes.csv,
eval_episodes.csv and summary.json. A run is complete when summary.json says it was not interrupted
nor stopped early and its step count reached the budget of its own config (`total_steps`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from rlrun.config import ConfigError

ENTRY_FILE = "bench_entry.json"  # written by a suite above its runs: the entry's label
# Overrides that say where, how long or how a run is logged, not what it is: they do not name an entry.
_NOT_LABEL_KEYS = ("seed", "env", "algo", "total_steps", "schedule_steps", "resume")
_NOT_LABEL_PREFIXES = ("eval.", "checkpoint.", "logger", "hardware", "hydra")


@dataclass
class Run:
    path: Path
    label: str
    algo: str
    env: str
    seed: int
    budget: int                      # total_steps of the run's config
    complete: bool
    summary: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)  # the composed config, .hydra/config.yaml
    eval_steps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    eval_returns: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # Every numeric column of eval.csv by name (elapsed, value_estimate, ...), NaN where a row left it empty.
    eval_columns: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def final_return(self) -> float:
        value = self.summary.get("final_eval_mean_return")
        return float("nan") if value is None else float(value)


def is_run_dir(path: Path) -> bool:
    return (path / ".hydra" / "config.yaml").is_file() or (path / "summary.json").is_file()


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run directories at or below each path (a multirun's sweep directory, a suite's output, a run)."""
    found: set[Path] = set()
    for root in paths:
        if not root.is_dir():
            raise ConfigError(f"{root}: no such directory; pass run directories, a multirun directory or "
                              "a suite's output directory")
        candidates = [root] + [p.parent.parent for p in root.rglob(".hydra/config.yaml")] + \
            [p.parent for p in root.rglob("summary.json")]
        below = {c.resolve() for c in candidates if is_run_dir(c)}
        if not below:
            raise ConfigError(f"{root}: no run directories there (a run directory holds .hydra/config.yaml "
                              "and summary.json, written by rlrun)")
        found |= below
    return sorted(found)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _overrides(run_dir: Path) -> list[str]:
    try:
        loaded = yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return []
    return [o for o in loaded if isinstance(o, str)] if isinstance(loaded, list) else []


def _entry_label(run_dir: Path) -> str | None:
    for parent in run_dir.parents:
        entry = parent / ENTRY_FILE
        if entry.is_file():
            return _read_json(entry).get("label")
        if (parent / ".git").exists():
            break
    return None


def default_label(algo: str, overrides: list[str]) -> str:
    """The algorithm, plus the overrides that make this run differ from the algorithm's defaults
    (`ppo[algo.clip_coef=0.1]`), so that the runs of one multirun over a hyperparameter stay apart."""
    keys = {o: o.split("=", 1)[0].lstrip("+~") for o in overrides}
    extra = sorted(o for o, k in keys.items() if k not in _NOT_LABEL_KEYS and not k.startswith(_NOT_LABEL_PREFIXES))
    return f"{algo}[{','.join(extra)}]" if extra else algo


def read_columns(path: Path) -> dict[str, np.ndarray]:
    """The numeric columns of a metrics CSV file (eval.csv, metrics.csv) by name, rows in file order; an
    empty cell (a metric not measured at that row) is NaN; rows without a global_step are skipped."""
    columns: dict[str, list[float]] = {}
    try:
        with path.open(newline="") as handle:
            for row in csv.DictReader(handle):
                try:
                    step = float(row["global_step"])
                except (KeyError, TypeError, ValueError):
                    continue
                for name, value in row.items():
                    if name is None:
                        continue
                    try:
                        number = step if name == "global_step" else float(value) if value not in ("", None) \
                            else float("nan")
                    except ValueError:
                        number = float("nan")
                    columns.setdefault(name, []).append(number)
    except OSError:
        pass
    return {name: np.array(values, dtype=float) for name, values in columns.items()}


def read_run(run_dir: Path) -> Run:
    try:
        config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        config = {}
    summary = _read_json(run_dir / "summary.json")
    overrides = _overrides(run_dir)
    chosen = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in overrides if "=" in o}
    algo = summary.get("algo") or chosen.get("algo") or "?"
    env = summary.get("env") or chosen.get("env") or "?"
    seed = summary.get("seed", config.get("seed", -1))
    budget = int(config.get("total_steps") or 0)
    complete = bool(summary) and not summary.get("interrupted", True) and not summary.get("stopped_early", False) \
        and summary.get("status", "completed") == "completed" \
        and budget > 0 and int(summary.get("total_steps") or 0) >= budget
    columns = read_columns(run_dir / "eval.csv")
    steps, returns = np.zeros(0, dtype=np.int64), np.zeros(0)
    if "global_step" in columns and "mean_return" in columns:
        keep = ~np.isnan(columns["mean_return"])
        columns = {name: values[keep] for name, values in columns.items()}
        steps, returns = columns["global_step"].astype(np.int64), columns["mean_return"]
    return Run(path=run_dir, label=_entry_label(run_dir) or default_label(algo, overrides), algo=algo, env=env,
               seed=int(seed), budget=budget, complete=complete, summary=summary,
               manifest=_read_json(run_dir / "manifest.json"), config=config if isinstance(config, dict) else {},
               eval_steps=steps, eval_returns=returns, eval_columns=columns)


def read_runs(paths: list[Path]) -> list[Run]:
    return [read_run(path) for path in find_run_dirs(paths)]


def group(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """Complete runs by (label, env), seeds in order. Runs of one row must share their budget and
    differ in seed: a report that mixed them would average unlike things."""
    rows: dict[tuple[str, str], list[Run]] = {}
    for run in runs:
        if run.complete:
            rows.setdefault((run.label, run.env), []).append(run)
    for (label, env), members in rows.items():
        budgets = sorted({r.budget for r in members})
        if len(budgets) > 1:
            detail = "; ".join(f"{b:,} ({', '.join(str(r.path) for r in members if r.budget == b)})" for b in budgets)
            raise ConfigError(f"runs of {label} on {env} have different budgets (total_steps {detail}); "
                              "report each budget separately")
        members.sort(key=lambda r: r.seed)
        seeds = [r.seed for r in members]
        duplicate = next((s for s in seeds if seeds.count(s) > 1), None)
        if duplicate is not None:
            paths = ", ".join(str(r.path) for r in members if r.seed == duplicate)
            raise ConfigError(f"two runs of {label} on {env} with seed {duplicate} ({paths}); pass only one of them")
    return dict(sorted(rows.items()))


def final_episodes(run: Run) -> np.ndarray | None:
    """Returns of the final evaluation's episodes: the rows of eval_episodes.csv at eval.csv's last step,
    checked against eval.csv and summary.json (None where the run kept no per-episode records). Records
    that disagree (a file copied from another run, a hand edit) stop the report in one line: averaging
    them would report numbers that no evaluation produced."""
    path = run.path / "eval_episodes.csv"
    if not path.is_file() or not len(run.eval_steps):
        return None
    columns = read_columns(path)
    step = int(run.eval_steps[-1])
    returns = columns.get("episodic_return", np.zeros(0))[columns.get("global_step", np.zeros(0)) == step]
    expected = (run.config.get("eval") or {}).get("episodes")
    recorded = float(run.eval_returns[-1])
    summary = run.summary.get("final_eval_mean_return")
    problem = None
    if not len(returns):
        problem = "eval_episodes.csv has no episode there"
    elif expected and len(returns) != int(expected):
        problem = f"eval_episodes.csv has {len(returns)} episodes there, eval.episodes is {expected}"
    elif not np.isclose(returns.mean(), recorded, rtol=1e-9, atol=1e-9):
        problem = f"eval_episodes.csv's episodes average {returns.mean():.6g}, eval.csv says {recorded:.6g}"
    elif summary is not None and not np.isclose(float(summary), recorded, rtol=1e-9, atol=1e-9):
        problem = f"eval.csv says {recorded:.6g}, summary.json says {float(summary):.6g}"
    if problem:
        raise ConfigError(f"{run.path}: inconsistent final evaluation at step {step:,}: {problem} (a file from "
                          "another run?); rerun it or leave it out of the report")
    return returns
