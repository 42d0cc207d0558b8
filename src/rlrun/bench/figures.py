"""The figures of the lecture's claims suites, drawn when a suite names them (`figures:` in conf/bench/).

A suite lists names, or one-key mappings with options:

    figures: [value_estimates]                         # double-dqn-overestimation
    figures: [{workers: {score: {CartPole: 475}}}]     # a3c-workers (score: a number, or one per env)
    figures: [normalised_scores]                       # ppo-objectives

- `value_estimates` (van Hasselt et al. 2016, Figure 3): per env, each entry's value estimate over training
  (max_a Q on the evaluation episodes' states, eval.csv; and on the replayed minibatches, metrics.csv's
  max_q) against the discounted return its greedy policy actually collects from those states; mean over
  seeds with a bootstrap band. The final overestimation (estimate - actual) per entry, with its interval.
- `workers` (Mnih et al. 2016, Figure 3): runs of one algorithm and env that differ in hardware.workers:
  training steps per wall-clock second and the wall time to reach a score, each against the number of
  workers, with the speed-up relative to the fewest workers (1 in the shipped suites); and the evaluation
  return against wall-clock time.
- `normalised_scores` (Schulman et al. 2017, Table 1): per setting (entry), the final return normalised per
  env so that the random policy scores 0 and the best setting of this report 1, averaged over envs and
  seeds, with a stratified bootstrap interval: a table and a point chart.

Each figure is three functions: `compute(rows, options, context)` -> JSON-able data (report.json),
`plot(data, path)` and `markdown(data, image)` -> lines. Compute is pure: the same runs, the same data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlrun.bench import stats
from rlrun.bench.runs import Run, read_columns
from rlrun.config import ConfigError

OPTIONS = {"value_estimates": (), "workers": ("score",), "normalised_scores": ()}
MAX_POINTS = 200  # points of a curve's band at most (kept evenly spaced, first and last included)


def save_figure(fig, path: Path) -> None:
    """Every report figure is laid out and written alike, and closed (a report draws many)."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def parse_figures(spec: Any, where: str = "suite.figures") -> dict[str, dict]:
    """A suite's `figures:` list as {name: options}; an unknown name or option is one line."""
    if spec is None:
        return {}
    if not isinstance(spec, list):
        raise ConfigError(f"{where} must be a list of figure names ({', '.join(OPTIONS)}), got {spec!r}")
    figures: dict[str, dict] = {}
    for item in spec:
        if isinstance(item, str):
            name, options = item, {}
        elif isinstance(item, dict) and len(item) == 1:
            name, options = next(iter(item.items()))
            options = options or {}
        else:
            raise ConfigError(f"{where}: {item!r} must be a figure name or {{name: {{options}}}}")
        if name not in OPTIONS:
            raise ConfigError(f"{where}: unknown figure '{name}'; choose from: {', '.join(OPTIONS)}")
        if not isinstance(options, dict) or any(k not in OPTIONS[name] for k in options):
            allowed = ", ".join(OPTIONS[name]) or "none"
            raise ConfigError(f"{where}: figure {name} takes the options: {allowed} (got {options!r})")
        score = options.get("score")
        if score is not None and not (_is_number(score) or (isinstance(score, dict)
                                                          and all(_is_number(v) for v in score.values()))):
            raise ConfigError(f"{where}: workers.score must be a number or {{env: number}} (got {score!r})")
        figures[name] = dict(options)
    return figures


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value) -> float | None:
    return None if value is None or not math.isfinite(float(value)) else float(value)


def last_finite(values: np.ndarray) -> float | None:
    finite = np.asarray(values, dtype=float)[np.isfinite(values)]
    return float(finite[-1]) if len(finite) else None


@dataclass
class Context:
    """What every figure may use besides the runs: bootstrap settings, normalisation scales, entry order."""
    reps: int
    seed: int
    scales: dict[str, dict] = field(default_factory=dict)  # conf/bench/reference/normalisation.csv by env
    order: list[str] = field(default_factory=list)          # entry labels in the suite's order


def band(series: list[tuple[np.ndarray, np.ndarray]], reps: int, seed: int, points: int | None = None) -> dict | None:
    """Mean over runs of curves (x, y) and a 95% bootstrap band (whole runs resampled), where every run
    has data: on the first run's x values there or, with `points`, that many evenly spaced (for wall-clock
    x, which differs run to run); each run linearly interpolated; NaN points are dropped."""
    kept = []
    for x, y in series:
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        finite = ~(np.isnan(x) | np.isnan(y))
        if finite.any():
            kept.append((x[finite], y[finite]))
    if not kept:
        return None
    start, end = max(x[0] for x, _ in kept), min(x[-1] for x, _ in kept)
    grid = kept[0][0][(kept[0][0] >= start) & (kept[0][0] <= end)] if points is None else \
        np.linspace(start, end, points) if start < end else np.zeros(0)
    if not len(grid):
        return None
    if len(grid) > MAX_POINTS:  # metrics.csv of a 10M-step run: 10k rows, and the bootstrap holds reps x runs x points
        grid = grid[np.linspace(0, len(grid) - 1, MAX_POINTS).round().astype(int)]
    mean, low, high = stats.mean_band(np.stack([np.interp(grid, x, y) for x, y in kept]), reps, seed=seed)
    return {"x": grid.tolist(), "mean": mean.tolist(), "low": low.tolist(), "high": high.tolist(), "runs": len(kept)}


def mean_ci(values: list[float], reps: int, seed: int) -> list[float] | None:
    """[mean, low, high]: the mean over runs and its 95% bootstrap percentile interval."""
    values = [v for v in values if v is not None and math.isfinite(v)]
    if not values:
        return None
    return list(stats.stratified_bootstrap_ci(np.array(values)[:, None], stats.mean, reps, seed=seed))


def _fmt_ci(ci: list[float] | None, digits: int = 2) -> str:
    return "n/a" if ci is None else f"{ci[0]:,.{digits}f} [{ci[1]:,.{digits}f}, {ci[2]:,.{digits}f}]"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


# --- value estimates against the true discounted return (van Hasselt et al. 2016, Figure 3) ----------------


def compute_value_estimates(rows: dict[tuple[str, str], list[Run]], options: dict, ctx: Context) -> dict:
    reps, seed = ctx.reps, ctx.seed
    entries = []
    for (label, env), runs in rows.items():
        runs = [r for r in runs if "value_estimate" in r.eval_columns]
        if not runs:
            continue
        steps = [r.eval_columns["global_step"] for r in runs]
        train = []
        for run in runs:
            metrics = read_columns(run.path / "metrics.csv")
            if "max_q" in metrics:
                train.append((metrics["global_step"], metrics["max_q"]))
        final_estimate = [_finite(r.eval_columns["value_estimate"][-1]) for r in runs]
        final_actual = [_finite(r.eval_columns["return_to_go"][-1]) for r in runs]
        gaps = [e - a for e, a in zip(final_estimate, final_actual, strict=True) if e is not None and a is not None]
        entries.append({
            "label": label, "env": env, "seeds": [r.seed for r in runs],
            "estimate": band([(s, r.eval_columns["value_estimate"]) for s, r in zip(steps, runs, strict=True)],
                             reps, seed),
            "actual": band([(s, r.eval_columns["return_to_go"]) for s, r in zip(steps, runs, strict=True)], reps, seed),
            "train_max_q": band(train, reps, seed),
            "final_estimate": mean_ci(final_estimate, reps, seed),
            "final_actual": mean_ci(final_actual, reps, seed),
            "final_overestimation": mean_ci(gaps, reps, seed),
            "final_train_max_q": mean_ci([last_finite(q) for _, q in train], reps, seed),
            "final_states": [int(_finite(r.eval_columns.get("value_states", [math.nan])[-1]) or 0) for r in runs]})
    return {"entries": entries}


def plot_value_estimates(data: dict, path: Path) -> None:
    plt = _pyplot()
    envs = sorted({e["env"] for e in data["entries"]})
    fig, axes = plt.subplots(1, len(envs), figsize=(5.5 * len(envs), 4), squeeze=False)
    for ax, env in zip(axes[0], envs):
        for entry in (e for e in data["entries"] if e["env"] == env):
            color = None
            for key, style, what in (("estimate", "-", "max Q, evaluation states"),
                                     ("train_max_q", "--", "max Q, replay minibatches"),
                                     ("actual", ":", "actual discounted return")):
                curve = entry[key]
                if curve is None:
                    continue
                line, = ax.plot(curve["x"], curve["mean"], style, color=color, marker="o" if len(curve["x"]) == 1
                                else None, label=f"{entry['label']}: {what}")
                color = line.get_color()
                ax.fill_between(curve["x"], curve["low"], curve["high"], color=color, alpha=0.15, linewidth=0)
        ax.set_title(f"{env}: value estimates vs true value")
        ax.set_xlabel("environment steps")
        ax.set_ylabel("discounted value")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def markdown_value_estimates(data: dict, image: str) -> list[str]:
    lines = ["## Value estimates against the true discounted return (van Hasselt et al. 2016, Figure 3)", ""]
    if not data["entries"]:
        return lines + ["No run here recorded value estimates (eval.csv's value_estimate: the DQN family)."]
    lines += [
        "At each evaluation, the mean of max_a Q(s, a) over the states the greedy policy visits, against the "
        "discounted return it actually collected from each of those states (same gamma as the learner, in "
        "the rewards it learns from; an episode ends at the learner's terminal). States of an episode cut by "
        "a time limit count only if the missing tail weighs under 1% (gamma^(T-t) < 0.01), since Q estimates "
        "the uncut value: with gamma 0.99 and CartPole's 500-step limit, only an episode's first 42 states. "
        "metrics.csv's max_q is the same estimate on the replayed minibatches (states of the exploring "
        "policy). With algo.eval_epsilon > 0 (Atari: 0.05, as the papers) the actual return is that of the "
        "epsilon-greedy evaluation policy, as in van Hasselt et al.'s ground truth. Mean over seeds, 95% "
        "bootstrap band over seeds.", "",
        "| entry | env | seeds | final max Q (eval states) | final actual return | overestimation [95% CI] | "
        "final max Q (replay) | states counted per run |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for e in data["entries"]:
        lines.append(f"| {e['label']} | {e['env']} | {len(e['seeds'])} | {_fmt_ci(e['final_estimate'])} | "
                     f"{_fmt_ci(e['final_actual'])} | {_fmt_ci(e['final_overestimation'])} | "
                     f"{_fmt_ci(e['final_train_max_q'])} | {', '.join(map(str, e['final_states']))} |")
    return lines + ["", f"![value estimates]({image})"]


# --- workers: speed and time to a score (Mnih et al. 2016, Figure 3) -----------------------------------------


def workers_of(run: Run) -> int | None:
    value = (run.config.get("hardware") or {}).get("workers")
    return int(value) if _is_number(value) else None


def steps_per_second(run: Run) -> float | None:
    """Training steps per wall-clock second between the run's first and last evaluation (eval.csv's
    global_step and elapsed): the steady rate, without the start-up (A3C spawns its worker processes, a
    few seconds each on a loaded machine) and with the evaluations, during which A3C's workers go on
    training. A run evaluated once: its whole steps over its whole wall time (summary.json)."""
    steps, elapsed = run.eval_columns.get("global_step"), run.eval_columns.get("elapsed")
    if steps is not None and elapsed is not None and len(steps) >= 2 and elapsed[-1] > elapsed[0]:
        return _finite((steps[-1] - steps[0]) / (elapsed[-1] - elapsed[0]))
    wall = run.summary.get("wall_seconds")
    return _finite(run.summary.get("total_steps", 0) / wall) if wall else None


def time_to_score(run: Run, score: float) -> float | None:
    """Wall-clock seconds (eval.csv's elapsed) at the first evaluation whose mean return reaches `score`."""
    elapsed = run.eval_columns.get("elapsed")
    if elapsed is None:
        return None
    reached = np.flatnonzero(run.eval_returns >= score)
    return _finite(elapsed[reached[0]]) if len(reached) else None


def compute_workers(rows: dict[tuple[str, str], list[Run]], options: dict, ctx: Context) -> dict:
    reps, seed = ctx.reps, ctx.seed
    by_group: dict[tuple[str, str], dict[int, list[Run]]] = {}
    for (_, env), runs in rows.items():
        for run in runs:
            workers = workers_of(run)
            if workers is not None:
                by_group.setdefault((run.algo, env), {}).setdefault(workers, []).append(run)
    groups = []
    for (algo, env), by_workers in sorted(by_group.items()):
        if len(by_workers) < 2:
            continue
        everyone = [r for runs in by_workers.values() for r in runs]
        score = options.get("score")
        if isinstance(score, dict):
            score = score.get(env)
        source = "the suite's score"
        if score is None:
            # The best evaluation return that every run reached: each run has a time to it.
            score = float(min(r.eval_returns.max() for r in everyone if len(r.eval_returns)))
            source = "the highest evaluation return every run reached"
        base = min(by_workers)
        points = []
        for workers in sorted(by_workers):
            runs = sorted(by_workers[workers], key=lambda r: r.seed)
            speed = [steps_per_second(r) for r in runs]
            times = [time_to_score(r, score) for r in runs]
            timed = [r for r in runs if "elapsed" in r.eval_columns]
            points.append({"workers": workers, "labels": sorted({r.label for r in runs}), "seeds": [r.seed for r in runs],
                           "steps_per_second": mean_ci(speed, reps, seed), "time_to_score": mean_ci(times, reps, seed),
                           "reached": sum(t is not None for t in times),
                           "curve": band([(r.eval_columns["elapsed"], r.eval_returns) for r in timed], reps, seed,
                                         points=50),
                           "series": [[r.eval_columns["elapsed"].tolist(), r.eval_returns.tolist()] for r in timed]})
        first = points[0]
        for point in points:
            sps, t = point["steps_per_second"], point["time_to_score"]
            point["speedup"] = sps[0] / first["steps_per_second"][0] if sps and first["steps_per_second"] else None
            point["time_speedup"] = first["time_to_score"][0] / t[0] if t and first["time_to_score"] else None
        groups.append({"algo": algo, "env": env, "score": score, "score_source": source, "base_workers": base,
                       "points": points})
    return {"groups": groups}


def plot_workers(data: dict, path: Path) -> None:
    plt = _pyplot()
    groups = data["groups"]
    fig, axes = plt.subplots(len(groups), 3, figsize=(15, 3.8 * len(groups)), squeeze=False)
    for (speed_ax, time_ax, curve_ax), group in zip(axes, groups):
        where = f"{group['algo']} on {group['env']}"
        workers = [p["workers"] for p in group["points"]]
        for ax, key, ylabel in ((speed_ax, "steps_per_second", "steps per wall-clock second"),
                                (time_ax, "time_to_score", f"seconds to reach {group['score']:g}")):
            shown = [(p["workers"], p[key]) for p in group["points"] if p[key] is not None]
            if shown:
                x = [w for w, _ in shown]
                y = np.array([c[0] for _, c in shown])
                err = np.array([[c[0] - c[1] for _, c in shown], [c[2] - c[0] for _, c in shown]])
                ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label="measured (mean, 95% CI)")
                base = next((c[0] for w, c in shown if w == group["base_workers"]), None)
                if base is not None:  # perfect scaling from the fewest workers
                    ideal = [base * w / group["base_workers"] if key == "steps_per_second"
                             else base * group["base_workers"] / w for w in workers]
                    ax.plot(workers, ideal, ":", color="grey", label="linear speed-up")
            ax.set_xscale("log", base=2)
            ax.set_xticks(workers, [str(w) for w in workers])
            ax.set_xlabel("worker processes")
            ax.set_ylabel(ylabel)
            ax.set_title(where)
            ax.legend(fontsize=7)
        for point in group["points"]:
            curve, color = point["curve"], None
            for i, (x, y) in enumerate(point["series"]):  # each seed, thin: evaluations land at different times
                line, = curve_ax.plot(x, y, color=color, linewidth=0.7, alpha=0.6, marker=".",
                                      label=None if curve or i else f"{point['workers']} workers (each seed)")
                color = line.get_color()
            if curve is not None:
                curve_ax.plot(curve["x"], curve["mean"], color=color,
                              label=f"{point['workers']} workers (mean of {curve['runs']} seeds)")
                curve_ax.fill_between(curve["x"], curve["low"], curve["high"], color=color, alpha=0.2, linewidth=0)
        curve_ax.axhline(group["score"], color="grey", linestyle=":", linewidth=1)
        curve_ax.set_xlabel("wall-clock seconds")
        curve_ax.set_ylabel("evaluation return")
        curve_ax.set_title(where)
        curve_ax.legend(fontsize=7)
    save_figure(fig, path)


def markdown_workers(data: dict, image: str) -> list[str]:
    lines = ["## Speed and time to a score against the number of workers (Mnih et al. 2016, Figure 3)", ""]
    if not data["groups"]:
        return lines + ["No algorithm and env here has runs with different hardware.workers."]
    lines += ["Steps per wall-clock second: between a run's first and last evaluation (eval.csv's steps and elapsed "
              "seconds), so without the start-up (A3C spawns its workers) and with the evaluations (A3C's workers "
              "go on training while the main process evaluates). Time to a score: the run's elapsed seconds, "
              "start-up included, at the first evaluation at or above the score (an upper bound, to within one "
              "evaluation interval), over the runs that reached it. Speed-ups are ratios of the means, relative "
              "to the fewest workers. Mean over seeds [95% bootstrap CI].", ""]
    for group in data["groups"]:
        lines += [f"{group['algo']} on {group['env']}, score {group['score']:g} ({group['score_source']}):", "",
                  "| workers | entries | seeds | steps/s | speed-up | seconds to score | reached | speed-up |",
                  "|---:|---|---:|---:|---:|---:|---:|---:|"]
        for p in group["points"]:
            speedup = "n/a" if p["speedup"] is None else f"{p['speedup']:.2f}x"
            time_speedup = "n/a" if p["time_speedup"] is None else f"{p['time_speedup']:.2f}x"
            lines.append(f"| {p['workers']} | {', '.join(p['labels'])} | {len(p['seeds'])} | "
                         f"{_fmt_ci(p['steps_per_second'], 0)} | {speedup} | {_fmt_ci(p['time_to_score'], 1)} | "
                         f"{p['reached']}/{len(p['seeds'])} | {time_speedup} |")
        lines.append("")
    return lines + [f"![workers]({image})"]


# --- normalised score per setting (Schulman et al. 2017, Table 1) ---------------------------------------------


def compute_normalised_scores(rows: dict[tuple[str, str], list[Run]], options: dict, ctx: Context) -> dict:
    """Per env: random policy 0 (conf/bench/reference/normalisation.csv), the best setting's mean final
    return 1; per setting: the mean of its runs' normalised scores over envs and seeds, stratified bootstrap
    interval (each env a task)."""
    scales, order = ctx.scales, ctx.order
    envs, skipped = [], []
    best: dict[str, float] = {}
    for env in sorted({env for _, env in rows}):
        means = {label: float(np.mean([r.final_return for r in runs])) for (label, e), runs in rows.items() if e == env}
        if env not in scales:
            skipped.append(f"{env} (no random-policy score in conf/bench/reference/normalisation.csv)")
            continue
        best[env] = max(means.values())
        if best[env] == float(scales[env]["random_score"]):
            skipped.append(f"{env} (the best setting scores as the random policy)")
            continue
        envs.append(env)
    labels = sorted({label for label, _ in rows})
    if order:
        labels = [label for label in order if label in labels] + [label for label in labels if label not in order]
    settings = []
    for label in labels:
        mine = [env for env in envs if (label, env) in rows]
        if not mine:
            continue
        seeds = sorted(set.intersection(*({r.seed for r in rows[label, env]} for env in mine)))
        if not seeds:
            continue
        matrix = np.stack([stats.normalise([r.final_return for r in rows[label, env] if r.seed in seeds],
                                           float(scales[env]["random_score"]), best[env]) for env in mine], axis=1)
        settings.append({"label": label, "envs": mine, "seeds": seeds, "scores": matrix.tolist(),
                         "per_env": dict(zip(mine, matrix.mean(axis=0).tolist(), strict=True)),
                         "mean": list(stats.stratified_bootstrap_ci(matrix, stats.mean, ctx.reps, seed=ctx.seed))})
    return {"envs": envs, "best": {env: best[env] for env in envs},
            "random": {env: float(scales[env]["random_score"]) for env in envs}, "skipped": skipped,
            "settings": settings}


def plot_normalised_scores(data: dict, path: Path) -> None:
    plt = _pyplot()
    settings = data["settings"]
    fig, ax = plt.subplots(figsize=(6.5, 0.4 * len(settings) + 1.5))
    y = np.arange(len(settings))[::-1]
    means = np.array([s["mean"] for s in settings]).reshape(-1, 3)
    ax.errorbar(means[:, 0], y, xerr=[means[:, 0] - means[:, 1], means[:, 2] - means[:, 0]], fmt="o", capsize=3)
    ax.set_yticks(y, [s["label"] for s in settings])
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.axvline(1, color="grey", linewidth=0.8, linestyle=":")
    ax.set_xlabel("normalised score (random 0, best setting 1): mean, 95% CI")
    save_figure(fig, path)


def markdown_normalised_scores(data: dict, image: str) -> list[str]:
    lines = ["## Normalised score per setting (Schulman et al. 2017, Table 1)", ""]
    if not data["settings"]:
        return lines + ["No env here can be normalised: " + ("; ".join(data["skipped"]) or "no runs") + "."]
    lines += ["As the PPO paper's Table 1: each env's scores shifted and scaled so that the random policy scores 0 "
              "and the best setting here 1 (its mean final return over seeds), then averaged over envs and seeds. "
              "Unlike the paper (the mean of the last 100 training episodes), a run's score is its final "
              "evaluation return (deterministic policy). Interval: 95% stratified bootstrap over seeds, envs as tasks.",
              "", "| setting | runs | normalised score [95% CI] | " + " | ".join(data["envs"]) + " |",
              "|---|---:|---:|" + "---:|" * len(data["envs"])]
    for s in data["settings"]:
        per_env = " | ".join(f"{s['per_env'][env]:.2f}" if env in s["per_env"] else "n/a" for env in data["envs"])
        lines.append(f"| {s['label']} | {len(s['seeds']) * len(s['envs'])} | {_fmt_ci(s['mean'])} | {per_env} |")
    scale = "; ".join(f"{env}: random {data['random'][env]:,.2f}, best {data['best'][env]:,.2f}" for env in data["envs"])
    lines += ["", f"Scales: {scale}."]
    if data["skipped"]:
        lines += ["", "Left out: " + "; ".join(data["skipped"]) + "."]
    return lines + ["", f"![normalised scores]({image})"]


FIGURES = {
    "value_estimates": (compute_value_estimates, plot_value_estimates, markdown_value_estimates),
    "workers": (compute_workers, plot_workers, markdown_workers),
    "normalised_scores": (compute_normalised_scores, plot_normalised_scores, markdown_normalised_scores),
}


def drawable(name: str, data: dict) -> bool:
    """Whether a computed figure has anything to plot (its markdown says why not otherwise)."""
    return bool(data.get({"value_estimates": "entries", "workers": "groups", "normalised_scores": "settings"}[name]))
