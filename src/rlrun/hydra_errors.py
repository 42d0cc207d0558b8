"""One line for a Hydra or OmegaConf composition error, shared by every entry point that composes
configs (rlrun, rlrun-tune, rlrun-bench), so that none of them imports another's command module."""

from __future__ import annotations

from hydra.errors import MissingConfigException
from omegaconf.errors import OmegaConfBaseException

from rlrun.resources import CONF_DIR

GROUPS = ("algo", "env", "network", "hardware", "logger")


def describe_hydra_error(error: Exception) -> str:
    """One line for a Hydra or OmegaConf composition error."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, name = error.missing_cfg_file.rpartition("/")
        if group in GROUPS:
            options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml") if p.stem != "generic")
            ids = " or a gymnasium id (env=Acrobot-v1, env=my_pkg.envs:MyEnv-v0)" if group == "env" else ""
            return f"unknown {group} '{name}'; choose one of: {', '.join(options)}{ids}"
    cause = error.__cause__ or error.__context__
    text = str(error).strip().splitlines()[0]
    if cause is not None and isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None)
        if "not in struct" in str(cause) and key:
            return f"unknown key '{key}': check its spelling against conf/ (to add a new key use +{key}=...)"
        return f"{text} {str(cause).splitlines()[0]}"
    return text
