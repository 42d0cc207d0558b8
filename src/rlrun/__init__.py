"""rlrun: a config-driven deep-RL experiment runner."""

__version__ = "0.1.0"
