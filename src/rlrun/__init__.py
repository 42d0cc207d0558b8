"""rlrun: a config-driven deep-RL experiment runner."""

__version__ = "0.1.0"

from rlrun import sweep as _sweep

_sweep.register()  # ${rlrun.sweep_name:} and ${rlrun.parallel_jobs:...} for conf/ (see rlrun/sweep.py)
