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
from rlrun.resources import CONF_DIR  # the package rlrun.conf: the repository's conf/, installed
GROUPS = ("algo", "env", "network", "hardware", "logger")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def task(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    from rlrun.run import RunError, run  # imported here so that `rlrun --help` stays fast
    from rlrun.sampler import SamplerError

    try:
        return run(cfg)
    except ConfigError as error:
        remove_if_only_log(Path(HydraConfig.get().runtime.output_dir))
        sys.exit(f"rlrun: error: {error}")
    except (RunError, SamplerError) as error:
        # A loss gone NaN, a full disk or a dead sampler worker (the last good checkpoint is kept).
        # SystemExit passes through Hydra's job runner (which would print a second report) and stops a multirun.
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


def version() -> str:
    from importlib import metadata

    import rlrun

    try:
        return metadata.version("rlrun")
    except metadata.PackageNotFoundError:  # a source checkout on sys.path, not installed
        return rlrun.__version__


HELP = """rlrun {version}: a config-driven deep-RL experiment runner (Hydra configs, checkpoints, W&B logging).

Train, sweep, resume:
  rlrun algo=ppo env=HalfCheetah                      PPO on MuJoCo HalfCheetah-v5, 1M steps, into outputs/
  rlrun -m algo=sac,td3 env=Pendulum seed=0,1,2       a sweep: 6 runs under outputs/multirun/
  rlrun resume=outputs/<date>/<run>                   continue a stopped run from its checkpoints/last.pt
Then: rlrun-eval outputs/<date>/<run> episodes=10 video=true   (see rlrun-eval --help)

Algorithms (algo=) by the environment's action space:
  discrete actions:   {discrete}
  continuous actions: {continuous}
Environments (env=): {envs}
Your own configs without editing rlrun: rlrun --config-dir my_conf env=MyEnv (my_conf/env/MyEnv.yaml).
"""


def print_help() -> None:
    from rlrun.run import algorithms_for  # imported here: it loads torch and gymnasium

    print(HELP.format(version=version(), discrete=", ".join(algorithms_for("discrete")),
                      continuous=", ".join(algorithms_for("continuous")),
                      envs=", ".join(sorted(p.stem for p in (CONF_DIR / "env").glob("*.yaml")))))


def main() -> None:
    if "--version" in sys.argv[1:]:
        print(f"rlrun {version()}")  # Hydra's own --version would print Hydra's
        return
    if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
        print_help()  # then Hydra's help: the config groups and the composed config with its keys
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


def eval_main() -> None:
    """`rlrun-eval <run dir | checkpoint> [episodes=10] [deterministic=true] [seed=N] [video=true]
    [video_frames=N] [video_size=[W,H]] [export=policy.onnx|policy.pt] [json=PATH] [env.<key>=...]`

    Loads checkpoints/best.pt (else last.pt, or the file named) with its frozen normalisation, plays the
    episodes (by default with the run's evaluation seed: the episodes of its own evaluations), prints
    mean +- std and writes every episode's return and length to <run dir>/eval/<time>_<checkpoint>.json.
    video=true writes one MP4 per episode under <run dir>/videos/ (rendering is slow without a GPU,
    ~10 frames/s: cap it with video_frames=300 video_size=[320,240]); env.<key>=... changes the env
    (env.max_episode_steps=200); export= writes the deterministic acting network for deployment."""
    argv = sys.argv[1:]
    if not argv or any(arg in ("-h", "--help") for arg in argv):
        print(eval_main.__doc__.replace("\n    ", "\n"))
        return
    if "--version" in argv:
        print(f"rlrun {version()}")
        return
    if any(arg.split("=", 1)[0] == "video" and arg.split("=", 1)[1].lower() in ("true", "1", "yes") for arg in argv):
        from rlrun.envs.video import choose_gl_backend

        choose_gl_backend()  # before mujoco's rendering module is imported: it reads MUJOCO_GL once
    from rlrun.evaluate import run_eval

    try:
        run_eval(argv)
    except ConfigError as error:
        sys.exit(f"rlrun-eval: error: {error}")
    except KeyboardInterrupt:
        sys.exit(130)


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
        from rlrun.bench.suite import suite_names

        print(bench_main.__doc__.replace("\n    ", "\n") + f"\nSuites: {', '.join(suite_names())}")
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
    """`rlrun-report DIR... [--out OUT] [--title TITLE] [--figures NAME,...]`: report.md, report.json and
    PNGs over every run directory at or below the DIRs (runs, multiruns, suite outputs); OUT defaults to
    ./report. --figures adds claims figures to any runs (value_estimates, workers, normalised_scores),
    beside those the suites found below the DIRs name."""
    import argparse

    from rlrun.bench.figures import parse_figures
    from rlrun.bench.report import write_report

    parser = argparse.ArgumentParser(prog="rlrun-report", description=report_main.__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run directories, multirun or suite output directories")
    parser.add_argument("--out", type=Path, default=Path("report"), help="where report.md, report.json and PNGs go")
    parser.add_argument("--title", default="Benchmark report")
    parser.add_argument("--figures", default="", help="comma-separated claims figures to draw as well")
    args = parser.parse_args()
    try:
        figures = parse_figures([name for name in args.figures.split(",") if name], "--figures") or None
        print(f"rlrun-report: {write_report(args.dirs, args.out, args.title, figures)}", flush=True)
    except ConfigError as error:
        sys.exit(f"rlrun-report: error: {error}")


if __name__ == "__main__":
    main()
