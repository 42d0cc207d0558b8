"""The `rlrun` command: compose the Hydra config and call `run`; report bad input in one line.

`rlrun resume=<run dir> [overrides]` re-runs the original command of that run directory, with the
new overrides on top, into the same directory: the composed config (.hydra/), metrics, checkpoints
and W&B run continue where they stopped.
"""

from __future__ import annotations

import errno
import os
import shutil
import sys
from pathlib import Path

import hydra
import yaml
from hydra.errors import HydraException, MissingConfigException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from rlrun.config import ConfigError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
GROUPS = ("algo", "env", "network", "hardware", "logger")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def task(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    from rlrun.run import RunError, run  # imported here so that `rlrun --help` stays fast

    try:
        return run(cfg)
    except ConfigError as error:
        remove_if_only_log(Path(HydraConfig.get().runtime.output_dir))
        sys.exit(f"rlrun: error: {error}")
    except RunError as error:
        # A loss gone NaN or a full disk (the last good checkpoint is kept). SystemExit passes through
        # Hydra's job runner (which would print a second report) and stops a multirun.
        sys.exit(f"rlrun: error: {error}")
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        sys.exit(f"rlrun: error: disk full writing {error.filename or 'the run directory'}; files already "
                 "written (checkpoints/last.pt included) are kept: free space, then resume the run")


def remove_if_only_log(run_dir: Path) -> None:
    """A command refused at the config check leaves no run directory behind: Hydra made it (with its log
    file) before the check ran."""
    if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {"cli.log"}:
        shutil.rmtree(run_dir, ignore_errors=True)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def expand_resume(argv: list[str]) -> list[str]:
    """Replace `resume=DIR` by the overrides DIR was made with, the new ones on top, and DIR as the
    Hydra run directory."""
    values = [arg.split("=", 1)[1] for arg in argv if _key(arg) == "resume" and "=" in arg]
    if not values or values[-1] in ("null", ""):
        return argv
    if "-m" in argv or "--multirun" in argv:
        raise ConfigError("resume= continues one run: drop -m/--multirun")
    run_dir = Path(values[-1])
    overrides_file = run_dir / ".hydra" / "overrides.yaml"
    if not overrides_file.exists():
        raise ConfigError(f"resume={values[-1]}: not a run directory (no {overrides_file}); "
                          "pass a directory under outputs/ made by rlrun")
    if not (run_dir / "checkpoints" / "last.pt").exists():
        raise ConfigError(f"resume={values[-1]}: no checkpoints/last.pt there to resume from")
    try:
        original = yaml.safe_load(overrides_file.read_text()) or []
        choices = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["choices"]
        if not (isinstance(original, list) and all(isinstance(o, str) for o in original)):
            raise ValueError("overrides.yaml is not a list of overrides")
        choices["algo"], choices["env"]  # noqa: B018 -- both must be there
    except (OSError, yaml.YAMLError, ValueError, TypeError, KeyError) as error:
        raise ConfigError(f"resume={values[-1]}: its .hydra/ files cannot be read ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else 'empty'}); "
                          "restore them or start a new run") from None
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("algo", "env") and value != choices[key]:
            raise ConfigError(f"resume={values[-1]} is a run of algo={choices['algo']} env={choices['env']}; "
                              f"it cannot continue as {key}={value}: drop {key}= or start a new run")
    merged = {_key(o): o for o in original if _key(o) not in ("resume", "hydra.run.dir")}
    merged.update({_key(a): a for a in argv if "=" in a})
    flags = [a for a in argv if "=" not in a]
    return [*flags, *merged.values(), f"hydra.run.dir='{run_dir.resolve()}'"]


def describe_hydra_error(error: Exception) -> str:
    """One line for a Hydra or OmegaConf composition error."""
    if isinstance(error, MissingConfigException) and error.missing_cfg_file:
        group, _, name = error.missing_cfg_file.rpartition("/")
        if group in GROUPS:
            options = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
            return f"unknown {group} '{name}'; choose one of: {', '.join(options)}"
    cause = error.__cause__ or error.__context__
    text = str(error).strip().splitlines()[0]
    if cause is not None and isinstance(cause, OmegaConfBaseException):
        key = getattr(cause, "full_key", None)
        if "not in struct" in str(cause) and key:
            return f"unknown key '{key}': check its spelling against conf/ (to add a new key use +{key}=...)"
        return f"{text} {str(cause).splitlines()[0]}"
    return text


def main() -> None:
    # Let composition errors reach us as exceptions instead of Hydra's multi-line report.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        sys.argv = [sys.argv[0], *expand_resume(sys.argv[1:])]
        task()
    except ConfigError as error:
        sys.exit(f"rlrun: error: {error}")
    except (HydraException, OmegaConfBaseException) as error:
        sys.exit(f"rlrun: error: {describe_hydra_error(error)}")
    except KeyboardInterrupt as error:
        print(f"rlrun: interrupted; {error}" if str(error) else "rlrun: interrupted", file=sys.stderr)
        sys.exit(130)


def tune_main() -> None:
    """`rlrun-tune algo=ppo env=CartPole [tune.<key>=...] [rlrun overrides]`: an Optuna study whose trials
    are rlrun runs (see rlrun/tune.py; its keys: conf/tune/settings.yaml, search spaces: conf/tune/<algo>.yaml)."""
    from rlrun.tune import tune

    if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
        print(tune_main.__doc__.replace("\n    ", "\n"))
        return
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        print(tune(sys.argv[1:]), flush=True)
    except ConfigError as error:
        sys.exit(f"rlrun-tune: error: {error}")
    except (HydraException, OmegaConfBaseException) as error:
        sys.exit(f"rlrun-tune: error: {describe_hydra_error(error)}")
    except KeyboardInterrupt:
        print("rlrun-tune: interrupted; rerun the same command to resume the study", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()


def bench_main() -> None:
    """`rlrun-bench SUITE [key=value ...] [--dry-run]`: run a benchmark suite (conf/bench/SUITE.yaml, or a
    path) as Hydra multiruns, skipping runs already complete in its output directory, then write its report
    to OUT/report/. `key=value` sets a suite key (seeds=[0,1] total_steps=20000 launcher=basic out=DIR);
    any other override goes to every run (hardware=cpu). --dry-run prints the multiruns and runs nothing."""
    import shlex

    from rlrun.bench.report import write_report
    from rlrun.bench.suite import load_suite, run_suite

    args = sys.argv[1:]
    if not args or any(arg in ("-h", "--help") for arg in args):
        print(bench_main.__doc__.replace("\n    ", "\n"))
        return
    dry_run = "--dry-run" in args
    args = [a for a in args if a != "--dry-run"]
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        suite = load_suite(args[0], args[1:])
        out, failed = run_suite(suite, shlex.join(["rlrun-bench", *sys.argv[1:]]), dry_run=dry_run)
        if dry_run:
            return
        report = write_report([out / "runs"], out / "report", title=f"Benchmark report: suite {suite.name}")
    except ConfigError as error:
        sys.exit(f"rlrun-bench: error: {error}")
    except KeyboardInterrupt:
        print("rlrun-bench: interrupted; rerun the same command to continue (complete runs are skipped)",
              file=sys.stderr)
        sys.exit(130)
    print(f"rlrun-bench: report: {report}", flush=True)
    if failed:
        sys.exit(f"rlrun-bench: error: {len(failed)} multirun(s) failed (see their messages above); "
                 "the report covers the complete runs; rerun the same command to retry the rest")


def report_main() -> None:
    """`rlrun-report DIR... [--out OUT] [--title TITLE]`: report.md, report.json and PNGs over every run
    directory at or below the DIRs (runs, multiruns, suite outputs); OUT defaults to ./report."""
    import argparse

    from rlrun.bench.report import write_report

    parser = argparse.ArgumentParser(prog="rlrun-report", description=report_main.__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run directories, multirun or suite output directories")
    parser.add_argument("--out", type=Path, default=Path("report"), help="where report.md, report.json and PNGs go")
    parser.add_argument("--title", default="Benchmark report")
    args = parser.parse_args()
    try:
        print(f"rlrun-report: {write_report(args.dirs, args.out, args.title)}", flush=True)
    except ConfigError as error:
        sys.exit(f"rlrun-report: error: {error}")
