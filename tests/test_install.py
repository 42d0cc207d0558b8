"""Installing rlrun the normal way: the configs travel with the package (rlrun.conf), so a wheel works
from any working directory; `rlrun --version` and `--help` speak for rlrun, not Hydra."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_version_is_rlruns(rlrun, tmp_path):
    result = rlrun("--version", cwd=tmp_path)
    assert result.returncode == 0, result.describe()
    assert result.stdout.strip() == f"rlrun {metadata.version('rlrun')}"


def test_help_has_examples_and_the_algorithms_for_each_action_space(rlrun, tmp_path):
    result = rlrun("--help", cwd=tmp_path)
    assert result.returncode == 0, result.describe()
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"rlrun {metadata.version('rlrun')}: ")
    assert sum(line.startswith("  rlrun ") for line in lines[:8]) == 3  # three usage examples
    discrete = next(line for line in lines if "discrete actions:" in line)
    continuous = next(line for line in lines if "continuous actions:" in line)
    assert "dqn" in discrete and "sac" not in discrete
    assert "sac" in continuous and "dqn" not in continuous
    assert "== Config groups: choose one of each (group=option) ==" in result.stdout  # tests/test_artifacts.py has more


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["wheel", "editable"])
def test_installed_rlrun_trains_and_evaluates_from_another_directory(mode, tmp_path):
    """Build from a copy of the source (nothing written into the repository), install into a fresh venv,
    and train + evaluate from an unrelated directory. The venv sees this interpreter's site-packages
    through a .pth file (as --system-site-packages would): torch and the rest are not downloaded."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    for name in ("src", "conf"):
        shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    venv = tmp_path / "venv"
    # --without-pip: pip and setuptools come from this interpreter's site-packages too (the venv's bundled
    # setuptools is too old to build an editable wheel), and install into the venv (its sys.prefix).
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    venv_site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                    check=True, capture_output=True, text=True).stdout.strip())
    (venv_site / "_deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    pip = [python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--ignore-installed"]
    if mode == "wheel":
        subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w",
                        str(tmp_path / "dist"), str(source)], check=True)
        (wheel,) = (tmp_path / "dist").glob("rlrun-*.whl")
        subprocess.run([*pip, str(wheel)], check=True)
    else:
        subprocess.run([*pip, "-e", str(source)], check=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    where = subprocess.run([python, "-c", "import rlrun, rlrun.resources as r; print(rlrun.__file__); print(r.CONF_DIR)"],
                           cwd=work, check=True, capture_output=True, text=True).stdout.split()
    expected_root = venv_site if mode == "wheel" else source
    assert all(Path(p).is_relative_to(expected_root) for p in where), where
    run = subprocess.run([venv / "bin" / "rlrun", "env=CartPole", "logger=csv", "total_steps=512", "eval.episodes=1"],
                         cwd=work, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    (run_dir,) = (work / "outputs").glob("*/*_ppo_CartPole_seed0")
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    evaluated = subprocess.run([venv / "bin" / "rlrun-eval", str(run_dir), "episodes=2"], cwd=work, capture_output=True,
                               text=True, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    assert "+-" in evaluated.stdout
