"""Learning curves of rlrun runs: mean evaluation return over seeds with a 95% bootstrap band, one panel
per env, published returns marked (conf/bench/reference). The same figure as rlrun-report's, without
the rest of the report.

    .venv/bin/python scripts/plot_runs.py outputs/2026-11-24/*HalfCheetah* --out curves.png
    .venv/bin/python scripts/plot_runs.py outputs/multirun/<date>/<time> --out sweep.png

Runs are grouped by algorithm and the overrides that set them apart (`ppo[algo.clip_coef=0.1]`), so
the jobs of one sweep get their own colour and label; unfinished runs are left out.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rlrun.bench.report import plot_curves
from rlrun.bench.runs import group, read_runs
from rlrun.config import ConfigError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run directories, or folders holding them")
    parser.add_argument("--out", type=Path, default=Path("curves.png"), help="the PNG to write")
    args = parser.parse_args()
    try:
        rows = group(read_runs(args.runs))
    except ConfigError as error:
        sys.exit(f"plot_runs: error: {error}")
    if not rows:
        sys.exit(f"plot_runs: error: no finished run directory under {', '.join(map(str, args.runs))}")
    plot_curves(rows, args.out)
    print(f"plot_runs: {args.out}: {len(rows)} curves")


if __name__ == "__main__":
    main()
