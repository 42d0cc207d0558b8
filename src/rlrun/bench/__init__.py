"""Benchmark suites as Hydra multiruns, and their statistically sound reports (Agarwal et al. 2021)."""
