"""Recompute the bootstrap intervals of committed reports (docs/benchmarks/*/) at rlrun.bench.stats.REPS
resamples, from the score matrices each report.json keeps, without the run directories.

What a report.json holds is enough for: the IQM and mean intervals and the performance profiles of
every entry (aggregates.*.scores), the probability of improvement of every pair (from the same
matrices), and the `normalised_scores` figure's intervals (settings.*.scores). The learning-curve bands
and the intervals of the `value_estimates` and `workers` figures need the runs' own files: they keep
the resamples they were made with, and the report says so in a note under its first paragraph.

    python scripts/rebootstrap_reports.py docs/benchmarks/*/ [--date 2026-12-07]

report.md is rewritten by rlrun.bench.report.markdown where that reproduces the committed file from its
report.json (checked first); for a report written by an older rlrun-report, only the lines of its
aggregate and probability-of-improvement tables and its resampling sentence are replaced.
"""

from __future__ import annotations

import argparse
import json
import re
from datetime import date
from pathlib import Path

import numpy as np

from rlrun.bench import report, stats
from rlrun.bench.figures import FIGURES

KEPT = {"value_estimates": "the value_estimates figure's intervals and bands", "workers": "the workers figure's "
        "intervals and bands"}


def recompute(data: dict) -> list[str]:
    """Update data's intervals in place; returns what keeps its earlier resamples."""
    reps, seed = report.BOOTSTRAP_REPS, report.BOOTSTRAP_SEED
    for agg in data["aggregates"].values():
        matrix = np.array(agg["scores"], dtype=float)
        agg["iqm"] = list(stats.stratified_bootstrap_ci(matrix, stats.iqm, reps, seed=seed))
        agg["mean"] = list(stats.stratified_bootstrap_ci(matrix, stats.mean, reps, seed=seed))
        agg["profile"] = [p.tolist() for p in
                          stats.performance_profile_ci(matrix, report.PROFILE_THRESHOLDS, reps, seed=seed)]
    data["improvements"] = report.improvements(data["aggregates"])
    kept = ["the learning-curve bands"]
    for name, figure in data.get("figures", {}).items():
        if name == "normalised_scores":
            for setting in figure["settings"]:
                setting["mean"] = list(stats.stratified_bootstrap_ci(np.array(setting["scores"], dtype=float),
                                                                     stats.mean, reps, seed=seed))
        elif name in KEPT:
            kept.append(KEPT[name])
    return kept


def replace_table_lines(text: str, data: dict) -> str:
    """An older report.md: its aggregate and probability-of-improvement rows, in today's format."""
    for label, agg in data["aggregates"].items():
        iqm, mean = agg["iqm"], agg["mean"]
        start = f"| {label} | {', '.join(agg['envs'])} | {len(agg['seeds']) * len(agg['envs'])} | "
        row = (f"{start}{iqm[0]:.3f} [{iqm[1]:.3f}, {iqm[2]:.3f}] | {mean[0]:.3f} [{mean[1]:.3f}, {mean[2]:.3f}] |")
        text, n = re.subn(rf"^{re.escape(start)}.*$", lambda _: row, text, count=1, flags=re.MULTILINE)
        assert n == 1, f"no aggregate row for {label}"
    for imp in data["improvements"]:
        start = f"| {imp['x']} | {imp['y']} | {', '.join(imp['envs'])} | "
        row = f"{start}{imp['p']:.3f} [{imp['low']:.3f}, {imp['high']:.3f}] |"
        text, n = re.subn(rf"^{re.escape(start)}.*$", lambda _: row, text, count=1, flags=re.MULTILINE)
        assert n == 1, f"no improvement row for {imp['x']} vs {imp['y']}"
    text, n = re.subn(r"percentile intervals of \d+ stratified bootstrap resamples",
                      f"percentile intervals of {data['bootstrap']['reps']} stratified bootstrap resamples", text)
    assert n == 1
    first_paragraph_end = text.index("\n\n", text.index("Intervals:"))
    return text[:first_paragraph_end] + "\n\n" + data["bootstrap"]["note"] + text[first_paragraph_end:]


def rebootstrap(folder: Path, day: str) -> None:
    data = json.loads((folder / "report.json").read_text())
    old_md = (folder / "report.md").read_text()
    title = old_md.splitlines()[0].removeprefix("# ")
    images = sorted(p.name for p in folder.glob("*.png"))
    try:
        current_format = report.markdown(data, title, images) == old_md
    except KeyError:  # a report.json of an older rlrun-report
        current_format = False
    before = data["bootstrap"]["reps"]
    kept = recompute(data)
    data["bootstrap"]["reps"] = report.BOOTSTRAP_REPS
    data["bootstrap"]["note"] = (
        f"Intervals recomputed on {day} at {report.BOOTSTRAP_REPS:,} resamples from this report's own score "
        "matrices (scripts/rebootstrap_reports.py; the run directories are not in the repository): the aggregate, "
        "probability-of-improvement and normalised-score intervals and the performance profiles. "
        f"{' and '.join(kept).capitalize()} are those of the original {before:,} resamples.")
    (folder / "report.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    new_md = report.markdown(data, title, images) if current_format else replace_table_lines(old_md, data)
    (folder / "report.md").write_text(new_md)
    if data["aggregates"]:
        report.plot_profiles(data["aggregates"], folder / "performance_profiles.png")
    if "normalised_scores" in data.get("figures", {}):
        FIGURES["normalised_scores"][1](data["figures"]["normalised_scores"], folder / "normalised_scores.png")
    print(f"{folder}: {'rewritten' if current_format else 'table rows replaced'}; kept: {', '.join(kept)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--date", default=str(date.today()))
    args = parser.parse_args()
    for folder in args.folders:
        rebootstrap(folder, args.date)


if __name__ == "__main__":
    main()
