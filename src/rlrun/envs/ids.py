"""`env=<gymnasium id>` and `env=<module>:<id>` on the command line, without an env file.

Hydra picks `env=X` from a file env/X.yaml on its search path (rlrun's conf/, then --config-dir). When
there is none and X looks like a gymnasium id (`Name-v<N>`, `module:Name-v<N>`, `Namespace/Name-v<N>`),
`register_env_ids` stores an env config named X in Hydra's ConfigStore before composition: the
defaults of conf/env/generic.yaml with `id: X`. So the run is named after the id, the tuned file
`tuned/<algo>_<X>.yaml` applies if it exists (never another env's), and a resumed run, whose recorded
overrides say `env=X`, composes the same config again.
"""

from __future__ import annotations

import re
from pathlib import Path

from omegaconf import OmegaConf

# Name-v0, ALE/Pong-v5, my_pkg.envs:MyEnv-v0, my_pkg.envs:MyEnv (a module-qualified name needs no version)
ID_PATTERN = re.compile(r"^([\w.]+:)?([\w.-]+/)?[\w.-]+-v\d+$|^[\w.]+:[\w./-]+$")


def config_dirs(argv: list[str]) -> list[Path]:
    """The --config-dir / -cd directories of a command line."""
    dirs = []
    for i, arg in enumerate(argv):
        if arg in ("--config-dir", "-cd") and i + 1 < len(argv):
            dirs.append(Path(argv[i + 1]))
        elif arg.startswith("--config-dir="):
            dirs.append(Path(arg.split("=", 1)[1]))
    return dirs


def has_env_file(name: str, conf_dir: Path, argv: list[str]) -> bool:
    return any((folder / "env" / f"{name}.yaml").is_file() for folder in (conf_dir, *config_dirs(argv)))


def register_env_ids(argv: list[str], conf_dir: Path) -> list[str]:
    """Store a generic env config for each `env=` value of `argv` that is a gymnasium id without an
    env file; returns argv unchanged."""
    from hydra.core.config_store import ConfigStore

    values = [arg.split("=", 1)[1] for arg in argv if arg.split("=", 1)[0] == "env"]
    if not values:
        return argv
    generic = None
    for value in values[-1].split(","):  # a sweep, env=A-v1,B-v0, lists several
        if has_env_file(value, conf_dir, argv) or not ID_PATTERN.match(value):
            continue
        if generic is None:
            generic = OmegaConf.load(conf_dir / "env" / "generic.yaml")
        node = OmegaConf.merge(generic, {"id": value})
        ConfigStore.instance().store(group="env", name=value, node=node)
    return argv
