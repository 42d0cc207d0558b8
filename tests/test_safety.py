"""Run directories are data, configs are code, and no secret is written down (docs/security.md)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from rlrun.secrets import mask_url_passwords
from tests.conftest import FAST


@pytest.mark.parametrize("url", [
    "postgresql://user:PASS@host/db",
    "postgresql+psycopg2://user:PASS@host:5432/db",
    "mysql://root:s3cr%40t@127.0.0.1:3306/optuna",
    "postgresql://user:PASS@[::1]:5432/db?sslmode=require",
    "sqlite:///outputs/tune/study.db",
    "postgresql://user@host/db",
])
def test_url_password_is_masked_as_sqlalchemy_renders_it(url):
    make_url = pytest.importorskip("sqlalchemy.engine").make_url
    assert mask_url_passwords(url) == make_url(url).render_as_string(hide_password=True)


@pytest.mark.parametrize("text, expected", [
    ("rlrun-tune tune.storage=postgresql://alice:hunter2@db.lab:5432/studies algo=ppo",
     "rlrun-tune tune.storage=postgresql://alice:***@db.lab:5432/studies algo=ppo"),
    # an unescaped '@' or '/' in the password: masked whole, never cut at its first '@'
    ("tune.storage='postgresql://alice:p@ss/w@rd@db.lab/studies'",
     "tune.storage='postgresql://alice:***@db.lab/studies'"),
    ("postgresql://alice:p?a#s@db.lab/studies", "postgresql://alice:***@db.lab/studies"),
    # an '@' in the query: masked up to it (more than the password, never less)
    ("postgresql://alice:pw@db.lab/s?application_name=a@b", "postgresql://alice:***@b"),
    ("postgresql://db.lab/studies?user=alice&password=hunter2&sslmode=require",
     "postgresql://db.lab/studies?user=alice&password=***&sslmode=require"),
    ("two: redis://:tok@r1:6379/0 and postgresql://bob:pw2@h/db",
     "two: redis://:***@r1:6379/0 and postgresql://bob:***@h/db"),
    ("no secrets: http://example.org:8080/path user:pass tune.storage=null",
     "no secrets: http://example.org:8080/path user:pass tune.storage=null"),
])
def test_url_passwords_are_masked_in_any_text(text, expected):
    assert mask_url_passwords(text) == expected
    assert mask_url_passwords(expected) == expected


# --- resume= replays only what rlrun records ---------------------------------------------------------

EXPLOIT = '+hydra.callbacks.x={_target_:torch.load,f:"${hydra.run.dir}/checkpoints/stats.pt",weights_only:false}'


class MakesMarker:
    """A pickle that creates a file when it is loaded: the payload of the issue's exploit."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def every_file(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def own_copy(finished_cartpole_run, tmp_path) -> Path:
    result, run_dir = finished_cartpole_run
    assert result.returncode == 0, result.describe()
    copy = tmp_path / "downloaded_run"
    shutil.copytree(run_dir, copy)
    return copy


def assert_refused_in_one_line(result, entry: str) -> str:
    lines = result.stderr_lines()
    assert result.returncode != 0, result.describe()
    assert len(lines) == 1 and lines[0].startswith("rlrun: error: "), result.describe()
    assert repr(entry) in lines[0], lines[0]
    return lines[0]


def test_resume_refuses_the_issues_hydra_callback_exploit_and_runs_nothing(rlrun, own_copy, tmp_path):
    marker = tmp_path / "pwned"
    torch.save(MakesMarker(marker), own_copy / "checkpoints" / "stats.pt")
    overrides = own_copy / ".hydra" / "overrides.yaml"
    overrides.write_text(overrides.read_text() + yaml.safe_dump([EXPLOIT]))
    before = every_file(own_copy)
    result = rlrun(f"resume={own_copy}", "total_steps=4096", cwd=tmp_path)
    line = assert_refused_in_one_line(result, EXPLOIT)
    assert "hydra" in line
    assert not marker.exists()
    assert every_file(own_copy) == before  # cli.log and overrides.yaml included


@pytest.mark.parametrize("entry, why", [
    ("hydra.job.chdir=true", "hydra.*"),
    ("+algo.extra_key=1", "'+' addition"),
    ("++seed=5", "'++' addition"),
    ("~env.wrappers", "deletion"),
    ("+nonsense=1", "unknown key 'nonsense'"),
    ("algo._target_=os.system", "_target_"),
    ("eval.episodes=${oc.env:HOME}", "interpolation"),
    ("env=../../../tmp/evil", "outside the config directory"),
])
def test_resume_refuses_any_override_rlrun_does_not_record_in_one_line(rlrun, own_copy, tmp_path, entry, why):
    overrides = own_copy / ".hydra" / "overrides.yaml"
    overrides.write_text(overrides.read_text() + yaml.safe_dump([entry]))
    before = every_file(own_copy)
    result = rlrun(f"resume={own_copy}", "total_steps=4096", cwd=tmp_path)
    assert why in assert_refused_in_one_line(result, entry)
    assert every_file(own_copy) == before


def test_a_refused_line_given_again_on_the_command_line_resumes(rlrun, own_copy, tmp_path, monkeypatch):
    overrides = own_copy / ".hydra" / "overrides.yaml"
    lines = yaml.safe_load(overrides.read_text())
    overrides.write_text(yaml.safe_dump([o for o in lines if not o.startswith("eval.episodes=")]
                                        + ["eval.episodes=${oc.env:EPISODES}"]))
    result = rlrun(f"resume={own_copy}", "total_steps=2304", "eval.episodes=1", cwd=tmp_path)
    assert result.returncode == 0, result.describe()
    assert "eval.episodes=1" in yaml.safe_load(overrides.read_text())


def test_overrides_yaml_keeps_interpolations_unresolved_and_no_env_secret_reaches_any_file(rlrun, tmp_path, run_dir,
                                                                                            monkeypatch):
    monkeypatch.setenv("RLRUN_TEST_TOKEN", "tok-9f8e7d6c")  # the subprocess inherits it
    entry = "+env.kwargs.sutton_barto_reward=${oc.env:RLRUN_TEST_TOKEN}"
    result = rlrun(*FAST, "total_steps=512", "eval.every_steps=256", entry, cwd=tmp_path, run_dir=run_dir)
    assert result.returncode == 0, result.describe()
    assert entry in yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text())
    assert not [name for name, data in every_file(run_dir).items() if b"tok-9f8e7d6c" in data]
    state = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert state["config"]["env"]["kwargs"]["sutton_barto_reward"] == "${oc.env:RLRUN_TEST_TOKEN}"


# --- names that become folders ---------------------------------------------------------------------

def cli(entry_point: str, *args, cwd: Path, rlrun) -> subprocess.CompletedProcess:
    code = f"import sys; from rlrun.cli import {entry_point}; {entry_point}()"
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=rlrun.env(cwd),
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def test_a_study_name_that_leaves_outputs_is_refused_in_one_line(rlrun, tmp_path):
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    done = cli("tune_main", "algo=ppo", "env=CartPole", "tune.study_name=../../x", "tune.n_trials=1", cwd=cwd,
               rlrun=rlrun)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert lines[0].startswith("rlrun-tune: error: tune.study_name '../../x'"), lines[0]
    assert list(tmp_path.rglob("*")) == [tmp_path / "a", cwd]  # nothing written, outputs/ included


def test_a_suite_name_that_leaves_outputs_is_refused_in_one_line(rlrun, tmp_path):
    cwd = tmp_path / "a" / "b"
    cwd.mkdir(parents=True)
    suite = {"name": "../../x", "envs": ["CartPole"], "seeds": [0], "total_steps": 512, "launcher": "basic",
             "entries": [{"label": "ppo", "algo": "ppo"}]}
    (cwd / "suite.yaml").write_text(yaml.safe_dump(suite))
    done = cli("bench_main", "suite.yaml", cwd=cwd, rlrun=rlrun)
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1, done.stderr
    assert lines[0].startswith("rlrun-bench: error: suite name '../../x'"), lines[0]
    assert sorted(tmp_path.rglob("*")) == [tmp_path / "a", cwd, cwd / "suite.yaml"]


# --- load_policy and rlrun-eval import nothing a run directory names, unless trusted ----------------

FOREIGN_MODULE = '''
import os
import pathlib

import gymnasium as gym

from rlrun.algos.ppo import PPO as _PPO

pathlib.Path(os.environ["RLRUN_TEST_MARKER"]).write_text("imported")  # what any code in it could do


class PassThrough(gym.Wrapper):
    pass


class PPO(_PPO):
    pass
'''


@pytest.fixture
def foreign_run(own_copy, tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A downloaded run directory whose config names a module that writes a marker file when imported."""
    (tmp_path / "foreign_pkg.py").write_text(FOREIGN_MODULE)
    marker = tmp_path / "imported_marker"
    monkeypatch.setenv("RLRUN_TEST_MARKER", str(marker))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    monkeypatch.syspath_prepend(str(tmp_path))  # importable in this process too: load_policy must not import it
    return own_copy, marker


def name_foreign_code(run_dir: Path, where: str) -> None:
    for name in ("best.pt", "last.pt"):
        path = run_dir / "checkpoints" / name
        state = torch.load(path, weights_only=True)
        if where == "env.id":
            state["config"]["env"]["id"] = "foreign_pkg:" + state["config"]["env"]["id"]
        elif where == "env.wrappers":
            state["config"]["env"]["wrappers"] = [{"_target_": "foreign_pkg.PassThrough"}]
        else:
            state["config"]["algo"]["_target_"] = "foreign_pkg.PPO"
        torch.save(state, path)


def rlrun_eval(*args, cwd: Path, rlrun) -> subprocess.CompletedProcess:
    return cli("eval_main", *args, cwd=cwd, rlrun=rlrun)


@pytest.mark.parametrize("where", ["env.id", "env.wrappers", "algo._target_"])
def test_rlrun_eval_and_load_policy_import_no_module_a_run_names_unless_trusted(rlrun, foreign_run, tmp_path, where):
    from rlrun import load_policy
    from rlrun.config import ConfigError

    run_dir, marker = foreign_run
    name_foreign_code(run_dir, where)
    refused = rlrun_eval(run_dir, "episodes=1", cwd=tmp_path, rlrun=rlrun)
    lines = refused.stderr.strip().splitlines()
    assert refused.returncode != 0 and len(lines) == 1, refused.stderr
    assert lines[0].startswith("rlrun-eval: error: ") and f"foreign_pkg ({where}" in lines[0], lines[0]
    assert "trust_code=true" in lines[0]
    with pytest.raises(ConfigError, match="trust_code"):
        load_policy(run_dir)
    assert not marker.exists() and "foreign_pkg" not in sys.modules
    trusted = rlrun_eval(run_dir, "episodes=1", "trust_code=true", cwd=tmp_path, rlrun=rlrun)
    assert trusted.returncode == 0, trusted.stderr
    assert marker.read_text() == "imported"  # the module is real: trusted, it is imported


# --- no secret is written down ----------------------------------------------------------------------

SECRET = "S3cret-pw"
URL = f"postgresql://alice:{SECRET}@db.lab:5432/studies"


def test_a_password_on_the_command_line_reaches_no_file_wandb_or_report(rlrun, tmp_path, run_dir):
    # hydra.job.env_set gives the job an environment variable: a real way a URL with a password reaches sys.argv.
    result = rlrun("env=CartPole", "logger=wandb", "logger.wandb.mode=offline", "eval.episodes=1", "total_steps=512",
                   "eval.every_steps=256", f"+hydra.job.env_set.RLRUN_DB_URL={URL}", cwd=tmp_path, run_dir=run_dir)
    assert result.returncode == 0, result.describe()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert "postgresql://alice:***@db.lab:5432/studies" in manifest["command"]
    assert list((run_dir / "wandb").rglob("*.wandb")), "no W&B offline run was written"
    report = cli("report_main", run_dir, "--out", tmp_path / "report", cwd=tmp_path, rlrun=rlrun)
    assert report.returncode == 0, report.stderr
    leaks = [name for folder in (run_dir, tmp_path / "report") for name, data in every_file(folder).items()
             if SECRET.encode() in data]
    assert leaks == []
    assert SECRET not in result.stdout + result.stderr


def test_every_rlrun_log_line_is_masked(caplog):
    from rlrun.secrets import mask_log_lines

    mask_log_lines()
    with caplog.at_level(logging.INFO, logger="rlrun"):
        logging.getLogger("rlrun").info("storage %s, then %s", URL, "sqlite:///x.db")
    assert caplog.messages == ["storage postgresql://alice:***@db.lab:5432/studies, then sqlite:///x.db"]
