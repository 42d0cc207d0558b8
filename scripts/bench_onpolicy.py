"""Benchmark pairs for bench_speed.py: A2C and TRPO against Stable-Baselines3 / sb3-contrib, A3C throughput.

Each entry: name -> (rlrun round, baseline round or None, baseline name); a round takes
(budget steps, seed) and returns (steps taken, seconds, training episodic returns).
"""

from __future__ import annotations

BENCHMARKS: dict = {}
