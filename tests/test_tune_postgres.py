"""The tuner on a real PostgreSQL server (Debian's postgresql 15, started by scripts/postgres_local.sh as
root, with scram-sha-256 passwords): workers on several "hosts" sharing one study, one of them killed
mid-trial; bad storages refused in one line; passwords never printed or written; optuna-dashboard
serving the study. Skipped, saying why, where the server cannot start (not root, not installed).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from test_tune import SHORT, TUNE, describe, read_trials

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "postgres_local.sh"
# Trials of 4096 CartPole steps, one seed, no pruning: a few seconds each.
STUDY = ("algo=ppo", "env=CartPole", "total_steps=4096", "eval.every_steps=1024", "eval.episodes=1", "logger=csv",
         "tune.seeds=1", "tune.pruner=none")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def postgres() -> dict[str, str]:
    """A fresh server with a password: {'url': without the password, 'password', 'port'}; stopped after."""
    env = {**os.environ, "PG_LOCAL_DIR": f"/tmp/rlrun-pg-test-{os.getpid()}", "PG_LOCAL_PORT": str(free_port())}
    start = subprocess.run(["bash", str(SCRIPT), "start"], env=env, capture_output=True, text=True, timeout=180)
    if start.returncode == 2:
        pytest.skip(f"no PostgreSQL here: {start.stderr.strip().splitlines()[-1]}")
    assert start.returncode == 0, f"postgres_local.sh start failed:\n{start.stdout}\n{start.stderr}"
    exported = dict(line.removeprefix("export ").split("=", 1) for line in start.stdout.splitlines()
                    if line.startswith("export "))
    try:
        yield {"url": exported["PGURL"], "password": exported["PGPASSWORD"], "port": env["PG_LOCAL_PORT"]}
    finally:
        subprocess.run(["bash", str(SCRIPT), "stop"], env=env, capture_output=True, text=True, timeout=120)


def with_password(url: str, password: str) -> str:
    return url.replace("postgres@", f"postgres:{password}@", 1)


def tune_env(rlrun, cwd: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in rlrun.env(cwd).items() if k not in ("PGPASSWORD", "PGURL")}
    return {**env, **extra}


_storages: dict = {}


def load_pg_study(url: str, password: str, name: str):
    """The study through one storage per URL (a storage per call would open a connection pool each)."""
    import optuna

    full = with_password(url, password)
    if full not in _storages:
        _storages[full] = optuna.storages.RDBStorage(full)
    return optuna.load_study(study_name=name, storage=_storages[full])


def files_holding(root: Path, secret: str) -> list[str]:
    return [str(p) for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


# ---------------------------------------------------------------------------------------------------
# Workers on three "hosts", one killed mid-trial


@pytest.mark.cluster  # a long multi-job test: `make test-cluster` runs it
def test_three_workers_on_three_hosts_one_killed_mid_trial_end_with_exactly_n_counted_trials(
        postgres, rlrun, tmp_path):
    """Worker A here, B under host name node-b (SIGKILLed once its trial has evaluated), C under node-c.
    No survivor shares B's host, so only B's stopped heartbeat can free its trial. (grace_s leaves room for
    a worker starved of CPU on a loaded machine: its beats must not look like a death.)"""
    from optuna.trial import TrialState

    n_trials, name = 5, "three_hosts"
    study_dir = tmp_path / "study"
    url, password = postgres["url"], postgres["password"]
    args = [*STUDY, f"tune.n_trials={n_trials}", "tune.heartbeat_s=1", "tune.grace_s=20", f"tune.study_name={name}",
            f"tune.dir={study_dir}"]

    def worker(host: str | None, storage_arg: str, log: str, **env) -> subprocess.Popen:
        command = [*TUNE, *args, storage_arg, f"tune.sampler_seed={'abc'.index(log[0])}"]
        if host is not None:  # a second machine: its own host name (root; ECOSYSTEM.md)
            command = ["unshare", "-u", "bash", "-c", 'hostname "$0" && exec "$@"', host, *command]
        with open(tmp_path / log, "w") as out:
            return subprocess.Popen(command, cwd=tmp_path, env=tune_env(rlrun, tmp_path, **env), stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    # The three ways to give the password: in the URL (the worst case: it must not leak), PGPASSWORD, and
    # ${oc.env:PGURL} resolved by the tuner.
    a = worker(None, f"tune.storage={with_password(url, password)}", "a.log")
    b = worker("node-b", f"tune.storage={url}", "b.log", PGPASSWORD=password)
    c = worker("node-c", "tune.storage=${oc.env:PGURL}", "c.log", PGURL=with_password(url, password))
    killed = None
    try:
        deadline = time.monotonic() + 300
        while killed is None and time.monotonic() < deadline and b.poll() is None:
            time.sleep(0.5)
            try:
                trials = load_pg_study(url, password, name).trials
            except KeyError:  # the study is not created yet
                continue
            for t in trials:
                if (t.state == TrialState.RUNNING and t.user_attrs.get("worker") == f"node-b:{b.pid}"
                        and (study_dir / "trials" / f"trial{t.number:04d}_seed0" / "eval.csv").exists()):
                    b.send_signal(signal.SIGKILL)
                    killed = t
                    break
        b.wait()
        assert killed is not None, "worker B never ran a trial to its first evaluation:\n" + (tmp_path / "b.log").read_text()
        for proc in (a, c):
            proc.wait(timeout=300)
    finally:
        for proc in (a, b, c):
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
    for proc, log in ((a, "a.log"), (c, "c.log")):
        assert proc.returncode == 0, f"{log}: exit {proc.returncode}\n{(tmp_path / log).read_text()[-3000:]}"

    trials = load_pg_study(url, password, name).trials
    states = [(t.number, t.state.name, t.user_attrs.get("worker"), t.user_attrs.get("retry_of")) for t in trials]
    # The killed trial failed by its stale heartbeat and ran again, with the same parameters, to the end.
    assert trials[killed.number].state == TrialState.FAIL, states
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert retry.state == TrialState.COMPLETE and retry.params == killed.params, states
    assert not retry.user_attrs["worker"].startswith("node-b:"), states
    # Exactly n_trials counted trials: complete ones, and no trial left running.
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert len(complete) == n_trials, states
    assert not [t for t in trials if t.state == TrialState.RUNNING], states
    assert {t.user_attrs["worker"].split(":")[0] for t in complete} >= {"node-c"}, states
    assert (study_dir / "best.yaml").is_file()
    rows = read_trials(study_dir)
    assert len(rows) == len(trials) and rows[killed.number]["note"] == "queued again", rows
    # The password was in worker A's arguments: nothing printed or written holds it.
    for log in ("a.log", "b.log", "c.log"):
        assert password not in (tmp_path / log).read_text(), log
    assert files_holding(tmp_path, password) == []


# ---------------------------------------------------------------------------------------------------
# Bad storages: one line, nothing written


@pytest.mark.parametrize("case", ["wrong password", "unreachable server", "driver psycopg2 missing",
                                  "driver psycopg missing"])
def test_a_storage_that_cannot_be_opened_is_refused_in_one_line_without_its_password(postgres, rlrun, tmp_path,
                                                                                     case):
    url, password = postgres["url"], postgres["password"]
    env = tune_env(rlrun, tmp_path)
    secret = "not-the-password-42"
    storage = with_password(url, secret)
    expected = "password authentication failed"
    if case == "unreachable server":
        storage = f"postgresql://postgres:{secret}@127.0.0.1:{free_port()}/rlrun"
        expected = "Connection refused"
    elif case == "driver psycopg2 missing":
        storage = storage.replace("postgresql://", "postgresql+psycopg2://")
        expected = "its driver 'psycopg2' is not installed: pip install 'psycopg2-binary'"
    elif case == "driver psycopg missing":
        # psycopg made unimportable, as on a machine without it (a module of that name that fails to import).
        blocked = tmp_path / "blocked"
        blocked.mkdir()
        (blocked / "psycopg.py").write_text("raise ImportError('No module named psycopg')\n")
        env["PYTHONPATH"] = os.pathsep.join([str(blocked), env.get("PYTHONPATH", "")])
        expected = "its driver 'psycopg' is not installed: pip install 'psycopg[binary]'"
    study_dir = tmp_path / "study"
    proc = subprocess.run([*TUNE, *SHORT, f"tune.storage={storage}", f"tune.dir={study_dir}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode != 0, describe(proc)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rlrun-tune: error: tune.storage=postgresql"), describe(proc)
    assert expected in lines[0], describe(proc)
    assert secret not in proc.stdout + proc.stderr and "***@" in lines[0]
    assert not study_dir.exists() and not (tmp_path / "outputs").exists()
    assert password not in proc.stderr


def test_a_dropped_connection_is_replaced_before_use(postgres, tmp_path):
    """pool_pre_ping: the server ends the study's idle connections (what a firewall or a restart does to
    a study idle for hours); the next call reconnects instead of failing."""
    import psycopg

    from rlrun.tune_storage import StudyStorage

    url = with_password(postgres["url"], postgres["password"])
    storage = StudyStorage(url, tmp_path / "unused.journal", heartbeat_s=1, grace_s=5)
    import optuna

    study = optuna.create_study(study_name="idle", storage=storage.optuna, load_if_exists=True)
    study.enqueue_trial({})
    with psycopg.connect(url) as admin:
        ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE datname = 'rlrun' AND pid <> pg_backend_pid()").fetchone()[0]
    assert ended >= 1
    assert len(study.get_trials()) == 1


# ---------------------------------------------------------------------------------------------------
# optuna-dashboard serves the study


def dashboard_studies(storage: str, cwd: Path, env: dict[str, str] | None = None) -> list[dict]:
    """Start optuna-dashboard on 127.0.0.1 and read its /api/studies; stops it after."""
    port = free_port()
    dashboard = Path(sys.executable).with_name("optuna-dashboard")
    command = [str(dashboard)] if dashboard.exists() else [sys.executable, "-m", "optuna_dashboard"]
    proc = subprocess.Popen([*command, storage, "--host", "127.0.0.1", "--port", str(port)], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as response:
                    return json.loads(response.read())["study_summaries"]
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"optuna-dashboard did not answer: {proc.stderr.read().decode()[-2000:]}")
                time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)


def test_optuna_dashboard_serves_a_postgresql_study(postgres, tmp_path):
    import optuna

    url = with_password(postgres["url"], postgres["password"])
    study = optuna.create_study(study_name="dashboard_pg", storage=url, direction="maximize", load_if_exists=True)
    study.enqueue_trial({"x": 1.0})
    # As docs/clusters.md shows it: the URL without its password, the password from PGPASSWORD.
    studies = dashboard_studies(postgres["url"], tmp_path, {**os.environ, "PGPASSWORD": postgres["password"]})
    assert "dashboard_pg" in [s["study_name"] for s in studies]


def test_optuna_dashboard_serves_a_journal_study(rlrun, tmp_path):
    study_dir = tmp_path / "study"
    proc = subprocess.run([*TUNE, *STUDY, "tune.n_trials=1", "total_steps=1024", f"tune.dir={study_dir}"], cwd=tmp_path,
                          env=rlrun.env(tmp_path), capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, describe(proc)
    assert f"optuna-dashboard {study_dir / 'study.journal'}" in proc.stdout
    (study,) = dashboard_studies(str(study_dir / "study.journal"), tmp_path)
    assert study["study_name"] == "ppo_CartPole" and study["directions"] == ["maximize"]


def test_a_live_worker_whose_trial_was_taken_for_dead_gives_it_up_in_one_line(postgres, tmp_path, capsys):
    """A worker starved of CPU (or cut off from the database) past tune.grace_s: another worker failed its
    trial and queued it again. This worker, at its next report, gives the trial up and goes on."""
    import threading

    from optuna.trial import TrialState

    from rlrun.tune import prepare

    url = with_password(postgres["url"], postgres["password"])
    study = prepare([*STUDY, "total_steps=8192", "tune.n_trials=1", f"tune.storage={url}", "tune.study_name=starved",
                     f"tune.dir={tmp_path / 'study'}"])

    def fail_it_once_it_has_evaluated():  # what another worker's recover() does to a trial it takes for dead
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            running = study.study.get_trials(states=(TrialState.RUNNING,))
            if running and (tmp_path / "study" / "trials" / "trial0000_seed0" / "eval.csv").exists():
                study.storage.optuna.set_trial_state_values(running[0]._trial_id, state=TrialState.FAIL)
                return
            time.sleep(0.1)

    other = threading.Thread(target=fail_it_once_it_has_evaluated)
    other.start()
    study.run_trial()
    other.join()
    out = capsys.readouterr().out
    assert "trial 0 given up: no heartbeat for tune.grace_s=300 s, so another worker queued it again" in out, out
    assert study.study.trials[0].state == TrialState.FAIL
