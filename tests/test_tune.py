"""The tuner, end to end: `rlrun-tune` in a subprocess on PPO CartPole with budgets of seconds.

A real Optuna study (journal storage) whose trials train 2 seeds side by side and are pruned on their
mean; its outputs (best.yaml that then trains, trials.csv, plots); two workers sharing a study; a study
killed mid-trial that resumes; bad search spaces refused before any trial.
"""

from __future__ import annotations

import csv
import json
import math
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rlrun.config import ConfigError
from rlrun.tune import iqm, load_space, prepare

TUNE = [sys.executable, "-c", "import sys; from rlrun.cli import tune_main; sys.argv[0] = 'rlrun-tune'; tune_main()"]
# Trials of 4096 CartPole steps (16 PPO iterations), an evaluation every 1024 steps, CSV logging only.
SHORT = ("algo=ppo", "env=CartPole", "total_steps=4096", "eval.every_steps=1024", "eval.episodes=2", "logger=csv")


def rlrun_tune(*args, cwd: Path, rlrun, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([*TUNE, *map(str, args)], cwd=cwd, env=rlrun.env(cwd), capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


def describe(proc) -> str:
    return f"exit {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"


def read_trials(study_dir: Path) -> list[dict[str, str]]:
    with open(study_dir / "trials.csv", newline="") as f:
        return list(csv.DictReader(f))


def load_study(study_dir: Path, name: str = "ppo_CartPole"):
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    storage = JournalStorage(JournalFileBackend(str(study_dir / "study.journal")))
    return optuna.load_study(study_name=name, storage=storage)


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


# ---------------------------------------------------------------------------------------------------
# 1. A small real study: 6 trials x 2 seeds, median pruning


@pytest.fixture(scope="module")
def study(rlrun, tmp_path_factory) -> dict:
    cwd = tmp_path_factory.mktemp("tune")
    study_dir = cwd / "study"
    args = (*SHORT, "tune.n_trials=6", "tune.seeds=2", "tune.pruner=median", "tune.pruner_startup_trials=2",
            "tune.sampler_startup_trials=3", f"tune.dir={study_dir}")
    proc = rlrun_tune(*args, cwd=cwd, rlrun=rlrun)
    return {"cwd": cwd, "dir": study_dir, "proc": proc, "args": args}


def test_study_runs_every_trial_prunes_some_and_prints_one_line_per_trial(study):
    proc = study["proc"]
    assert proc.returncode == 0, describe(proc)
    rows = read_trials(study["dir"])
    assert [int(r["number"]) for r in rows] == list(range(6))
    states = [r["state"] for r in rows]
    assert "pruned" in states and "complete" in states, states
    trial_lines = [line for line in proc.stdout.splitlines() if line.startswith("trial ")]
    assert [line.split()[1] for line in trial_lines] == [str(n) for n in range(6)]
    for line, state in zip(trial_lines, states, strict=True):
        assert line.split()[2].startswith(state), line  # "trial 3 pruned at step 2,048: ..." / "complete: ..."
        assert "algo.learning_rate=" in line
    # Nothing written outside the study directory.
    assert not (study["cwd"] / "outputs").exists()


def test_a_trial_trains_its_seeds_in_lockstep_and_its_value_is_their_mean_final_return(study):
    rows = read_trials(study["dir"])
    trials = study["dir"] / "trials"
    for row in rows:
        seeds = [summary(trials / f"trial{int(row['number']):04d}_seed{s}") for s in (0, 1)]
        assert {s["seed"] for s in seeds} == {0, 1}
        # Side by side: both seeds stopped at the same evaluation.
        assert seeds[0]["total_steps"] == seeds[1]["total_steps"]
        if row["state"] == "complete":
            assert float(row["value"]) == pytest.approx((seeds[0]["final_eval_mean_return"]
                                                         + seeds[1]["final_eval_mean_return"]) / 2)
            assert seeds[0]["total_steps"] >= 4096 and not seeds[0]["stopped_early"]
        else:
            # Pruned: every seed stopped early, with its last checkpoint written.
            assert row["state"] == "pruned"
            assert all(s["stopped_early"] and s["total_steps"] < 4096 for s in seeds)
            assert (trials / f"trial{int(row['number']):04d}_seed0" / "checkpoints" / "last.pt").is_file()


def test_study_writes_trials_csv_plots_storage_and_a_summary(study):
    out = study["proc"].stdout
    for name in ("trials.csv", "history.png", "importances.png", "study.journal", "best.yaml"):
        assert (study["dir"] / name).is_file(), f"{name} missing; {sorted(p.name for p in study['dir'].iterdir())}"
    for name in ("history.png", "importances.png"):
        assert (study["dir"] / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = read_trials(study["dir"])
    best = max((r for r in rows if r["state"] == "complete"), key=lambda r: float(r["value"]))
    assert f"best trial {best['number']}: mean final return {float(best['value']):.1f}" in out
    # The storage is Optuna's own: it opens with Optuna (as optuna-dashboard opens it).
    loaded = load_study(study["dir"])
    assert loaded.best_trial.number == int(best["number"])
    assert len(loaded.trials) == 6


def test_best_yaml_is_a_tuned_file_that_trains_with_the_best_trials_values(study, rlrun, tmp_path):
    text = (study["dir"] / "best.yaml").read_text()
    assert text.startswith("# @package _global_\n")
    best = yaml.safe_load(text)
    rows = read_trials(study["dir"])
    top = max((r for r in rows if r["state"] == "complete"), key=lambda r: float(r["value"]))
    for key in ("learning_rate", "num_steps", "num_minibatches", "update_epochs", "gamma", "clip_coef"):
        assert best["algo"][key] == pytest.approx(float(top[f"algo.{key}"])), key
    assert best["total_steps"] == 4096 and best["eval"]["every_steps"] == 1024
    # Used as conf/tuned/<algo>_<Env>.yaml would be: a config of the `tuned` group.
    conf = tmp_path / "conf"
    (conf / "tuned").mkdir(parents=True)
    shutil.copy(study["dir"] / "best.yaml", conf / "tuned" / "ppo_CartPole_best.yaml")
    run_dir = tmp_path / "run"
    result = rlrun("algo=ppo", "env=CartPole", "tuned=ppo_CartPole_best", f"hydra.searchpath=[file://{conf}]",
                   "total_steps=1024", "logger=csv", "eval.episodes=1", cwd=tmp_path, run_dir=run_dir)
    assert result.returncode == 0, result.describe()
    composed = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())
    assert composed["algo"]["learning_rate"] == pytest.approx(best["algo"]["learning_rate"])
    assert composed["algo"]["num_steps"] == best["algo"]["num_steps"]
    assert summary(run_dir)["total_steps"] >= 1024


def test_rerunning_a_finished_study_runs_no_trial_again(study, rlrun):
    proc = rlrun_tune(*study["args"], cwd=study["cwd"], rlrun=rlrun)
    assert proc.returncode == 0, describe(proc)
    assert "6 of 6 trials done" in proc.stdout
    assert not [line for line in proc.stdout.splitlines() if line.startswith("trial ")]
    assert len(read_trials(study["dir"])) == 6


# ---------------------------------------------------------------------------------------------------
# 2. Several workers, one storage


@pytest.mark.slow  # two worker processes, 4 trials: ~30 s on 2 cores
def test_two_workers_share_one_study_and_finish_it_without_repeating_a_trial(rlrun, tmp_path):
    study_dir = tmp_path / "shared"
    proc = rlrun_tune("algo=ppo", "env=CartPole", "total_steps=2048", "eval.every_steps=1024", "eval.episodes=1",
                      "logger=csv", "tune.n_trials=4", "tune.seeds=1", "tune.pruner=none", "tune.n_workers=2",
                      f"tune.dir={study_dir}", cwd=tmp_path, rlrun=rlrun)
    assert proc.returncode == 0, describe(proc)
    everything = load_study(study_dir).trials
    # Two workers may ask for the last trial at once: the later one is surplus, failed unrun and uncounted.
    surplus = [t for t in everything if t.user_attrs.get("surplus")]
    assert len(surplus) <= 1 and all(t.state.name == "FAIL" and not t.params for t in surplus)
    trials = [t for t in everything if not t.user_attrs.get("surplus")]
    assert len(trials) == 4 and all(t.state.name == "COMPLETE" for t in trials), [(t.number, t.state) for t in trials]
    params = [tuple(sorted(t.params.items())) for t in trials]
    assert len(set(params)) == len(params), "two trials sampled the same parameters"
    workers = {t.user_attrs["worker"] for t in trials}
    assert len(workers) == 2, workers
    # Each trial trained its own run directory once (rlrun refuses a directory that holds a run).
    dirs = sorted(p.name for p in (study_dir / "trials").iterdir())
    assert dirs == [f"trial{t.number:04d}_seed0" for t in sorted(trials, key=lambda t: t.number)]


# ---------------------------------------------------------------------------------------------------
# 3. A study killed mid-trial resumes


@pytest.mark.slow  # three trials of 8192 steps around a kill: ~40 s on 2 cores
def test_a_study_killed_mid_trial_resumes_and_runs_the_killed_trial_again(rlrun, tmp_path):
    from optuna.trial import TrialState

    study_dir = tmp_path / "killed"
    args = ("algo=ppo", "env=CartPole", "total_steps=8192", "eval.every_steps=1024", "eval.episodes=1", "logger=csv",
            "tune.n_trials=2", "tune.seeds=1", "tune.pruner=none", f"tune.dir={study_dir}")
    proc = subprocess.Popen([*TUNE, *args], cwd=tmp_path, env=rlrun.env(tmp_path), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    killed = None
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            if not (study_dir / "study.journal").exists():
                continue
            trials = load_study(study_dir).trials
            done = [t for t in trials if t.state == TrialState.COMPLETE]
            running = [t for t in trials if t.state == TrialState.RUNNING]
            # Kill once a trial finished and the next one has evaluated at least once (mid-training).
            if done and running and (study_dir / "trials" / f"trial{running[0].number:04d}_seed0" / "eval.csv").exists():
                killed = running[0]
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        if proc.poll() is None and killed is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert killed is not None, "the study ended before it could be killed mid-trial"
    assert load_study(study_dir).trials[killed.number].state == TrialState.RUNNING  # what a kill leaves

    resumed = rlrun_tune(*args, cwd=tmp_path, rlrun=rlrun)
    assert resumed.returncode == 0, describe(resumed)
    assert f"trials {killed.number} of a stopped worker are queued again" in resumed.stdout
    trials = load_study(study_dir).trials
    assert trials[killed.number].state == TrialState.FAIL
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed.number]
    assert len(retry) == 1 and retry[0].params == killed.params and retry[0].state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2
    # The trial finished before the kill was not run again.
    assert len(trials) == 3


# ---------------------------------------------------------------------------------------------------
# 4. Bad input, refused before any trial; failed trials do not stop a study


def write_space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("space, message", [
    ("algo.lerning_rate: {type: float, low: 1.0e-4, high: 1.0e-3}", "unknown key 'algo.lerning_rate'"),
    ("algo.learning_rate: {type: float, low: 1.0e-3, high: 1.0e-4}", "low must be below high"),
    ("algo.learning_rate: {type: float, low: 0.0, high: 1.0e-3, log: true}", "a log scale needs low > 0"),
    ("algo.gamma: {type: float, low: 0.9, high: 1.5}", "algo.gamma = 1.5 (an end of its range) is refused: "
                                                       "algo.gamma must be in [0, 1]"),
    ("algo.update_epochs: {type: int, low: 1.5, high: 10}", "low must be an int"),
    ("algo.clip_coef: {type: categorical, choices: []}", "choices must be a non-empty list"),
    ("algo.clip_coef: {type: uniform, low: 0.1, high: 0.3}", "must be {type: float|int|categorical"),
    ("algo.clip_coef: {type: float, low: 0.1, hi: 0.3}", "unknown field 'hi'"),
])
def test_a_bad_search_space_is_refused_with_one_line_before_any_trial(tmp_path, space, message):
    path = write_space(tmp_path, space + "\n")
    with pytest.raises(ConfigError) as error:
        prepare([*SHORT, f"tune.space={path}", f"tune.dir={tmp_path / 'study'}"])
    assert message in str(error.value) and "\n" not in str(error.value)
    assert str(path) in str(error.value)
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("args, message", [
    (("tune.n_trails=5",), "unknown key 'tune.n_trails'"),
    (("tune.pruner=asha",), "tune.pruner must be one of median, halving, hyperband, none"),
    (("tune.seeds=0",), "tune.seeds must be > 0"),
    (("tune.storage=nosuchdb://host/db",), "tune.storage=nosuchdb://host/db: unknown database 'nosuchdb'"),
])
def test_bad_tuner_settings_are_refused_with_one_line(tmp_path, args, message):
    with pytest.raises(ConfigError) as error:
        prepare([*SHORT, *args, f"tune.dir={tmp_path / 'study'}"])
    assert message in str(error.value)
    assert not (tmp_path / "study").exists()


def test_cli_reports_a_bad_search_space_in_one_line_and_exits_nonzero(rlrun, tmp_path):
    path = write_space(tmp_path, "algo.lerning_rate: {type: float, low: 1.0e-4, high: 1.0e-3}\n")
    proc = rlrun_tune(*SHORT, f"tune.space={path}", f"tune.dir={tmp_path / 'study'}", cwd=tmp_path, rlrun=rlrun)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("rlrun-tune: error: ") and "algo.lerning_rate" in lines[0], lines
    assert not (tmp_path / "study").exists()


def test_a_trial_whose_sampled_values_rlrun_refuses_fails_and_the_study_goes_on(rlrun, tmp_path):
    # Each value fits alone, so the space passes the checks; together the rollout (1 env x 33 steps)
    # does not split into 2 minibatches: rlrun refuses the trial's config when it starts.
    path = write_space(tmp_path, "algo.num_envs: {type: categorical, choices: [1]}\n"
                                 "algo.num_steps: {type: categorical, choices: [33]}\n"
                                 "algo.num_minibatches: {type: categorical, choices: [2]}\n")
    study_dir = tmp_path / "study"
    proc = rlrun_tune(*SHORT, f"tune.space={path}", "tune.n_trials=2", "tune.seeds=1", f"tune.dir={study_dir}",
                      cwd=tmp_path, rlrun=rlrun)
    assert proc.returncode == 0, describe(proc)
    rows = read_trials(study_dir)
    assert [r["state"] for r in rows] == ["fail", "fail"]
    assert all("num_minibatches" in r["note"] for r in rows), rows
    assert "trial 1 failed: algo.num_minibatches" in proc.stdout
    assert not (study_dir / "best.yaml").exists()


@pytest.mark.parametrize("algo, env", [("ppo", "CartPole"), ("a2c", "CartPole"), ("dqn", "CartPole"),
                                       ("sac", "Pendulum"), ("td3", "Pendulum")])
def test_every_shipped_search_space_passes_its_checks(algo, env, tmp_path):
    where, space = load_space(algo)
    assert where == f"conf/tune/{algo}.yaml" and space
    study = prepare([f"algo={algo}", f"env={env}", f"tune.dir={tmp_path / 'study'}"])
    assert [d.key for d in study.space] == [d.key for d in space]


def test_iqm_is_the_mean_of_the_middle_half():
    assert iqm([1.0, 2.0, 3.0, 4.0]) == 2.5
    assert iqm([0.0, 10.0, 10.0, 100.0]) == 10.0
    assert iqm([1.0, 2.0, 6.0]) == 3.0  # under 4 values nothing is trimmed: the mean
    assert iqm([-1.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 1000.0]) == 5.0
    assert not math.isnan(iqm([1.0]))


def test_a_trials_seeds_each_log_their_own_wandb_run_side_by_side_grouped_by_trial(rlrun, tmp_path):
    from test_cli import wandb_history, wandb_records

    study_dir = tmp_path / "wandb"
    proc = rlrun_tune("algo=ppo", "env=CartPole", "total_steps=2048", "eval.every_steps=1024", "eval.episodes=1",
                      "logger=wandb", "tune.n_trials=1", "tune.seeds=2", f"tune.dir={study_dir}", cwd=tmp_path,
                      rlrun=rlrun)
    assert proc.returncode == 0, describe(proc)
    assert read_trials(study_dir)[0]["state"] == "complete"
    ids = set()
    for seed in (0, 1):
        (log,) = (study_dir / "trials" / f"trial0000_seed{seed}").glob("wandb/offline-run-*/run-*.wandb")
        (run,) = [r.run for r in wandb_records(log) if r.WhichOneof("record_type") == "run"]
        assert run.run_group == "ppo_CartPole-trial0"
        ids.add(run.run_id)
        # Both runs were open at once and each logged its whole history (the first evaluation, then the end).
        assert [row["global_step"] for row in wandb_history(log) if "eval/mean_return" in row] == [1024, 2048]
    assert len(ids) == 2


def test_a_config_refused_without_any_sampled_value_stops_the_study_instead_of_failing_every_trial(tmp_path):
    from optuna.trial import TrialState

    study = prepare([*SHORT, "tune.seeds=1", f"tune.dir={tmp_path / 'study'}"])
    # What conf/ edited under a running study looks like to it: the base config no longer passes.
    study.target.overrides.append("eval.episodes=0")
    with pytest.raises(ConfigError, match="every trial would fail: eval.episodes must be > 0"):
        study.run_trial()
    (trial,) = study.study.trials
    assert trial.state == TrialState.FAIL


@pytest.mark.parametrize("pruner, cls", [("median", "MedianPruner"), ("halving", "SuccessiveHalvingPruner"),
                                         ("hyperband", "HyperbandPruner"), ("none", "NopPruner")])
def test_each_pruner_measures_its_resources_in_environment_steps_of_the_trials_budget(tmp_path, pruner, cls):
    study = prepare([*SHORT, f"tune.pruner={pruner}", f"tune.dir={tmp_path / 'study'}"])
    assert type(study.study.pruner).__name__ == cls
    if pruner == "hyperband":
        # Brackets from one evaluation interval to the whole budget (what trial.report's steps count).
        assert (study.study.pruner._min_resource, study.study.pruner._max_resource) == (1024, 4096)
    if pruner == "halving":
        assert study.study.pruner._min_resource == 1024
