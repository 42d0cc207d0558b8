"""The `rlrun` command: compose the Hydra config and call `run`; report bad input in one line.

`rlrun resume=<run dir> [overrides]` re-runs the original command of that run directory, with the
new overrides on top, into the same directory: the composed config (.hydra/), metrics, checkpoints
and W&B run continue where they stopped.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import sys
from pathlib import Path

import hydra
import yaml
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from rlrun import openmp
from rlrun.config import GROUP_KEYS, RUN_KEYS, ConfigError
from rlrun.hydra_errors import GROUPS, describe_hydra_error
from rlrun.envs.ids import config_dirs
from rlrun.resources import CONF_DIR  # the package rlrun.conf: the repository's conf/, installed
from rlrun.secrets import mask_url_passwords

# env.kwargs is the one mapping of rlrun's configs open to new keys (`+env.kwargs.reset_noise_scale=0.1`):
# any other `+` addition is refused by the config check, so rlrun never records one.
ADDABLE_UNDER = ("env.kwargs.",)
# Lines of overrides.yaml that resume= drops (the new resume= and run directory take their place).
NOT_REPLAYED = ("resume", "hydra.run.dir")


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="config")
def task(cfg: DictConfig) -> float:
    from hydra.core.hydra_config import HydraConfig

    choose_wait_policy(cfg)  # before torch loads OpenMP
    from rlrun.run import RunError, run  # imported here so that `rlrun --help` stays fast
    from rlrun.sampler import SamplerError

    try:
        return run(cfg)
    except ConfigError as error:
        # Refused before anything in the run directory changed: cli.log is left alone too.
        remove_if_only_log(Path(HydraConfig.get().runtime.output_dir))
        sys.exit(f"rlrun: error: {mask_url_passwords(str(error))}")
    except (RunError, SamplerError) as error:
        # A loss gone NaN, a full disk or a dead sampler worker (the last good checkpoint is kept). SystemExit passes through
        # Hydra's job runner (which would print a second report) and stops a multirun.
        exit_recorded(f"rlrun: error: {error}")
    except OSError as error:
        if error.errno not in (errno.ENOSPC, errno.EDQUOT):
            record_in_log_file(f"rlrun: error: {one_line(error)}", error)
            raise
        exit_recorded(f"rlrun: error: disk full writing {error.filename or 'the run directory'}; files already "
                      "written (checkpoints/last.pt included) are kept: free space, then resume the run")
    except Exception as error:  # a crash (an env that raised mid-run, a bug): its traceback goes to cli.log too
        record_in_log_file(f"rlrun: error: {one_line(error)}", error)
        raise


def choose_wait_policy(cfg: DictConfig) -> None:
    """rlrun.openmp's choice from the composed config (the config check reports bad values later)."""
    threads, overlap = cfg.get("hardware", {}).get("torch_threads"), cfg.get("algo", {}).get("overlap")
    if isinstance(threads, int) and isinstance(overlap, bool):
        openmp.choose_wait_policy(threads, overlap)


def one_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def record_in_log_file(line: str, error: BaseException | None = None) -> None:
    """Write an error line (and the traceback of `error`) to the run's cli.log only: the terminal gets the
    line from sys.exit, the traceback from Python."""
    record = logging.LogRecord("rlrun", logging.ERROR, __file__, 0, line, None,
                               (type(error), error, error.__traceback__) if error is not None else None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)  # its filters mask URL passwords (rlrun.secrets.mask_log_lines)


def exit_recorded(line: str) -> None:
    line = mask_url_passwords(line)
    record_in_log_file(line)
    sys.exit(line)


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
    replaced = {_key(a) for a in argv if "=" in a}
    for override in original:
        if _key(override) not in (*replaced, *NOT_REPLAYED):  # a line the command line replaces is not replayed
            check_recorded_override(override, overrides_file)
    for arg in argv:
        key, _, value = arg.partition("=")
        if key in ("algo", "env") and value != choices[key]:
            raise ConfigError(f"resume={values[-1]} is a run of algo={choices['algo']} env={choices['env']}; "
                              f"it cannot continue as {key}={value}: drop {key}= or start a new run")
    merged = {_key(o): o for o in original if _key(o) not in NOT_REPLAYED}
    merged.update({_key(a): a for a in argv if "=" in a})
    flags = [a for a in argv if "=" not in a]
    if not config_dirs(argv):
        # The run's --config-dir (Hydra records it, absolute, in hydra.yaml): its env and algo files are
        # needed again to compose the run's config.
        flags += [arg for folder in recorded_config_dirs(run_dir) for arg in ("--config-dir", folder)]
    return [*flags, *merged.values(), f"hydra.run.dir='{run_dir.resolve()}'"]


def check_recorded_override(override: str, overrides_file: Path) -> None:
    """A line of a run directory's overrides.yaml that resume= would replay must be one rlrun records: a
    run directory is data, and Hydra's overrides are code (`+hydra.callbacks...={_target_: ...}` runs a
    callable, `${oc.env:...}` copies a secret into the run's files). Refused in one line naming it."""

    resumable = (*GROUP_KEYS, "tuned", *RUN_KEYS)
    problem = None
    key = _key(override)
    prefix = override[:len(override) - len(override.lstrip("+~"))]
    _, sep, value = override.partition("=")
    path = key.split(".")
    if not key:
        problem = "not a key=value override"
    elif path[0] == "hydra":
        problem = "rlrun never records hydra.* overrides there"
    elif "~" in prefix:
        problem = "a '~' deletion of a key, which rlrun never records"
    elif path[0] not in resumable:
        problem = f"unknown key '{key}' (rlrun records only {', '.join(resumable)} and their keys)"
    elif "_target_" in path:
        problem = "a _target_ names code to import, which rlrun never records"
    elif prefix and not key.startswith(ADDABLE_UNDER):
        problem = f"a '{prefix}' addition of a key rlrun does not write"
    elif not sep:
        problem = "not a key=value override"
    elif "${" in value:
        problem = "an interpolation (${...}) is resolved when replayed: rlrun records literal values"
    elif path[0] in (*GROUP_KEYS, "tuned") and len(path) == 1 and (value.startswith("/") or ".." in value.split("/")):
        problem = "a config choice outside the config directory"
    if problem is not None:
        raise ConfigError(f"resume: {overrides_file} holds {mask_url_passwords(repr(override))}, which resume= "
                          f"does not replay: {problem}; a run directory is data: if you wrote that line yourself, "
                          "pass the override on the command line instead (rlrun resume=DIR key=value)")


def recorded_config_dirs(run_dir: Path) -> list[str]:
    """The --config-dir directories a run was made with, from its .hydra/hydra.yaml. A config directory
    is code: one that is missing here, or inside the run directory (data someone may have sent), is
    refused in one line, and one that is used is named on stderr."""
    sources = yaml.safe_load((run_dir / ".hydra" / "hydra.yaml").read_text())["hydra"]["runtime"]["config_sources"]
    folders = [source["path"] for source in sources
               if source.get("provider") == "command-line" and source.get("schema") == "file"]
    for folder in folders:
        path = Path(folder).resolve()
        if not path.is_dir() or path.is_relative_to(run_dir.resolve()):
            where = "does not exist here" if not path.is_dir() else "is inside the run directory"
            raise ConfigError(f"resume={run_dir}: the run was made with --config-dir {folder}, which {where}; "
                              "pass the config directory to use with --config-dir")
        print(f"rlrun: resume={run_dir} composes with the run's --config-dir {folder}", file=sys.stderr)
    return folders


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
  MultiDiscrete and MultiBinary actions: {multi}
Environments (env=): {envs}, or any gymnasium id on generic defaults
  (env=Acrobot-v1, env=my_pkg.envs:MyEnv-v0: conf/env/generic.yaml)
Your own configs without editing rlrun: rlrun --config-dir my_conf env=MyEnv (my_conf/env/MyEnv.yaml).

== Config groups: choose one of each (group=option) ==
{groups}
Sweeps (-m) run their jobs through hydra/launcher=joblib|submitit_local|submitit_slurm|ray (docs/clusters.md);
Hydra's own options: rlrun --hydra-help.

== Config: what this command line composes; override any key (key=value) =="""


def action_spaces_of_algorithms() -> dict[str, tuple[str, ...]]:
    """The action-space kinds each algorithm of conf/algo/ can act in, as rlrun.run.algorithms_for finds them, but
    without importing torch and the algorithms (`rlrun --help` stays fast): each class's `action_spaces` is read
    from its module's source, or from the class itself where the class body does not spell it out as a literal."""
    import ast
    from importlib import util

    from rlrun.resources import ALGO_DIR, algo_target

    kinds = {}
    for path in sorted(ALGO_DIR.glob("*.yaml")):
        module_name, _, class_name = algo_target(path.stem).rpartition(".")
        try:
            tree = ast.parse(Path(util.find_spec(module_name).origin).read_text())
            body = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == class_name).body
            value = next(node.value for node in body if isinstance(node, ast.Assign)
                         and [getattr(t, "id", None) for t in node.targets] == ["action_spaces"])
            kinds[path.stem] = tuple(ast.literal_eval(value))
        except (AttributeError, ImportError, OSError, StopIteration, SyntaxError, TypeError, ValueError):
            from hydra.utils import get_class

            kinds[path.stem] = tuple(getattr(get_class(f"{module_name}.{class_name}"), "action_spaces", ()))
    return kinds


def group_options(argv: list[str]) -> str:
    """One line per config group a run chooses (algo, env, network, ...), with its options in rlrun's conf/ and
    in the --config-dir folders of `argv`."""
    lines = []
    for group in GROUPS:
        options = {p.stem for folder in (CONF_DIR, *config_dirs(argv)) for p in (folder / group).glob("*.yaml")}
        options.discard("generic")  # env/generic.yaml: the defaults of env=<gymnasium id>, not an env to choose
        lines.append(f"{group}: {', '.join(sorted(options, key=str.lower))}")
    return "\n".join(lines)


def print_help(argv: list[str]) -> None:
    kinds = action_spaces_of_algorithms()
    able = {kind: ", ".join(name for name, spaces in kinds.items() if kind in spaces)
            for kind in ("discrete", "continuous", "multi_discrete")}
    print(HELP.format(version=version(), discrete=able["discrete"], continuous=able["continuous"],
                      multi=able["multi_discrete"],
                      envs=", ".join(sorted(p.stem for p in (CONF_DIR / "env").glob("*.yaml") if p.stem != "generic")),
                      groups=group_options(argv)), flush=True)


def main() -> None:
    if "--version" in sys.argv[1:]:
        print(f"rlrun {version()}")  # Hydra's own --version would print Hydra's
        return
    if any(arg in ("-h", "--help") for arg in sys.argv[1:]):
        # rlrun's help, then the config this command line composes (Hydra's --cfg job). Not Hydra's --help: it lists
        # every folder of conf/ as a group (bench, tune, tuned, hydra/...) and takes seconds composing each option.
        print_help(sys.argv[1:])
        sys.argv = [arg for arg in sys.argv if arg not in ("-h", "--help")]
        if not any(arg in ("--cfg", "-c") or arg.startswith("--cfg=") for arg in sys.argv):
            sys.argv += ["--cfg", "job"]
    # Let composition errors reach us as exceptions instead of Hydra's multi-line report.
    os.environ["HYDRA_FULL_ERROR"] = "1"
    try:
        sys.argv = [sys.argv[0], *expand_resume(sys.argv[1:])]
        from rlrun.envs.ids import register_env_ids  # env=<gymnasium id> without an env file

        register_env_ids(sys.argv[1:], CONF_DIR)
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
        from rlrun.envs.ids import register_env_ids  # env=<gymnasium id> without an env file

        register_env_ids(sys.argv[1:], CONF_DIR)
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
    [video_frames=N] [video_size=[W,H]] [export=policy.onnx|policy.pt] [json=PATH] [trust_code=true] [env.<key>=...]`

    Loads checkpoints/best.pt (else last.pt, or the file named) with its frozen normalisation, plays the
    episodes (by default with the run's evaluation seed: the episodes of its own evaluations), prints
    mean +- std and writes every episode's return and length to <run dir>/eval/<time>_<checkpoint>.json.
    video=true writes one MP4 per episode under <run dir>/videos/ (rendering is slow without a GPU,
    ~10 frames/s: cap it with video_frames=300 video_size=[320,240]); env.<key>=... changes the env
    (env.max_episode_steps=200); export= writes the deterministic acting network for deployment (inputs
    [batch, *observation shape], float32; .onnx needs the export extra: pip install 'rlrun[export]').
    Every argument is checked before the first episode; a bad one is refused in one line, writing nothing.
    A run directory is data: the modules its config names outside rlrun and gymnasium (an env package,
    wrapper or algorithm classes) are imported only with trust_code=true (your own envs' runs, or runs you trust)."""
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
