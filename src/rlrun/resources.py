"""Where rlrun's Hydra configs live once installed: the package `rlrun.conf`.

The configs stay in the repository's top-level conf/ (what a user reads to learn the choices); setup.py
maps the package `rlrun.conf` onto that folder, so a wheel, `pip install .` and `pip install -e .` all
carry it and every entry point finds it from any working directory. Every reader of conf/ (the CLI,
the runner, the tuner, tests) asks `conf_dir()`, never a path relative to its own file.
"""

from __future__ import annotations

from importlib import util
from pathlib import Path


def conf_dir() -> Path:
    """The folder that holds config.yaml and the config groups (algo/, env/, ...)."""
    try:
        spec = util.find_spec("rlrun.conf")
    except ModuleNotFoundError:
        spec = None
    if spec is not None and spec.submodule_search_locations:
        # conf/ has no __init__.py (it holds only YAML): a namespace package, whose one location is the folder.
        folder = Path(next(iter(spec.submodule_search_locations)))
        if (folder / "config.yaml").is_file():
            return folder
    # A source checkout put on sys.path without installing (PYTHONPATH=src, or an editable install made
    # before rlrun.conf existed): the folder beside src/.
    folder = Path(__file__).resolve().parents[2] / "conf"
    if (folder / "config.yaml").is_file():
        return folder
    raise RuntimeError("rlrun's configs (package rlrun.conf) are missing from this installation: "
                       "reinstall rlrun (pip install .) from a complete checkout")


CONF_DIR = conf_dir()
ALGO_DIR = CONF_DIR / "algo"


def algo_target(name: str) -> str:
    """The `_target_` class of conf/algo/<name>.yaml, following its defaults list to the file it extends."""
    from omegaconf import OmegaConf

    node = OmegaConf.load(ALGO_DIR / f"{name}.yaml")
    if "_target_" in node:
        return node["_target_"]
    if "_target_" in node.get("algo", {}):  # a `# @package _global_` file: the algorithm is under algo:
        return node["algo"]["_target_"]
    parents = [entry for entry in node.get("defaults", []) if isinstance(entry, str) and entry != "_self_"]
    return algo_target(parents[0])
