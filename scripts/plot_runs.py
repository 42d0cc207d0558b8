"""Learning curves of rlrun runs: evaluation return against environment steps, one line per run.

    .venv/bin/python scripts/plot_runs.py outputs/2026-11-24/*HalfCheetah* --out curves.png
    .venv/bin/python scripts/plot_runs.py outputs/multirun/<date>/<time>/* --reference ../shared/reference/published_returns.csv

Runs of the same (algo, env) share a colour; with --reference, published returns at their budget are
drawn as horizontal marks for comparison (the csv's columns: algo, env, env_version, budget_steps, mean,
std, protocol, source).
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display needed
import matplotlib.pyplot as plt  # noqa: E402


def read_eval(run_dir: Path) -> tuple[list[int], list[float]]:
    with open(run_dir / "eval.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return [int(r["global_step"]) for r in rows], [float(r["mean_return"]) for r in rows]


def run_label(run_dir: Path) -> tuple[str, str, int]:
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").exists() else {}
    if summary:
        return summary["algo"], summary["env"], summary["seed"]
    # A run still going: read the choices from Hydra's record.
    import yaml
    choices = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]
    config = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    return choices["algo"], choices["env"], config["seed"]


def short_source(source: str) -> str:
    """'RL Baselines3 Zoo benchmark.md' -> 'RL Baselines3 Zoo': the words before a file or a parenthesis."""
    words = []
    for word in source.split():
        if "/" in word or word.endswith(".md") or word.startswith("("):
            break
        words.append(word)
    return " ".join(words) or source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (with eval.csv)")
    parser.add_argument("--out", type=Path, default=Path("learning_curves.png"))
    parser.add_argument("--reference", type=Path, help="published_returns.csv to draw for comparison")
    args = parser.parse_args()

    groups: dict[tuple[str, str], list[Path]] = defaultdict(list)
    for run in args.runs:
        if (run / "eval.csv").exists():
            algo, env, _ = run_label(run)
            groups[(algo, env)].append(run)
    if not groups:
        raise SystemExit("plot_runs: no run directory with an eval.csv among the arguments")
    envs = sorted({env for _, env in groups})
    fig, axes = plt.subplots(1, len(envs), figsize=(6 * len(envs), 4.2), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (algo, env), colour in zip(sorted(groups), colours * 10):
        ax = axes[0][envs.index(env)]
        for i, run in enumerate(sorted(groups[(algo, env)])):
            steps, returns = read_eval(run)
            ax.plot(steps, returns, color=colour, alpha=0.85, label=algo if i == 0 else None)
        ax.set_title(env)
        ax.set_xlabel("environment steps")
        ax.set_ylabel("evaluation return (deterministic policy)")
        ax.grid(alpha=0.3)
    if args.reference:
        with open(args.reference, newline="") as f:
            rows = [row for row in csv.DictReader(f)
                    if row["env"] in envs and any(row["algo"] == algo for algo, _ in groups)]
        placed: dict[str, list[float]] = defaultdict(list)
        for row in sorted(rows, key=lambda r: float(r["mean"])):
            ax = axes[0][envs.index(row["env"])]
            mean = float(row["mean"])
            ax.hlines(mean, 0, int(row["budget_steps"]), linestyles="dotted", colors="grey")
            # Two published figures a few percent apart: write the second label below its line.
            crowded = any(abs(mean - y) < 0.04 * abs(y) + 50 for y in placed[row["env"]])
            ax.annotate(f"{row['algo']} {row['env_version']}, {short_source(row['source'])}",
                        (int(row["budget_steps"]), mean), fontsize=7, color="grey", ha="right",
                        va="top" if crowded else "bottom")
            placed[row["env"]].append(mean)
    for ax in axes[0]:
        ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
