"""The benchmark report: OUT/report.md, OUT/report.json and PNGs from a set of run directories.

- per (entry, env): final evaluation return over seeds, beside the published figures and their protocol;
- aggregate over envs on normalised scores (random = 0, reference = 1): IQM and mean with 95% stratified
  bootstrap intervals, performance profiles, probability of improvement between entries (Agarwal et al.
  2021);
- learning curves (mean over seeds, bootstrap band, published marks), a speed table, and what a reader
  needs to rerun it: commands, commits, package versions, hardware.

Everything is a function of the runs' files and a fixed bootstrap seed: the same inputs give the same
report (no clock, no global RNG).
"""

from __future__ import annotations

import csv
import json
import math
import os
from itertools import combinations
from pathlib import Path

import numpy as np

from rlrun.bench import stats
from rlrun.bench.figures import FIGURES, Context, drawable, parse_figures, save_figure
from rlrun.bench.runs import Run, final_episodes, group, read_runs
from rlrun.config import ConfigError
from rlrun.secrets import mask_url_passwords
from rlrun.resources import CONF_DIR

REFERENCE_DIR = CONF_DIR / "bench" / "reference"
BOOTSTRAP_REPS = stats.REPS  # 50,000, rliable's default
BOOTSTRAP_SEED = 0
PROFILE_THRESHOLDS = np.linspace(0.0, 1.5, 31)


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def published(algo: str, env: str) -> list[dict]:
    """Published rows for an algorithm (its conf/algo name; double_dqn and dueling_dqn are not dqn) and env."""
    return [row for row in read_csv(REFERENCE_DIR / "published_returns.csv") if row["algo"] == algo and row["env"] == env]


def normalisation() -> dict[str, dict]:
    return {row["env"]: row for row in read_csv(REFERENCE_DIR / "normalisation.csv")}


def fmt(value: float, digits: int = 1) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.{digits}f}"


def normalised_scores(runs: list[Run], scales: dict[str, dict]) -> np.ndarray | None:
    env = runs[0].env
    if env not in scales:
        return None
    scale = scales[env]
    return stats.normalise([r.final_return for r in runs], float(scale["random_score"]), float(scale["reference_score"]))


def aggregate(rows: dict[tuple[str, str], list[Run]], scales: dict[str, dict]) -> dict[str, dict]:
    """Per entry: the (seeds, envs) matrix of normalised final scores over its envs that have a scale
    and the seeds every one of those envs has."""
    result = {}
    for label in sorted({label for label, _ in rows}):
        envs = [env for (lab, env) in rows if lab == label and env in scales]
        if not envs:
            continue
        seeds = sorted(set.intersection(*({r.seed for r in rows[label, env]} for env in envs)))
        if not seeds:
            continue
        columns = [normalised_scores([r for r in rows[label, env] if r.seed in seeds], scales) for env in envs]
        matrix = np.stack(columns, axis=1)
        iqm = stats.stratified_bootstrap_ci(matrix, stats.iqm, BOOTSTRAP_REPS, seed=BOOTSTRAP_SEED)
        mean = stats.stratified_bootstrap_ci(matrix, stats.mean, BOOTSTRAP_REPS, seed=BOOTSTRAP_SEED)
        profile = stats.performance_profile_ci(matrix, PROFILE_THRESHOLDS, BOOTSTRAP_REPS, seed=BOOTSTRAP_SEED)
        result[label] = {"envs": envs, "seeds": seeds, "scores": matrix.tolist(), "iqm": list(iqm),
                         "mean": list(mean), "profile": [p.tolist() for p in profile]}
    return result


def improvements(aggregates: dict[str, dict]) -> list[dict]:
    """P(X > Y) for every pair of entries (X before Y by name; P(Y > X) = 1 - P(X > Y)), over the envs
    both have."""
    out = []
    for x, y in combinations(sorted(aggregates), 2):
        common = [e for e in aggregates[x]["envs"] if e in aggregates[y]["envs"]]
        if not common:
            continue
        pick = lambda a: np.array(a["scores"])[:, [a["envs"].index(e) for e in common]]  # noqa: E731
        point, low, high = stats.probability_of_improvement_ci(pick(aggregates[x]), pick(aggregates[y]),
                                                               BOOTSTRAP_REPS, seed=BOOTSTRAP_SEED)
        out.append({"x": x, "y": y, "envs": common, "p": point, "low": low, "high": high})
    return out


def curve_matrix(runs: list[Run]) -> tuple[np.ndarray, np.ndarray] | None:
    """Seeds' evaluation curves on the first seed's evaluation steps, up to the shortest run (iterations
    may overshoot an evaluation step by different amounts): linear interpolation between evaluations.
    Where the first seed has no evaluation that early (runs evaluated once, at steps that differ: A3C's
    workers overshoot the budget by different amounts), the shortest run's steps."""
    curves = [(r.eval_steps, r.eval_returns) for r in runs if len(r.eval_steps)]
    if not curves:
        return None
    end = min(s[-1] for s, _ in curves)
    grid = curves[0][0][curves[0][0] <= end]
    if not len(grid):
        grid = next(s for s, _ in curves if s[-1] == end)
    return grid, np.stack([np.interp(grid, s, v) for s, v in curves])


def plot_curves(rows: dict[tuple[str, str], list[Run]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    envs = sorted({env for _, env in rows})
    fig, axes = plt.subplots(1, len(envs), figsize=(5 * len(envs), 3.8), squeeze=False)
    for ax, env in zip(axes[0], envs):
        marked = set()
        panel = [(label, runs) for (label, row_env), runs in rows.items() if row_env == env]
        x_end = max((r.eval_steps[-1] for _, runs in panel for r in runs if len(r.eval_steps)), default=0)
        for label, runs in panel:
            curves = curve_matrix(runs)
            if curves is None:
                continue
            grid, matrix = curves
            mean, low, high = stats.mean_band(matrix, BOOTSTRAP_REPS, seed=BOOTSTRAP_SEED)
            # A run evaluated once is one point: a marker, or it would not show at all.
            line, = ax.plot(grid, mean, marker="o" if len(grid) == 1 else None, label=f"{label} ({len(runs)} seeds)")
            ax.fill_between(grid, low, high, color=line.get_color(), alpha=0.2, linewidth=0)
            for row in published(runs[0].algo, env):
                key = (row["algo"], row["source"], row["env_version"])
                if key in marked:
                    continue
                marked.add(key)
                budget, value, std = float(row["budget_steps"]), float(row["mean"]), float(row["std"] or 0)
                if budget <= 1.05 * x_end:
                    ax.errorbar([budget], [value], yerr=[[std], [std]], fmt="x", capsize=3,
                                color=line.get_color(), alpha=0.7)
                else:  # published at a larger budget than these runs: a level, not a point off the axis
                    ax.axhline(value, color=line.get_color(), linestyle=":", alpha=0.7)
        ax.set_title(env)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("evaluation return")
        ax.legend(fontsize=7)
    save_figure(fig, path)


def plot_profiles(aggregates: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, agg in aggregates.items():
        point, low, high = (np.array(p) for p in agg["profile"])
        line, = ax.plot(PROFILE_THRESHOLDS, point, label=label)
        ax.fill_between(PROFILE_THRESHOLDS, low, high, color=line.get_color(), alpha=0.15, linewidth=0)
    ax.set_xlabel("normalised score tau")
    ax.set_ylabel("fraction of runs with score > tau")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def bench_invocations(roots: list[Path]) -> list[dict]:
    found = []
    for root in roots:
        for path in sorted({root / "bench.json", root / "runs" / "bench.json"}):
            if path.is_file():
                try:
                    found += json.loads(path.read_text())
                except ValueError:
                    pass
    return found


def suite_figures(invocations: list[dict]) -> tuple[dict[str, dict], list[str]]:
    """The figures the suites of these rlrun-bench invocations named (a later invocation's options win),
    and their entry labels in suite order."""
    figures: dict[str, dict] = {}
    labels: list[str] = []
    for invocation in invocations:
        figures |= parse_figures(invocation.get("figures", []), f"bench.json ({invocation.get('suite')})")
        labels += [label for label in invocation.get("labels", []) if label not in labels]
    return figures, labels


def build(paths: list[Path], figures: dict[str, dict] | None = None) -> dict:
    """The report's data and its rows; `figures` ({name: options}, rlrun.bench.figures) default to those
    the suite named (bench.json beside the runs)."""
    runs = read_runs(paths)
    rows = group(runs)
    if not rows:
        raise ConfigError(f"no complete runs under {', '.join(map(str, paths))} ({len(runs)} incomplete: "
                          "interrupted or short of their budget); finish them with rlrun resume=<run dir>")
    scales = normalisation()
    aggregates = aggregate(rows, scales)
    table = []
    for (label, env), members in rows.items():
        finals = np.array([r.final_return for r in members])
        normalised = normalised_scores(members, scales)
        # The final evaluation's episodes of each run (eval_episodes.csv), checked against eval.csv.
        episodes = [final_episodes(r) for r in members]
        recorded = [e for e in episodes if e is not None]
        table.append({
            "final_episodes": [None if e is None else len(e) for e in episodes],
            "episode_std": float(np.mean([e.std() for e in recorded])) if recorded else None,
            "episode_range": [float(min(e.min() for e in recorded)), float(max(e.max() for e in recorded))]
            if recorded else None,
            "label": label, "algo": members[0].algo, "env": env, "budget": members[0].budget,
            "seeds": [r.seed for r in members], "final_returns": finals.tolist(),
            "mean": float(finals.mean()), "std": float(finals.std()),
            "normalised_mean": None if normalised is None else float(normalised.mean()),
            "published": published(members[0].algo, env)})
    invocations = bench_invocations(paths)
    named, order = suite_figures(invocations)
    figures = named if figures is None else {**named, **figures}  # rlrun-report --figures adds to the suites'
    context = Context(BOOTSTRAP_REPS, BOOTSTRAP_SEED, scales, order)
    drawn = {name: {"options": options, **FIGURES[name][0](rows, options, context)}
             for name, options in figures.items()}
    manifests = [r.manifest for r in runs if r.manifest]
    root = Path(os.path.commonpath([str(p.resolve()) for p in paths]))
    shown = lambda path: str(path.relative_to(root)) if path.is_relative_to(root) else str(path)  # noqa: E731
    return {
        "rows": table, "aggregates": aggregates, "improvements": improvements(aggregates),
        "normalisation": {env: scales[env] for env in sorted({env for _, env in rows}) if env in scales},
        "speed": [{"run": shown(r.path), "label": r.label, "env": r.env, "seed": r.seed,
                   "steps": r.summary.get("total_steps"), "steps_per_second": r.summary.get("steps_per_second"),
                   "wall_seconds": r.summary.get("wall_seconds")} for r in runs if r.complete],
        "incomplete": [shown(r.path) for r in runs if not r.complete],
        "bench": invocations, "figures": drawn,
        "commands": sorted({m["command"] for m in manifests if m.get("command")}),
        "commits": sorted({m.get("git_commit") or "unknown" for m in manifests}),
        "packages": sorted({json.dumps(m.get("packages", {}), sort_keys=True) for m in manifests}),
        "hardware": sorted({json.dumps(m.get("hardware", {}), sort_keys=True) for m in manifests}),
        "bootstrap": {"reps": BOOTSTRAP_REPS, "seed": BOOTSTRAP_SEED, "confidence": 0.95},
    }, rows


def markdown(data: dict, title: str, images: list[str]) -> str:
    lines = [f"# {title}", "",
             f"{len(data['speed'])} complete runs; {len(data['incomplete'])} incomplete (left out). Final return: "
             "the mean return of the last evaluation (deterministic policy, `eval.episodes` episodes); "
             "mean +- std over seeds. Intervals: 95% percentile intervals of "
             f"{data['bootstrap']['reps']} stratified bootstrap resamples (seed {data['bootstrap']['seed']}).", "",
             *([data["bootstrap"]["note"], ""] if data["bootstrap"].get("note") else []),
             "## Final evaluation return per entry and env", "",
             "| entry | env | budget | seeds | final return | final episodes per run | per-episode std (min .. max) "
             "| normalised | published (algo, version, budget: mean +- std; protocol; source) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for row in data["rows"]:
        refs = "<br>".join(f"{p['algo']} {p['env_version']}, {int(p['budget_steps']):,}: {p['mean']}"
                           f"{' +- ' + p['std'] if p['std'] else ''}; {p['protocol']}; {p['source']}"
                           for p in row["published"]) or "none"
        counts = sorted({n for n in row["final_episodes"] if n is not None})
        spread = "n/a" if row["episode_std"] is None else \
            f"{fmt(row['episode_std'])} ({fmt(row['episode_range'][0])} .. {fmt(row['episode_range'][1])})"
        lines.append(f"| {row['label']} | {row['env']} | {row['budget']:,} | {len(row['seeds'])} | "
                     f"{fmt(row['mean'])} +- {fmt(row['std'])} | {'-'.join(map(str, counts)) or 'n/a'} | {spread} | "
                     f"{fmt(row['normalised_mean'], 2)} | {refs} |")
    lines += ["", "Final episodes: the episodes of each run's last evaluation (eval_episodes.csv, checked against "
              "eval.csv and summary.json); per-episode std: the spread of returns within a run's last evaluation, "
              "averaged over seeds, with the lowest and highest episode of all seeds."]
    fewest = min(len(row["seeds"]) for row in data["rows"])
    if fewest < 5:
        lines += ["", f"Some rows have only {fewest} seed(s): their intervals are coarse, since a bootstrap of n runs "
                  "can only recombine those n values (Agarwal et al. recommend at least 5 runs per task)."]
    lines += ["", "## Aggregate over envs (normalised scores: random policy 0, reference 1)", ""]
    if data["aggregates"]:
        lines += ["| entry | envs | runs | IQM [95% CI] | mean [95% CI] |", "|---|---|---:|---:|---:|"]
        for label, agg in data["aggregates"].items():
            iqm, mean = agg["iqm"], agg["mean"]
            lines.append(f"| {label} | {', '.join(agg['envs'])} | {len(agg['seeds']) * len(agg['envs'])} | "
                         f"{iqm[0]:.3f} [{iqm[1]:.3f}, {iqm[2]:.3f}] | {mean[0]:.3f} [{mean[1]:.3f}, {mean[2]:.3f}] |")
        if "performance_profiles.png" in images:
            lines += ["", "Performance profiles (fraction of runs above each normalised score, bootstrap band):", "",
                      "![performance profiles](performance_profiles.png)"]
    else:
        lines.append("No env of these runs has a normalisation scale (conf/bench/reference/normalisation.csv).")
    if data["improvements"]:
        lines += ["", "## Probability of improvement", "",
                  "P(X > Y): the probability that a run of X on an env scores above a run of Y (ties count one "
                  "half), averaged over the envs both ran; P(Y > X) = 1 - P(X > Y).", "",
                  "| X | Y | envs | P(X > Y) [95% CI] |", "|---|---|---|---:|"]
        for imp in data["improvements"]:
            lines.append(f"| {imp['x']} | {imp['y']} | {', '.join(imp['envs'])} | "
                         f"{imp['p']:.3f} [{imp['low']:.3f}, {imp['high']:.3f}] |")
    lines += ["", "## Learning curves", "",
              "Evaluation return against environment steps: mean over seeds, 95% bootstrap band over seeds; "
              "crosses: published figures at their budget, dotted lines: published figures at a larger budget "
              "than these runs' (protocols differ, see the table above).", "",
              "![learning curves](learning_curves.png)", ""]
    for name, figure in data["figures"].items():
        lines += FIGURES[name][2](figure, f"{name}.png") + [""]
    lines += ["## Speed", "", "| run | steps | steps/s (training) | wall time (s) |", "|---|---:|---:|---:|"]
    for run in data["speed"]:
        lines.append(f"| {run['label']} {run['env']} seed {run['seed']} | {fmt(run['steps'], 0)} | "
                     f"{fmt(run['steps_per_second'], 0)} | {fmt(run['wall_seconds'], 1)} |")
    lines += ["", "## Normalisation", "", "| env | random score | how | reference | source |", "|---|---:|---|---:|---|"]
    for env, scale in data["normalisation"].items():
        lines.append(f"| {env} | {scale['random_score']} | {scale['random_protocol']} | {scale['reference_score']} | "
                     f"{scale['reference_source']} |")
    lines += ["", "## Reproduce", ""]
    for invocation in data["bench"]:
        lines += [f"- `{invocation['command']}`"] + [f"  - `{m}`" for m in invocation["multiruns"]]
    if not data["bench"]:  # a suite's multiruns above say the same as its runs' manifests
        lines += ["Run commands (manifest.json of each run):", ""] + [f"- `{c}`" for c in data["commands"]]
    lines += ["", f"Commit(s): {', '.join(data['commits'])}", "", "Packages:", ""]
    lines += [f"- `{p}`" for p in data["packages"]] + ["", "Hardware:", ""] + [f"- `{h}`" for h in data["hardware"]]
    if data["incomplete"]:
        lines += ["", "## Incomplete runs (left out)", ""] + [f"- {p}" for p in data["incomplete"]]
    return "\n".join(lines) + "\n"


def write_report(paths: list[Path], out: Path, title: str = "Benchmark report",
                 figures: dict[str, dict] | None = None) -> Path:
    data, rows = build(paths, figures)
    out.mkdir(parents=True, exist_ok=True)
    images = ["learning_curves.png"]
    plot_curves(rows, out / "learning_curves.png")
    if data["aggregates"]:
        plot_profiles(data["aggregates"], out / "performance_profiles.png")
        images.append("performance_profiles.png")
    for name, figure in data["figures"].items():
        if drawable(name, figure):
            FIGURES[name][1](figure, out / f"{name}.png")
            images.append(f"{name}.png")
    # Commands of the runs' manifests (of runs made before rlrun masked them too) hold no password.
    (out / "report.json").write_text(mask_url_passwords(json.dumps(data, indent=2, sort_keys=True)) + "\n")
    (out / "report.md").write_text(mask_url_passwords(markdown(data, title, images)))
    return out / "report.md"
