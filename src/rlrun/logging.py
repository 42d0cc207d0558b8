"""One fan-out logger: progress bar, CSV files, TensorBoard and Weights & Biases.

Metric names are namespaced (`train/episodic_return`, `eval/mean_return`, `time/sps`) and the same
in every sink; in CSV the namespace is the file (train/ and time/ go to metrics.csv, eval/ to
eval.csv) and the column is the rest of the name.
"""

from __future__ import annotations

import csv
import io
import logging
import math
import queue
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from rlrun import checkpoint
from rlrun.config import POSITIVE, ConfigError, from_config, one_of, rule
from rlrun.secrets import mask_args

log = logging.getLogger("rlrun")


@dataclass
class WandbConfig:
    mode: str = rule(one_of("online", "offline", "disabled"))
    project: str
    entity: str | None
    group: str | None
    tags: list[str]
    init_timeout: float = rule(POSITIVE)


@dataclass
class LoggerConfig:
    csv: bool
    tensorboard: bool
    progress_bar: Any
    wandb: dict | None

    def __post_init__(self):
        if self.progress_bar not in ("auto", True, False):
            raise ConfigError(f"logger.progress_bar must be auto, true or false (got {self.progress_bar!r})")
        if self.wandb is not None:
            self.wandb = from_config(WandbConfig, self.wandb, "logger.wandb")


def logger_config(cfg) -> LoggerConfig:
    parsed = from_config(LoggerConfig, cfg, "logger")
    if parsed.wandb is not None and parsed.wandb.mode == "online":
        import wandb

        try:
            wandb.login(verify=False)  # reads WANDB_API_KEY or ~/.netrc; asks for a key only on a terminal
        except wandb.errors.UsageError:
            raise ConfigError("logger.wandb.mode=online needs a W&B API key: run `wandb login` or set "
                              "WANDB_API_KEY (or log offline: logger.wandb.mode=offline)") from None
    if parsed.tensorboard:
        try:
            import tensorboard  # noqa: F401
        except ImportError:
            raise ConfigError("logger.tensorboard needs the tensorboard package: "
                              "pip install 'rlrun[tensorboard]' (or use logger=csv)") from None
    return parsed


class EpisodeSink:
    """One row per finished episode (global_step, return, length, elapsed seconds; evaluation episodes
    also their discounted return), so that reports can compute IQM and bootstrap intervals over episodes;
    on resume, rows past the checkpoint are dropped."""

    FIELDS = ["global_step", "episodic_return", "episodic_length", "elapsed"]

    def __init__(self, path: Path, resume_step: int | None, extra: tuple[str, ...] = ()):
        self.path = path
        self.fields = self.FIELDS + list(extra)
        rows: list[dict] = []
        if resume_step is not None and path.exists():
            rows = [row for row in read_rows(path, strictly_increasing=False)[1]
                    if int(row["global_step"]) <= resume_step]
        text = io.StringIO()
        # A run resumed from before a column existed keeps its old rows, the new column empty there.
        writer = csv.DictWriter(text, self.fields, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
        checkpoint.write_text(path, text.getvalue())

    def write(self, step: int, returns: list[float], lengths: list[int], elapsed: float, *extra: list[float]) -> None:
        """`extra`: one list per extra column, one value per episode."""
        if len(extra) != len(self.fields) - len(self.FIELDS):
            raise ValueError(f"{self.path.name} has the columns {self.fields}: one list per extra column")
        if returns:
            with open(self.path, "a", newline="") as f:
                csv.writer(f).writerows([step, r, n, f"{elapsed:.3f}", *more]
                                        for r, n, *more in zip(returns, lengths, *extra, strict=True))


class CSVSink:
    """Rows of one namespace appended to a CSV file; on resume, rows past the checkpoint are dropped
    (they were logged after the checkpoint the run continues from, and will be logged again)."""

    def __init__(self, path: Path, namespaces: tuple[str, ...], resume_step: int | None):
        self.path = path
        self.namespaces = namespaces
        self.fieldnames: list[str] | None = None
        if resume_step is not None and path.exists():
            self.fieldnames, rows = read_rows(path)
            if self.fieldnames is not None:
                self._rewrite([row for row in rows if int(row["global_step"]) <= resume_step])
        else:
            path.unlink(missing_ok=True)

    def _rewrite(self, rows: list[dict]) -> None:
        # Atomic: a kill during the rewrite must leave the old file, not an empty one.
        text = io.StringIO()
        writer = csv.DictWriter(text, self.fieldnames, restval="")
        writer.writeheader()
        writer.writerows(rows)
        checkpoint.write_text(self.path, text.getvalue())

    def write(self, step: int, metrics: dict[str, float]) -> None:
        row = {"global_step": step}
        for key, value in metrics.items():
            namespace, _, name = key.partition("/")
            if namespace in self.namespaces:
                row[name] = "" if value is None or (isinstance(value, float) and math.isnan(value)) else value
        if len(row) == 1:
            return  # nothing of this file's namespace
        if self.fieldnames is None:
            self.fieldnames = list(row)
            self._rewrite([])
        elif not row.keys() <= set(self.fieldnames):
            # A metric that appears later (an off-policy loss once learning starts): widen the header
            # and rewrite the rows so far, once, with the new column empty.
            _, rows = read_rows(self.path)
            self.fieldnames = self.fieldnames + [key for key in row if key not in self.fieldnames]
            self._rewrite(rows)
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fieldnames, restval="").writerow(row)


def read_rows(path: Path, strictly_increasing: bool = True) -> tuple[list[str] | None, list[dict]]:
    """The header and rows of a metrics CSV file, without what a killed process may have left: a torn
    last line (no newline yet, or the wrong number of fields), and rows whose step goes backwards (or,
    with `strictly_increasing`, repeats: one row per step in metrics.csv and eval.csv)."""
    text = path.read_text()
    if not text.endswith("\n"):
        text = text[:text.rfind("\n") + 1]  # the last line was cut off mid-write
    reader = csv.DictReader(io.StringIO(text), restval=None)
    if reader.fieldnames is None:
        return None, []
    rows, last_step = [], -1
    for row in reader:
        if None in row or None in row.values():
            continue  # more or fewer fields than the header
        try:
            step = int(row["global_step"])
        except ValueError:
            continue
        if step > last_step or (step == last_step and not strictly_increasing):
            rows.append(row)
            last_step = step
    return list(reader.fieldnames), rows


class Logger:
    """Sends each batch of metrics to every configured sink."""

    def __init__(self, cfg: LoggerConfig, run_dir: Path, run_config: dict, total_steps: int, start_step: int,
                 wandb_id: str, resuming: bool):
        self.run_dir = run_dir
        resume_step = start_step if resuming else None
        self.csv_sinks = []
        if cfg.csv:
            self.csv_sinks = [CSVSink(run_dir / "metrics.csv", ("train", "time"), resume_step),
                              CSVSink(run_dir / "eval.csv", ("eval",), resume_step)]
        self.episode_sinks = {}
        if cfg.csv:
            self.episode_sinks = {"train": EpisodeSink(run_dir / "episodes.csv", resume_step),
                                  "eval": EpisodeSink(run_dir / "eval_episodes.csv", resume_step,
                                                      extra=("discounted_return",))}
        self.tensorboard = None
        if cfg.tensorboard:
            from torch.utils.tensorboard import SummaryWriter
            # purge_step drops the events logged after the checkpoint when a run resumes; the checkpoint's
            # own step was logged before it was written and is not logged again, so it stays.
            self.tensorboard = SummaryWriter(str(run_dir / "tb"),
                                             purge_step=None if resume_step is None else resume_step + 1)
        self.wandb_run = None
        if cfg.wandb is not None and cfg.wandb.mode != "disabled":
            self.wandb_run = BackgroundWandb(cfg.wandb, run_dir, run_config, wandb_id)
        show_bar = sys.stderr.isatty() if cfg.progress_bar == "auto" else bool(cfg.progress_bar)
        self.total_steps = total_steps
        # One rate on the bar, the runner's steps/s in the postfix (tqdm's own smoothed rate disagreed with it).
        self.progress = tqdm(total=total_steps, initial=min(start_step, total_steps), unit="step", unit_scale=True,
                             dynamic_ncols=True, disable=not show_bar, file=sys.stderr,
                             bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]")
        # While the bar is shown, console log lines are written above it (tqdm.write); the log file
        # (cli.log) still gets every line the terminal shows, evaluation lines included.
        self.redirect = logging_redirect_tqdm() if show_bar else None
        if self.redirect is not None:
            self.redirect.__enter__()
        self.sps = 0.0
        self.recent_return = math.nan

    def log_train(self, step: int, metrics: dict[str, float], recent_return: float) -> None:
        """Log one iteration; `recent_return` (mean over the last episodes) is shown, not logged."""
        self._fan_out(step, metrics)
        self.sps = metrics.get("time/sps", 0.0)
        self.recent_return = recent_return
        # The last iteration may overshoot the budget: the bar stops at 100%.
        self.progress.update(min(step, self.total_steps) - self.progress.n)
        postfix = {"steps/s": f"{self.sps:,.0f}"}
        if not math.isnan(recent_return):
            postfix["return"] = f"{recent_return:.1f}"
        self.progress.set_postfix(postfix, refresh=False)

    def log_episodes(self, kind: str, step: int, returns: list[float], lengths: list[int], elapsed: float,
                     discounted_returns: list[float] | None = None) -> None:
        """Every finished episode of training (`kind="train"`) or of an evaluation (`"eval"`, with each
        episode's discounted return)."""
        if kind in self.episode_sinks:
            extra = () if discounted_returns is None else (discounted_returns,)
            self.episode_sinks[kind].write(step, returns, lengths, elapsed, *extra)

    def log_eval(self, step: int, metrics: dict[str, float], total_steps: int) -> None:
        self._fan_out(step, metrics)
        message = (f"step {step:,}/{total_steps:,} | {self.sps:,.0f} steps/s | "
                   f"train return {self.recent_return:.1f} | eval return {metrics['eval/mean_return']:.1f} "
                   f"+- {metrics['eval/std_return']:.1f}")
        log.info(message)

    def _fan_out(self, step: int, metrics: dict[str, float]) -> None:
        for sink in self.csv_sinks:
            sink.write(step, metrics)
        if self.tensorboard is not None:
            for key, value in metrics.items():
                if value is not None and not math.isnan(value):
                    self.tensorboard.add_scalar(key, value, step)
        if self.wandb_run is not None:
            self.wandb_run.log({"global_step": step, **{k: v for k, v in metrics.items()
                                                        if v is not None and not math.isnan(v)}})

    def close(self) -> None:
        self.progress.close()
        if self.redirect is not None:
            self.redirect.__exit__(None, None, None)
            self.redirect = None
        if self.tensorboard is not None:
            self.tensorboard.close()
        if self.wandb_run is not None:
            self.wandb_run.finish()
            self.wandb_run = None


class BackgroundWandb:
    """A W&B run that lives on its own thread: started while the run builds its envs and trains, fed
    rows through a queue, finished there.

    Importing wandb and starting its service process takes 2-3 s on a quiet 2-core machine (10 s under
    load), which every run of a sweep would otherwise pay before its first step, and each wandb.log call
    costs the training loop a few hundred microseconds. Rows logged before the run is up wait in the
    queue, in order; `finish()` waits until every row is sent and the run is finished, so the W&B
    history is the same as a blocking start's. (Finished off the main thread, W&B's service may still
    be writing the run's file when finish() returns; it completes before the process exits.)
    """

    # wandb.init is not documented as thread-safe: a process with several runs (the tuner's seeds)
    # starts them one at a time.
    _starting = threading.Lock()

    def __init__(self, cfg: WandbConfig, run_dir: Path, run_config: dict, wandb_id: str):
        self.rows: queue.SimpleQueue[dict | None] = queue.SimpleQueue()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, args=(cfg, run_dir, run_config, wandb_id),
                                       name="wandb", daemon=True)
        self.thread.start()

    def _serve(self, *start_args) -> None:
        try:
            with self._starting:
                run = start_wandb(*start_args)
            while (row := self.rows.get()) is not None:
                run.log(row)
            run.finish()
        except BaseException as error:  # raised in the training thread by the next log() or finish()
            self.error = error

    def _raise_error(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def log(self, row: dict) -> None:
        self._raise_error()
        self.rows.put(row)

    def finish(self) -> None:
        self.rows.put(None)
        self.thread.join()
        self._raise_error()


def start_wandb(cfg: WandbConfig, run_dir: Path, run_config: dict, wandb_id: str):
    """The W&B run; online mode waits at most `init_timeout` seconds for the server, then goes on offline
    (the run can be uploaded later with `wandb sync`) instead of hanging or failing the run."""
    import wandb

    def init(mode: str):
        # W&B records sys.argv[1:] as the run's arguments (and `wandb sync` uploads them): it sees them masked.
        # (Swapped only for the call, on this thread, while the training thread is busy with anything but argv.)
        argv = sys.argv
        sys.argv = [argv[0], *mask_args(argv[1:])]
        try:
            return start(mode)
        finally:
            sys.argv = argv

    def start(mode: str):
        run = wandb.init(
            project=cfg.project, entity=cfg.entity, group=cfg.group, tags=cfg.tags, mode=mode, dir=str(run_dir),
            id=wandb_id, resume="allow", name=run_dir.name, config=run_config,
            # Several runs may be open in one process: the tuner's seeds train side by side (finish_previous
            # would end the other seeds' runs). A multirun job's run is finished by close() before the next.
            reinit="create_new",
            settings=wandb.Settings(console="off", quiet=True, x_disable_stats=True, init_timeout=cfg.init_timeout))
        run.define_metric("*", step_metric="global_step")
        return run

    if cfg.mode == "online":
        try:
            return init("online")
        except wandb.errors.Error as error:
            log.warning("W&B server not reached within logger.wandb.init_timeout=%gs (%s); logging offline: "
                        "upload later with `wandb sync %s/wandb/offline-run-*`", cfg.init_timeout,
                        str(error).splitlines()[0], run_dir)
            wandb.teardown()  # the failed attempt still holds the run id in W&B's service process
    return init("offline")


def new_run_id() -> str:
    """A W&B-style run id, kept in the checkpoint so that a resumed run continues the same W&B run."""
    import secrets
    import string
    alphabet = string.ascii_lowercase + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(8))
