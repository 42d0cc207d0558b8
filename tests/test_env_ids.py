"""Any env id without an env file: `rlrun env=<gymnasium id>` and `env=<module>:<id>` on conf/env/
generic.yaml, named after the id, never with another env's tuned file; an env file with only `id:`;
resume= of a --config-dir run without repeating --config-dir; envs whose constructor takes no
render_mode. Real subprocess runs of the CLI."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

TESTS = Path(__file__).parent
SHORT = ("logger=csv", "eval.episodes=1", "total_steps=256", "algo.num_steps=128", "algo.num_minibatches=4",
         "eval.every_steps=256", "checkpoint.every_steps=128")


@pytest.fixture
def space_envs_importable(monkeypatch):
    """tests/ on the PYTHONPATH of the rlrun subprocesses, so that env=space_envs:<id> imports."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))


def only_run_dir(cwd: Path) -> Path:
    (run_dir,) = (cwd / "outputs").glob("*/*")
    return run_dir


def composed(run_dir: Path) -> dict:
    return yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())


def test_a_registered_id_runs_on_generic_defaults_named_after_it(rlrun, tmp_path):
    result = rlrun("algo=ppo", "env=CartPole-v1", *SHORT, cwd=tmp_path)
    assert result.returncode == 0, result.describe()
    run_dir = only_run_dir(tmp_path)
    assert run_dir.name.endswith("_ppo_CartPole-v1_seed0")
    config = composed(run_dir)
    assert config["env"]["id"] == "CartPole-v1"
    # Not env=CartPole's tuned file (tuned/ppo_CartPole.yaml: 8 envs x 32 steps, 100k steps): ppo.yaml's defaults.
    assert config["algo"]["num_envs"] == 1 and config["total_steps"] == 256
    assert config["env"]["normalize_obs"] is False


def test_a_tuned_file_named_after_the_id_applies(rlrun, tmp_path):
    tuned = tmp_path / "my_conf" / "tuned"
    tuned.mkdir(parents=True)
    (tuned / "ppo_Acrobot-v1.yaml").write_text("# @package _global_\nalgo:\n  gamma: 0.97\n")
    result = rlrun("--config-dir", str(tmp_path / "my_conf"), "algo=ppo", "env=Acrobot-v1", *SHORT, cwd=tmp_path)
    assert result.returncode == 0, result.describe()
    assert composed(only_run_dir(tmp_path))["algo"]["gamma"] == 0.97


def test_module_id_of_an_env_without_render_mode(rlrun, tmp_path, space_envs_importable):
    """RenderlessReach's constructor takes no render_mode: gymnasium.make is asked for none (no video)."""
    result = rlrun("algo=ppo", "env=space_envs:RenderlessReach-v0", *SHORT, cwd=tmp_path)
    assert result.returncode == 0, result.describe()
    run_dir = only_run_dir(tmp_path)
    assert run_dir.name.endswith("_ppo_space_envs:RenderlessReach-v0_seed0")
    assert (run_dir / "checkpoints" / "last.pt").is_file()


def test_an_env_module_that_does_not_import_is_one_line(rlrun, tmp_path):
    result = rlrun("algo=ppo", "env=no_such_package_here:Thing-v0", *SHORT, cwd=tmp_path)
    assert result.returncode != 0
    (line,) = result.stderr_lines()
    assert line.startswith("rlrun: error: env.id 'no_such_package_here:Thing-v0': its module 'no_such_package_here' cannot "
                           "be imported")
    assert not list(tmp_path.glob("outputs/*/*"))  # no run directory left behind


def test_an_env_file_with_only_an_id_trains_and_resumes_without_repeating_config_dir(rlrun, tmp_path):
    env_dir = tmp_path / "my_conf" / "env"
    env_dir.mkdir(parents=True)
    (env_dir / "OnlyId.yaml").write_text("id: Acrobot-v1\n")
    first = rlrun("--config-dir", str(tmp_path / "my_conf"), "algo=ppo", "env=OnlyId", *SHORT, cwd=tmp_path)
    assert first.returncode == 0, first.describe()
    run_dir = only_run_dir(tmp_path)
    assert composed(run_dir)["env"]["id"] == "Acrobot-v1"
    # From another directory, without --config-dir: the run's recorded config directory is used again.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    resumed = rlrun(f"resume={run_dir}", "total_steps=512", cwd=elsewhere)
    assert resumed.returncode == 0, resumed.describe()
    assert f"composes with the run's --config-dir {tmp_path / 'my_conf'}" in resumed.stderr
    assert composed(run_dir)["total_steps"] == 512
    assert yaml.safe_load((run_dir / "summary.json").read_text())["total_steps"] == 512
    # A config directory is code: gone (a run directory copied to another machine), it is not guessed at.
    (tmp_path / "my_conf").rename(tmp_path / "moved")
    refused = rlrun(f"resume={run_dir}", "total_steps=768", cwd=elsewhere)
    assert refused.returncode != 0
    assert refused.stderr_lines() == [f"rlrun: error: resume={run_dir}: the run was made with --config-dir "
                                      f"{tmp_path / 'my_conf'}, which does not exist here; pass the config directory "
                                      "to use with --config-dir"], refused.describe()
    assert composed(run_dir)["total_steps"] == 512
