"""Where a tuner study lives, and how it loses no trial when workers die.

- Storage: a journal file (<study dir>/study.journal: one machine, or a shared file system) or an RDB
  URL that workers on many machines join (`tune.storage=postgresql://user@host/db`; the password from
  PGPASSWORD or ~/.pgpass, or `tune.storage=${oc.env:PGURL}`). The URL is never printed or written
  with its password: every message and record uses `mask_url`.
- Heartbeats (RDB storages): Optuna beats only inside `study.optimize()` (optuna#3256), and rlrun asks
  and tells itself, so `Heartbeat` records a running trial's beat from a thread every
  tune.heartbeat_s seconds; every live worker, on any host, fails a trial whose beat is older than
  tune.grace_s and queues its parameters again (`recover`). Connections are checked before use
  (pool_pre_ping), so a study idle for hours goes on (optuna#5600).
- A worker of this host that died (its pid is gone) has its trial queued again at once, for either
  storage; a journal study has no heartbeats, so trials of dead workers on other hosts wait for a
  tuner started there.

Retries are new trials enqueued with `retry_of` (the failed trial's number) in their user attributes;
`counted` leaves out a failed trial that was queued again, and a surplus trial (two workers asking for
the last trial at once), so a study of N trials ends with exactly N counted trials.
"""

from __future__ import annotations

import os
import random
import socket
import threading
import time
from pathlib import Path

from rlrun.config import ConfigError
from rlrun.secrets import mask_args, mask_url_passwords

# The packages that provide SQLAlchemy's database drivers, for the message when one is missing.
DRIVER_PACKAGES = {"psycopg": "psycopg[binary]", "psycopg2": "psycopg2-binary", "pg8000": "pg8000",
                   "asyncpg": "asyncpg", "pymysql": "PyMySQL", "mysqldb": "mysqlclient",
                   "mysqlconnector": "mysql-connector-python", "mariadbconnector": "mariadb"}


def mask_url(url: str) -> str:
    """The URL with its password as ***, for messages and records (rlrun.secrets, as every other write)."""
    return mask_url_passwords(url)


def mask_argv(argv: list[str]) -> list[str]:
    """The command line with the storage URL's password masked (what manifests and W&B record)."""
    return mask_args(argv)


def without_password(text: str, url: str) -> str:
    """An error message about `url` with its password (if any) masked wherever it appears."""
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception:  # noqa: BLE001
        password = None
    text = text.replace(url, mask_url(url))
    return text.replace(password, "***") if password else text


def check_driver(url: str) -> None:
    """A missing database driver, in one line naming the package that provides it."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    masked = mask_url(url)
    try:
        parsed = make_url(url)
        dialect = parsed.get_dialect()
    except NoSuchModuleError:  # (an ArgumentError too)
        raise ConfigError(f"tune.storage={masked}: unknown database '{parsed.drivername}' "
                          "(e.g. postgresql://user@host:5432/db or sqlite:///study.db)") from None
    except (ArgumentError, ValueError):
        raise ConfigError(f"tune.storage={masked} is not a database URL "
                          "(e.g. postgresql://user@host:5432/db or sqlite:///study.db)") from None
    try:
        dialect.import_dbapi()
    except ImportError:
        driver = dialect.driver
        package = DRIVER_PACKAGES.get(driver, driver)
        extra = " (or pip install 'rlrun[postgres]')" if driver == "psycopg" else ""
        raise ConfigError(f"tune.storage={masked}: its driver '{driver}' is not installed: "
                          f"pip install '{package}'{extra}") from None


class StudyStorage:
    """The Optuna storage of one study: a journal file, or an RDB URL with heartbeats."""

    def __init__(self, url: str | None, journal: Path, heartbeat_s: int, grace_s: int):
        import warnings

        import optuna
        from sqlalchemy.exc import IntegrityError

        self.url, self.journal = url, journal
        self.heartbeat_s = heartbeat_s
        if url is None:
            from optuna.storages.journal import JournalFileBackend, JournalStorage

            journal.parent.mkdir(parents=True, exist_ok=True)
            self.optuna = JournalStorage(JournalFileBackend(str(journal)))
            self.heartbeats = False
            return
        check_driver(url)
        engine = {"pool_pre_ping": True}  # a connection dropped while the study idled is replaced, not used
        if url.startswith("postgresql"):
            engine["connect_args"] = {"connect_timeout": 10}  # an unreachable host fails in seconds, not minutes
        try:
            # Workers started together (a job array) create Optuna's tables at once, and PostgreSQL may
            # refuse all but one (a UniqueViolation): the others try again once the tables exist.
            for attempt in range(5):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")  # heartbeat_interval is marked experimental
                        self.optuna = optuna.storages.RDBStorage(
                            url, engine_kwargs=engine, heartbeat_interval=heartbeat_s, grace_period=grace_s,
                            heartbeat_stale_trial_callback=enqueue_retry)
                    break
                except IntegrityError:
                    if attempt == 4:
                        raise
                    time.sleep(1 + random.random())
        except Exception as error:  # noqa: BLE001  (a server not reached, a refused password, a bad database)
            reason = without_password(str(error).strip().splitlines()[0], url) if str(error).strip() else type(error).__name__
            raise ConfigError(f"tune.storage={mask_url(url)}: cannot open it ({reason}); check the server, the "
                              "database and the password (PGPASSWORD or ~/.pgpass)") from None
        self.heartbeats = True

    def text(self) -> str:
        """What messages name: the masked URL, or the journal file."""
        return mask_url(self.url) if self.url else str(self.journal)

    # --- trials lost by dead workers -------------------------------------------------------------

    def recover(self, study) -> list[int]:
        """Fail and queue again the running trials whose worker is gone: on this host, a worker whose
        pid no longer exists; on any host, one whose heartbeat stopped (RDB storages). Returns their numbers."""
        import optuna
        from optuna.trial import TrialState

        recovered = []
        host = socket.gethostname()
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            worker_host, _, pid = str(trial.user_attrs.get("worker", "")).rpartition(":")
            if worker_host != host or not pid.isdigit() or pid_alive(int(pid)):
                continue
            try:
                self.optuna.set_trial_state_values(trial._trial_id, state=TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another worker failed it first (and queued it again)
            enqueue_retry(study, trial)
            recovered.append(trial.number)
        if self.heartbeats:
            before = retried_numbers(study.get_trials(deepcopy=False))
            optuna.storages.fail_stale_trials(study)  # calls enqueue_retry for each trial it failed
            recovered += sorted(retried_numbers(study.get_trials(deepcopy=False)) - before - set(recovered))
        return recovered

    def recoverable(self, trial) -> bool:
        """Whether a running trial would be recovered if its worker died: any trial where heartbeats
        run, else only one of this host (a journal study)."""
        return self.heartbeats or str(trial.user_attrs.get("worker", "")).rpartition(":")[0] == socket.gethostname()

    def beating(self, study, trial) -> Heartbeat:
        return Heartbeat(self, study, trial)


def enqueue_retry(study, trial) -> None:
    """A trial failed because its worker died: the same parameters again, as a new trial."""
    study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})


class Heartbeat:
    """While a trial runs: its heartbeat every heartbeat_s seconds from a thread, and on each beat the
    recovery of other workers' stale trials (so they are queued again while every live worker is busy)."""

    def __init__(self, storage: StudyStorage, study, trial):
        self.storage, self.study, self.trial = storage, study, trial
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, name="rlrun-tune-heartbeat", daemon=True)

    def __enter__(self) -> Heartbeat:
        if self.storage.heartbeats:
            self.storage.optuna.record_heartbeat(self.trial._trial_id)  # at once: a trial never runs unbeaten
            self.thread.start()
        return self

    def _beat(self) -> None:
        while not self.stop.wait(self.storage.heartbeat_s):
            try:
                self.storage.optuna.record_heartbeat(self.trial._trial_id)
                self.storage.recover(self.study)
            except Exception:  # noqa: BLE001  (a database hiccup: the next beat tries again)
                continue

    def __exit__(self, *exc) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


def counted(trials: list, below: int | None = None) -> int:
    """Trials that count towards tune.n_trials: complete, pruned, running and failed ones, but a failed
    trial that was queued again (its worker died or was interrupted) and a surplus trial. `below`: only
    those numbered below it."""
    from optuna.trial import TrialState

    retried = retried_numbers(trials)
    return sum(1 for t in trials if below is None or t.number < below
               if t.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
               or (t.state == TrialState.FAIL and t.number not in retried and not t.user_attrs.get("surplus")))


def retried_numbers(trials: list) -> set[int]:
    """Numbers of the trials that were queued again."""
    return {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
