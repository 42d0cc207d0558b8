"""Package layout that pyproject.toml cannot express: the package `rlrun.conf` is the top-level conf/
folder (Hydra configs, and the reference scores of conf/bench/reference), installed beside the code in src/ (see src/rlrun/resources.py).
Everything else about the project is in pyproject.toml."""

from setuptools import find_namespace_packages, setup

# Namespace discovery, as pyproject's packages.find did: a subpackage needs no __init__.py.
code = find_namespace_packages("src", include=["rlrun", "rlrun.*"], exclude=["*.__pycache__"])
conf = ["rlrun.conf", *(f"rlrun.conf.{p}" for p in find_namespace_packages("conf", exclude=["*__pycache__*"]))]
setup(packages=[*code, *conf], package_dir={"": "src", "rlrun.conf": "conf"}, package_data={"": ["*.yaml", "*.csv", "*.md", "*.xml"]})
