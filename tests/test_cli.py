"""End to end: the real `rlrun` command in a subprocess, on CartPole with budgets of a few seconds.

What a user relies on: the files of a run directory, W&B offline logs, resuming a run (also after
Ctrl-C), one-line errors for bad input, and Hydra multiruns.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import signal
import struct
import time
import zlib
from importlib import metadata
from pathlib import Path

import pytest
import torch
import yaml

from tests.conftest import FAST

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------------------------------------------
# Reading what a run wrote


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def steps_of(rows: list[dict[str, str]]) -> list[int]:
    return [int(row["global_step"]) for row in rows]


def assert_strictly_increasing(steps: list[int], what: str) -> None:
    repeated = sorted({s for s in steps if steps.count(s) > 1})
    assert not repeated, f"{what}: global_step repeated: {repeated} (all steps: {steps})"
    assert steps == sorted(steps), f"{what}: global_step goes backwards: {steps}"


def rollout_size(run_dir: Path) -> int:
    """Environment steps per PPO iteration (one row of metrics.csv), from the run's composed config."""
    algo = yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["algo"]
    return algo["num_envs"] * algo["num_steps"]


def load_checkpoint(path: Path) -> dict:
    # weights_only=True: the safe loader, which refuses anything but tensors and plain containers.
    return torch.load(path, map_location="cpu", weights_only=True)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# W&B's transaction log (run-<id>.wandb). wandb 0.31 writes it from its Go core and no longer ships
# the Python reader (wandb.sdk.internal.datastore is gone), so it is read here. The format is LevelDB's
# log format (github.com/google/leveldb/blob/main/doc/log_format.md) after a 7-byte header
# (":W&B", magic 0xBEE1, version): 32 KiB blocks of records `crc32 (IEEE, of type + data) | length u16 |
# type u8 | data`, a record being FULL or FIRST, MIDDLE..., LAST; each record is a serialised
# wandb.proto.wandb_internal_pb2.Record.
WANDB_BLOCK = 32768
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def wandb_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    ident, magic, _version = struct.unpack("<4sHB", data[:7])
    assert (ident, magic) == (b":W&B", 0xBEE1), f"{path} is not a W&B transaction log: header {data[:7]!r}"
    records, pending, pos = [], None, 7
    while pos + 7 <= len(data):
        left = WANDB_BLOCK - pos % WANDB_BLOCK
        if left < 7:  # a block's zero trailer
            pos += left
            continue
        crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left
            continue
        payload = data[pos + 7:pos + 7 + length]
        assert len(payload) == length, f"{path}: record at byte {pos} cut short"
        assert zlib.crc32(bytes([kind]) + payload) == crc, f"{path}: bad checksum of the record at byte {pos}"
        pos += 7 + length
        if kind == FULL:
            chunks = [payload]
        elif kind == FIRST:
            pending = [payload]
            continue
        elif kind == MIDDLE:
            pending.append(payload)
            continue
        elif kind == LAST:
            chunks, pending = [*pending, payload], None
        else:
            raise AssertionError(f"{path}: unknown record type {kind} at byte {pos}")
        record = wandb_internal_pb2.Record()
        record.ParseFromString(b"".join(chunks))
        records.append(record)
    return records


def wandb_history(path: Path) -> list[dict[str, float]]:
    """The rows logged with wandb.log, as {metric name: value}."""
    rows = []
    for record in wandb_records(path):
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows


def wandb_run_ids(path: Path) -> set[str]:
    return {record.run.run_id for record in wandb_records(path) if record.WhichOneof("record_type") == "run"}


def offline_runs(run_dir: Path) -> list[Path]:
    return sorted((run_dir / "wandb").glob("offline-run-*"))


# ---------------------------------------------------------------------------------------------------
# 1. A short run and its run directory


@pytest.fixture(scope="module")
def short_run(finished_cartpole_run):
    result, run_dir = finished_cartpole_run
    assert result.returncode == 0, result.describe()
    return run_dir


def test_short_run_exits_zero_and_writes_every_file_of_the_run_directory(finished_cartpole_run):
    result, run_dir = finished_cartpole_run
    assert result.returncode == 0, result.describe()
    expected = [".hydra/config.yaml", "manifest.json", "metrics.csv", "eval.csv", "summary.json",
                "checkpoints/last.pt", "checkpoints/best.pt"]
    missing = [name for name in expected if not (run_dir / name).is_file()]
    assert not missing, f"missing from {run_dir}: {missing}; it holds {sorted(map(str, run_dir.rglob('*')))}"
    assert not list(run_dir.glob("checkpoints/*.tmp")) and not list(run_dir.glob("checkpoints/.*.tmp"))


def test_short_run_saves_the_composed_config(short_run):
    config = yaml.safe_load((short_run / ".hydra" / "config.yaml").read_text())
    assert config["env"]["id"] == "CartPole-v1"
    assert config["algo"]["_target_"] == "rlrun.algos.ppo.PPO"
    assert config["total_steps"] == 2048  # the command line wins over conf/tuned/ppo_CartPole.yaml ...
    tuned = yaml.safe_load((REPO / "conf" / "tuned" / "ppo_CartPole.yaml").read_text())
    for key, value in tuned["algo"].items():  # ... which is applied for the rest
        assert config["algo"][key] == pytest.approx(value), f"algo.{key} is not conf/tuned/ppo_CartPole.yaml's"
    assert config["eval"] == {"every_steps": 1024, "episodes": 1, "seed_offset": 10000, "video_every_steps": 0,
                              "video_frames": 300, "video_size": None}
    assert config["logger"]["csv"] is True and config["logger"]["wandb"] is None


def test_manifest_records_command_seed_commit_packages_and_hardware(short_run):
    manifest = json.loads((short_run / "manifest.json").read_text())
    assert "total_steps=2048" in manifest["command"] and "env=CartPole" in manifest["command"]
    assert manifest["seed"] == 0
    assert "git_commit" in manifest
    assert manifest["git_commit"] is None or isinstance(manifest["git_commit"], str)
    assert manifest["packages"]["torch"] == metadata.version("torch")
    assert manifest["packages"]["gymnasium"] == metadata.version("gymnasium")
    assert manifest["hardware"]["device"] in ("cpu", "cuda")
    assert manifest["hardware"]["torch_threads"] >= 1
    assert len(manifest["wandb_run_id"]) == 8
    assert "resumed" not in manifest


def test_metrics_csv_has_one_row_per_iteration_with_the_training_columns(short_run):
    columns, rows = read_csv(short_run / "metrics.csv")
    for column in ("global_step", "episodic_return", "policy_loss", "value_loss", "sps"):
        assert column in columns, f"metrics.csv columns: {columns}"
    steps = steps_of(rows)
    assert_strictly_increasing(steps, "metrics.csv")
    step = rollout_size(short_run)
    assert steps == list(range(step, 2048 + 1, step)), f"not one row per {step}-step rollout"
    for row in rows:
        for column in ("policy_loss", "value_loss", "sps"):
            assert math.isfinite(float(row[column])), f"metrics.csv row {row}: {column} is not a number"


def test_eval_csv_has_the_mean_and_std_return_of_each_evaluation(short_run):
    columns, rows = read_csv(short_run / "eval.csv")
    assert columns[:1] == ["global_step"]
    assert {"mean_return", "std_return"} <= set(columns), f"eval.csv columns: {columns}"
    assert steps_of(rows) == [1024, 2048], "eval.every_steps=1024 over 2048 steps: two evaluations"
    for row in rows:
        assert float(row["mean_return"]) > 0  # every CartPole step is worth 1
        assert float(row["std_return"]) >= 0


def test_every_training_and_evaluation_episode_is_recorded(short_run):
    """episodes.csv and eval_episodes.csv hold one row per episode: what IQM and bootstrap intervals need."""
    columns, episodes = read_csv(short_run / "episodes.csv")
    assert columns == ["global_step", "episodic_return", "episodic_length", "elapsed"]
    # CartPole pays 1 per step: each episode's return is its length.
    assert episodes and all(float(r["episodic_return"]) == int(r["episodic_length"]) for r in episodes)
    _, metrics = read_csv(short_run / "metrics.csv")
    for row in metrics:  # the per-iteration mean is the mean of that iteration's episodes
        finished = [float(r["episodic_return"]) for r in episodes if r["global_step"] == row["global_step"]]
        if finished:
            assert float(row["episodic_return"]) == pytest.approx(sum(finished) / len(finished))
    _, evaluations = read_csv(short_run / "eval_episodes.csv")
    _, eval_rows = read_csv(short_run / "eval.csv")
    assert [r["global_step"] for r in evaluations] == [r["global_step"] for r in eval_rows]  # eval.episodes=1
    assert [float(r["episodic_return"]) for r in evaluations] == [float(r["mean_return"]) for r in eval_rows]


def test_with_the_progress_bar_on_cli_log_gets_every_line_and_the_bar_ends_at_100_percent(rlrun, tmp_path, run_dir):
    # 3000 is not a multiple of the 256-step iteration: the last one overshoots to 3072.
    result = rlrun(*FAST, "total_steps=3000", "eval.every_steps=1024", "logger.progress_bar=true", cwd=tmp_path,
                   run_dir=run_dir)
    assert result.returncode == 0, result.describe()
    log_lines = (run_dir / "cli.log").read_text().splitlines()
    banner = log_lines[0]
    for part in ("algo=ppo", "CartPole-v1", "conf/tuned/ppo_CartPole.yaml", "3,000 steps", "cpu", str(run_dir)):
        assert part in banner, f"the start banner does not say {part!r}: {banner}"
    assert sum("| eval return" in line for line in log_lines) == 3, log_lines
    bar_states = result.stderr.replace("\r", "\n").splitlines()
    assert any(line.startswith("100%|") for line in bar_states), result.stderr[-2000:]
    assert not any(line.lstrip().startswith(("101%", "102%")) for line in bar_states)
    assert not any("it/s" in line or "step/s]" in line for line in bar_states)  # one rate: the runner's steps/s


def test_summary_reports_the_final_return_steps_and_speed(short_run):
    summary = json.loads((short_run / "summary.json").read_text())
    assert math.isfinite(summary["final_eval_mean_return"]) and summary["final_eval_mean_return"] > 0
    assert summary["total_steps"] >= 2048
    assert summary["wall_seconds"] > 0
    assert summary["steps_per_second"] > 0
    assert summary["interrupted"] is False
    assert (summary["algo"], summary["env"], summary["env_id"]) == ("ppo", "CartPole", "CartPole-v1")


def test_checkpoints_load_with_weights_only_and_hold_the_training_state(short_run):
    last = load_checkpoint(short_run / "checkpoints" / "last.pt")
    best = load_checkpoint(short_run / "checkpoints" / "best.pt")
    for name, state in (("last.pt", last), ("best.pt", best)):
        for key in ("global_step", "algo", "env", "runner"):
            assert key in state, f"{name} lacks {key}: it has {sorted(state)}"
        assert (state["algo_name"], state["env_name"]) == ("ppo", "CartPole")
        assert isinstance(state["algo"], dict) and state["algo"]
        assert any(isinstance(v, torch.Tensor) for v in _leaves(state["algo"])), f"{name}: no tensors in algo"
    assert last["global_step"] == 2048
    assert 0 < best["global_step"] <= last["global_step"]
    assert last["runner"]["best_return"] == json.loads((short_run / "summary.json").read_text())[
        "best_eval_mean_return"]


def _leaves(tree):
    if isinstance(tree, dict):
        for value in tree.values():
            yield from _leaves(value)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            yield from _leaves(value)
    else:
        yield tree


# ---------------------------------------------------------------------------------------------------
# 2. W&B offline


@pytest.fixture(scope="module")
def wandb_run(rlrun, tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("wandb")
    run_dir = cwd / "run"
    # logger=wandb with no other W&B setting: offline is the default, no account or network needed.
    result = rlrun("env=CartPole", "logger=wandb", "total_steps=2048", "eval.every_steps=1024", "eval.episodes=1",
                   cwd=cwd, run_dir=run_dir)
    assert result.returncode == 0, result.describe()
    return run_dir


def test_wandb_offline_run_writes_its_log_under_the_run_directory_named_by_the_manifest_id(wandb_run):
    run_id = json.loads((wandb_run / "manifest.json").read_text())["wandb_run_id"]
    (offline,) = offline_runs(wandb_run)
    assert offline.name.endswith(f"-{run_id}")
    log = offline / f"run-{run_id}.wandb"
    assert log.is_file(), f"{offline} holds {sorted(p.name for p in offline.iterdir())}"
    assert wandb_run_ids(log) == {run_id}
    assert load_checkpoint(wandb_run / "checkpoints" / "last.pt")["runner"]["wandb_id"] == run_id


def test_wandb_offline_log_holds_the_train_and_eval_history_by_global_step(wandb_run):
    (log,) = (wandb_run / "wandb").glob("offline-run-*/run-*.wandb")
    history = wandb_history(log)
    train = [row for row in history if "train/episodic_return" in row]
    evals = [row for row in history if "eval/mean_return" in row]
    assert train and evals, f"history rows: {history}"
    assert all("global_step" in row for row in history)
    step = rollout_size(wandb_run)
    assert [row["global_step"] for row in train] == list(range(step, 2048 + 1, step))
    assert [row["global_step"] for row in evals] == [1024, 2048]
    assert {"train/policy_loss", "train/value_loss", "time/sps"} <= set(train[-1])
    # The same numbers as the CSV file.
    _, eval_rows = read_csv(wandb_run / "eval.csv")
    final = [row for row in eval_rows if int(row["global_step"]) == 2048 and row.get("mean_return")]
    if final:
        assert float(final[-1]["mean_return"]) == pytest.approx(evals[-1]["eval/mean_return"])


# ---------------------------------------------------------------------------------------------------
# 3. Resume


@pytest.fixture(scope="module")
def resumed_run(rlrun, tmp_path_factory) -> dict:
    """A W&B-logged CartPole run to 2048 steps, then `resume=<its dir> total_steps=4096`."""
    cwd = tmp_path_factory.mktemp("resume")
    run_dir = cwd / "run"
    first = rlrun("env=CartPole", "logger=wandb", "total_steps=2048", "checkpoint.every_steps=512",
                  "eval.every_steps=1024", "eval.episodes=1", cwd=cwd, run_dir=run_dir)
    assert first.returncode == 0, first.describe()
    first_manifest = json.loads((run_dir / "manifest.json").read_text())
    first_offline = offline_runs(run_dir)
    time.sleep(1.1)  # W&B names offline-run directories by the second they start
    second = rlrun(f"resume={run_dir}", "total_steps=4096", cwd=cwd)
    return {"run_dir": run_dir, "first": first, "second": second, "first_manifest": first_manifest,
            "first_offline": first_offline}


def test_resume_exits_zero_and_trains_to_the_new_budget(resumed_run):
    assert resumed_run["second"].returncode == 0, resumed_run["second"].describe()
    summary = json.loads((resumed_run["run_dir"] / "summary.json").read_text())
    assert summary["total_steps"] >= 4096
    assert summary["interrupted"] is False
    assert load_checkpoint(resumed_run["run_dir"] / "checkpoints" / "last.pt")["global_step"] >= 4096


def test_resume_appends_to_metrics_csv_without_repeating_a_step(resumed_run):
    assert resumed_run["second"].returncode == 0, resumed_run["second"].describe()
    _, rows = read_csv(resumed_run["run_dir"] / "metrics.csv")
    steps = steps_of(rows)
    assert_strictly_increasing(steps, "metrics.csv after resume")
    assert steps[0] == rollout_size(resumed_run["run_dir"]) and max(steps) >= 4096, steps
    assert [s for s in steps if s > 2048], "nothing logged past the first budget"


def test_resume_adds_a_resumed_entry_to_the_manifest_and_keeps_the_original(resumed_run):
    assert resumed_run["second"].returncode == 0, resumed_run["second"].describe()
    manifest = json.loads((resumed_run["run_dir"] / "manifest.json").read_text())
    first = resumed_run["first_manifest"]
    (entry,) = manifest["resumed"]
    assert "resume=" in entry["command"] and "total_steps=4096" in entry["command"]
    assert "git_commit" in entry and "time" in entry
    for key in ("command", "seed", "wandb_run_id", "packages", "hardware"):
        assert manifest[key] == first[key], f"manifest.json's {key} changed on resume"


def test_resume_continues_the_same_wandb_run(resumed_run):
    assert resumed_run["second"].returncode == 0, resumed_run["second"].describe()
    run_dir = resumed_run["run_dir"]
    run_id = resumed_run["first_manifest"]["wandb_run_id"]
    assert json.loads((run_dir / "manifest.json").read_text())["wandb_run_id"] == run_id
    assert len(resumed_run["first_offline"]) == 1
    offline = offline_runs(run_dir)
    assert len(offline) == 2, f"expected the first and the resumed offline run: {offline}"
    for directory in offline:
        assert directory.name.endswith(f"-{run_id}"), f"{directory.name} is not W&B run {run_id}"
        assert wandb_run_ids(directory / f"run-{run_id}.wandb") == {run_id}
    # The resumed part logs from the checkpoint on: no step is logged twice to the W&B run.
    before = [row["global_step"] for row in wandb_history(offline[0] / f"run-{run_id}.wandb")]
    after = [row["global_step"] for row in wandb_history(offline[1] / f"run-{run_id}.wandb")]
    assert max(before) == 2048 and min(after) > 2048 and max(after) >= 4096, (before, after)


# ---------------------------------------------------------------------------------------------------
# 4. Ctrl-C


@pytest.fixture(scope="module")
def interrupted_run(rlrun, tmp_path_factory) -> dict:
    """A run far too long to finish, sent SIGINT once its first checkpoint exists; what it left is
    read at once, before any test resumes it."""
    cwd = tmp_path_factory.mktemp("interrupt")
    run_dir = cwd / "run"
    last = run_dir / "checkpoints" / "last.pt"
    proc, args = rlrun.start("env=CartPole", "logger=csv", "total_steps=10000000", "checkpoint.every_steps=2048",
                             "eval.every_steps=0", "eval.episodes=1", cwd=cwd, run_dir=run_dir)
    deadline = time.monotonic() + 60
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if not last.exists():
        result = rlrun.finish(proc, args, cwd, timeout=0.1)
        pytest.fail(f"no {last} within 60 s\n{result.describe()}")
    proc.send_signal(signal.SIGINT)
    result = rlrun.finish(proc, args, cwd, timeout=60)
    summary_path = run_dir / "summary.json"
    return {"run_dir": run_dir, "cwd": cwd, "result": result,
            "summary": json.loads(summary_path.read_text()) if summary_path.exists() else None,
            "checkpoint": load_checkpoint(last)}


def test_ctrl_c_exits_130_with_a_resumable_checkpoint_and_an_interrupted_summary(interrupted_run):
    result, run_dir = interrupted_run["result"], interrupted_run["run_dir"]
    assert result.returncode == 130, result.describe()
    assert "Traceback" not in result.stderr, result.describe()
    assert f"rlrun resume={run_dir}" in result.stderr, result.describe()
    state = interrupted_run["checkpoint"]
    assert state["global_step"] > 0
    assert interrupted_run["summary"] is not None, "no summary.json after Ctrl-C"
    assert interrupted_run["summary"]["interrupted"] is True
    assert interrupted_run["summary"]["status"] == "interrupted"
    # The run stopped at an iteration boundary and checkpointed that step.
    assert interrupted_run["summary"]["total_steps"] == state["global_step"]


def test_a_run_stopped_by_ctrl_c_resumes_to_completion(rlrun, interrupted_run):
    assert interrupted_run["result"].returncode == 130, interrupted_run["result"].describe()
    run_dir = interrupted_run["run_dir"]
    target = interrupted_run["checkpoint"]["global_step"] + 1024
    result = rlrun(f"resume={run_dir}", f"total_steps={target}", cwd=interrupted_run["cwd"])
    assert result.returncode == 0, result.describe()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["interrupted"] is False and summary["status"] == "completed"
    assert summary["total_steps"] >= target
    assert math.isfinite(summary["final_eval_mean_return"])
    assert load_checkpoint(run_dir / "checkpoints" / "last.pt")["global_step"] >= target


# ---------------------------------------------------------------------------------------------------
# 5. Bad input


BAD_INPUT = [
    pytest.param(["algo=nope"], ["nope", "ppo"], id="unknown-algo"),
    pytest.param(["env=Nope"], ["Nope", "CartPole"], id="unknown-env"),
    pytest.param(["algo.learning_rat=1"], ["algo.learning_rat"], id="misspelt-key"),
    pytest.param(["algo.learning_rate=0"], ["algo.learning_rate", "> 0"], id="zero-learning-rate"),
    pytest.param(["total_steps=-1"], ["total_steps", "-1"], id="negative-budget"),
    pytest.param(["hardware=gpu"], ["cuda"], id="gpu-without-cuda"),
    pytest.param(["resume={missing}"], ["resume=", "{missing}"], id="resume-missing-dir"),
    pytest.param(["resume={source}", "algo=ppo_kl"], ["algo=ppo_kl"], id="resume-as-another-algo"),
    pytest.param(["resume={source}", "env=Pendulum"], ["env=Pendulum"], id="resume-as-another-env"),
]


def short_run_overrides_besides(overrides: list[str]) -> list[str]:
    """The short-run overrides, minus the keys a case sets itself; none for resume= (a resumed run takes
    the overrides it was made with)."""
    if any(o.startswith("resume=") for o in overrides):
        return []
    keys = {o.split("=", 1)[0] for o in overrides}
    return [o for o in ("env=CartPole", "logger=csv", "eval.episodes=1", "total_steps=2048")
            if o.split("=", 1)[0] not in keys]


@pytest.mark.parametrize(("overrides", "names"), BAD_INPUT)
def test_bad_input_exits_nonzero_with_one_error_line_naming_it_and_writes_no_checkpoint(
        rlrun, finished_cartpole_run, tmp_path, run_dir, overrides, names):
    if "hardware=gpu" in overrides and torch.cuda.is_available():
        pytest.skip("CUDA is available here: hardware=gpu is not an error")
    source_result, source = finished_cartpole_run
    assert source_result.returncode == 0, source_result.describe()
    values = {"missing": str(tmp_path / "no-such-run"), "source": str(source)}
    overrides = [o.format(**values) for o in overrides]
    names = [n.format(**values) for n in names]
    source_checkpoints = {p.name: digest(p) for p in (source / "checkpoints").iterdir()}

    resuming = any(o.startswith("resume=") for o in overrides)
    result = rlrun(*short_run_overrides_besides(overrides), *overrides, cwd=tmp_path, run_dir=None if resuming else run_dir)

    assert result.returncode != 0, result.describe()
    lines = result.stderr_lines()
    assert lines, result.describe()
    assert lines[-1].startswith("rlrun: error: "), result.describe()
    assert sum(line.startswith("rlrun: error:") for line in lines) == 1, result.describe()
    assert "Traceback" not in result.stderr + result.stdout, result.describe()
    assert "Error executing job" not in result.stderr, result.describe()
    for name in names:
        assert name.lower() in lines[-1].lower(), f"the error does not name {name!r}: {lines[-1]}"
    assert not list(tmp_path.rglob("*.pt")), f"checkpoints written: {list(tmp_path.rglob('*.pt'))}"
    assert {p.name: digest(p) for p in (source / "checkpoints").iterdir()} == source_checkpoints
    assert not (tmp_path / "no-such-run").exists()


# ---------------------------------------------------------------------------------------------------
# 6. Multirun


def test_multirun_runs_one_job_directory_per_seed_each_with_a_summary(rlrun, tmp_path):
    sweep = tmp_path / "sweep"
    result = rlrun("-m", "env=CartPole", "seed=0,1", "total_steps=1024", "logger=csv", "eval.episodes=1",
                   f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.describe()
    summaries = sorted(sweep.glob("*/summary.json"))
    assert len(summaries) == 2, f"{sweep} holds {sorted(map(str, sweep.rglob('*')))}"
    seeds = set()
    for path in summaries:
        summary = json.loads(path.read_text())
        assert summary["total_steps"] >= 1024 and summary["interrupted"] is False
        seeds.add(summary["seed"])
        assert json.loads((path.parent / "manifest.json").read_text())["seed"] == summary["seed"]
        assert (path.parent / "checkpoints" / "last.pt").is_file()
    assert seeds == {0, 1}
    # The two jobs are different runs: different seeds and different W&B ids.
    ids = {json.loads((p.parent / "manifest.json").read_text())["wandb_run_id"] for p in summaries}
    assert len(ids) == 2
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()
