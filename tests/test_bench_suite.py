"""rlrun-bench: a suite's runs as a real Hydra multirun, resumed by skipping complete runs; bad suites
stop in one line before anything trains; every shipped suite composes and passes rlrun's checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rlrun.bench import suite as suite_module
from rlrun.config import ConfigError

BENCH = str(Path(sys.executable).parent / "rlrun-bench")


def write_suite(path: Path, out: Path, **changes) -> Path:
    data = {"envs": ["CartPole"], "seeds": [0, 1], "total_steps": 512, "eval_every_steps": 256, "eval_episodes": 2,
            "launcher": "basic", "overrides": ["logger=csv", "hardware=cpu"], "out": str(out),
            "entries": [{"label": "ppo", "algo": "ppo"}]}
    path.write_text(yaml.safe_dump(data | changes))
    return path


def bench(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([BENCH, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_suite_resume_skips_complete_runs_and_reruns_incomplete_ones(tmp_path):
    out = tmp_path / "out"
    suite = write_suite(tmp_path / "tiny.yaml", out)
    first = bench(suite, cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-3000:]
    seed0, seed1 = (out / "runs" / "ppo" / "CartPole" / f"seed{s}" for s in (0, 1))
    assert json.loads((seed0 / "summary.json").read_text())["total_steps"] >= 512
    assert (out / "report" / "report.md").is_file()
    before = (seed0 / "summary.json").stat().st_mtime_ns, (seed0 / "summary.json").read_text()

    # A suite killed while seed 1 trained: its run is incomplete.
    summary = json.loads((seed1 / "summary.json").read_text()) | {"interrupted": True, "total_steps": 256}
    (seed1 / "summary.json").write_text(json.dumps(summary))
    second = bench(suite, cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    launched = [line for line in second.stdout.splitlines() if line.startswith("rlrun-bench: ppo on")]
    assert launched == [next(line for line in launched)] and "seeds 1:" in launched[0] and "seed=1 " in launched[0]
    assert ((seed0 / "summary.json").stat().st_mtime_ns, (seed0 / "summary.json").read_text()) == before
    assert not json.loads((seed1 / "summary.json").read_text())["interrupted"]
    kept = out / "incomplete" / "ppo" / "CartPole" / "seed1-1"
    assert json.loads((kept / "summary.json").read_text())["interrupted"]

    # Now every run is complete: nothing left to launch.
    loaded = suite_module.load_suite(str(suite))
    assert suite_module.plan(loaded, suite_module.check(loaded)) == []
    history = json.loads((out / "runs" / "bench.json").read_text())
    assert [len(h["multiruns"]) for h in history] == [1, 1]
    report = json.loads((out / "report" / "report.json").read_text())
    assert report["rows"][0]["seeds"] == [0, 1] and report["rows"][0]["label"] == "ppo"


def processes_in(directory: Path) -> dict[int, str]:
    """pid: command line of the processes whose working directory is `directory` (a suite's jobs inherit it)."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")) == directory:
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # gone, or not ours to read
            continue
    return found


def test_sigterm_to_rlrun_bench_stops_the_launchers_workers_too(tmp_path):
    """`kill <rlrun-bench>` alone: the joblib launcher's workers are in rlrun-bench's child's process group
    and get the signal too; their runs stop with a checkpoint, and nothing trains on once rlrun-bench exits
    (it used to leave the workers training into OUT)."""
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "out"
    suite = write_suite(tmp_path / "long.yaml", out, launcher="joblib", total_steps=2_000_000, eval_every_steps=100_000)
    log = tmp_path / "bench.log"
    with open(log, "w") as sink:
        process = subprocess.Popen([BENCH, str(suite)], cwd=work, stdout=sink, stderr=subprocess.STDOUT)
    metrics = [out / "runs" / "ppo" / "CartPole" / f"seed{s}" / "metrics.csv" for s in (0, 1)]
    try:
        deadline = time.monotonic() + 120
        while not all(m.is_file() and m.stat().st_size > 200 for m in metrics):  # both runs past a few rows
            assert process.poll() is None and time.monotonic() < deadline, "the suite's runs did not start"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
        left = processes_in(work)
    finally:  # whatever the outcome, nothing of this test trains on
        process.kill()
        for pid in processes_in(work):
            os.kill(pid, signal.SIGKILL)
    output = log.read_text()
    assert process.returncode == 130, output[-3000:]
    assert "rlrun-bench: interrupted; rerun the same command to continue" in output
    assert left == {}, f"still running after rlrun-bench exited: {left}"
    sizes = [m.stat().st_size for m in metrics]
    time.sleep(2)
    assert [m.stat().st_size for m in metrics] == sizes
    for m in metrics:
        summary = json.loads((m.parent / "summary.json").read_text())
        assert summary["interrupted"] and summary["total_steps"] < 2_000_000


@pytest.mark.parametrize("change, message", [
    ({"entries": [{"label": "x", "algo": "ppoo"}]}, "suite bad, entry x: unknown algo 'ppoo'; choose one of: a2c,"),
    ({"entries": [{"label": "x", "algo": "ppo", "envs": ["CartPol"]}]}, "suite bad, entry x: unknown env 'CartPol'"),
    ({"entries": [{"label": "x", "algo": "dqn", "envs": ["Pendulum"]}]},
     "suite bad, entry x on Pendulum: algo=dqn cannot act in Pendulum's continuous action space"),
    ({"entries": [{"label": "x", "algo": "ppo", "overrides": ["algo.clip_cof=0.1"]}]},
     "suite bad, entry x on CartPole: unknown key 'algo.clip_cof'"),
    ({"seeds": "zero"}, "suite.seeds must be of type"),
    ({"entries": ["ppo"]}, "suite.entries[0] must be a mapping ({label: ..., algo: ...}), got 'ppo'"),
    ({"figures": ["workerz"]}, "suite.figures: unknown figure 'workerz'; choose from: value_estimates, workers,"),
])
def test_a_bad_suite_is_one_line_before_anything_runs(tmp_path, change, message):
    out = tmp_path / "out"
    path = write_suite(tmp_path / "bad.yaml", out, **change)
    with pytest.raises(ConfigError) as raised:
        suite = suite_module.load_suite(str(path))
        suite_module.run_suite(suite, "rlrun-bench bad.yaml")
    assert message in str(raised.value) and "\n" not in str(raised.value)
    assert not out.exists()


def test_the_command_reports_a_bad_suite_in_one_line_and_fails(tmp_path):
    out = tmp_path / "out"
    done = bench(write_suite(tmp_path / "bad.yaml", out, entries=[{"label": "x", "algo": "ppoo"}]), cwd=tmp_path)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert lines == [f"rlrun-bench: error: suite bad, entry x: unknown algo 'ppoo'; choose one of: "
                     f"{', '.join(sorted(p.stem for p in (suite_module.CONF_DIR / 'algo').glob('*.yaml')))}"]
    assert not out.exists()


def test_a_run_of_another_budget_in_the_output_is_refused(tmp_path):
    run = tmp_path / "out" / "runs" / "ppo" / "CartPole" / "seed0"
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"seed": 0, "total_steps": 9999}))
    suite = suite_module.load_suite(str(write_suite(tmp_path / "tiny.yaml", tmp_path / "out")))
    with pytest.raises(ConfigError, match="is a run of total_steps=9,999, this suite asks 512"):
        suite_module.plan(suite, suite_module.check(suite))


def test_a_bad_command_line_value_is_one_line():
    with pytest.raises(ConfigError, match=r"seeds=\[0,: the value is not valid YAML"):
        suite_module.load_suite("smoke", ["seeds=[0,"])


def test_command_line_budget_replaces_every_entry_budget():
    suite = suite_module.load_suite("smoke", ["total_steps=2000", "seeds=[0]", "hardware.torch_threads=1"])
    assert suite.seeds == [0] and all(e.total_steps is None for e in suite.entries)
    assert suite.overrides[-1] == "hardware.torch_threads=1"
    assert "total_steps=2000" in suite_module.run_overrides(suite, suite.entries[0])


@pytest.mark.slow  # builds MuJoCo and Atari envs to check action spaces: about a minute for all suites
@pytest.mark.parametrize("name", suite_module.suite_names())
def test_shipped_suite_composes_and_passes_rlruns_checks(name):
    suite = suite_module.load_suite(name)
    budgets = suite_module.check(suite)
    assert budgets and all(b > 0 for b in budgets.values())
