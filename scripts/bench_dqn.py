"""Benchmark pairs for bench_speed.py: DQN and its variants against Stable-Baselines3.

Each entry: name -> (rlrun round, baseline round or None, baseline name); a round takes
(budget steps, seed) and returns (steps taken, seconds, training episodic returns).
"""

from __future__ import annotations

BENCHMARKS: dict = {}
