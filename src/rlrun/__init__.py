"""rlrun: a config-driven deep-RL experiment runner."""

__version__ = "0.1.0"

from rlrun import sweep as _sweep

_sweep.register()  # ${rlrun.sweep_name:} and ${rlrun.parallel_jobs:...} for conf/ (see rlrun/sweep.py)


def __getattr__(name: str):
    # `from rlrun import load_policy` without importing torch and gymnasium on every `import rlrun`.
    if name == "load_policy":
        from rlrun.evaluate import load_policy

        return load_policy
    raise AttributeError(f"module 'rlrun' has no attribute {name!r}")
