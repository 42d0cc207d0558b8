"""The sampler (rlrun.sampler): worker processes that step an on-policy algorithm's envs into
shared-memory rollouts, synchronously or overlapping the learner's update."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import load_conf
from test_resume_exact import split_equals_whole

from rlrun.algos.ppo import PPO
from rlrun.algos.reinforce import REINFORCE
from rlrun.algos.trpo import TRPO
from rlrun.config import ConfigError
from rlrun.envs import VecEnv, env_config
from rlrun.hardware import Hardware, resolve_workers
from rlrun.nets import network_config
from rlrun.processes import usable_cores
from rlrun.sampler import Sampler, SamplerError, env_slices


def ppo(env_name: str, workers: int, overlap: bool = False, seed: int = 0, env_overrides: dict | None = None,
        **algo_overrides) -> PPO:
    cfg = PPO.parse_config({k: v for k, v in load_conf("algo", "ppo", overlap=overlap, **algo_overrides).items()
                            if k != "_target_"})
    env = VecEnv(env_config(load_conf("env", env_name, **(env_overrides or {}))), cfg.num_envs, seed, "sync",
                 cfg.gamma)
    hardware = Hardware(torch.device("cpu"), 1, "sync", workers)
    return PPO(cfg, env, network_config(load_conf("network", "mlp")), hardware, seed, 100_000)


def test_env_slices_split_the_envs_contiguously_and_evenly():
    assert env_slices(8, 2) == [(0, 4), (4, 8)]
    assert env_slices(8, 3) == [(0, 3), (3, 5), (5, 8)]
    assert env_slices(3, 3) == [(0, 1), (1, 2), (2, 3)]


def test_workers_and_overlap_choose_the_sampler_and_one_worker_without_overlap_the_process():
    assert not isinstance(ppo("CartPole", 1).rollouts, Sampler)
    assert isinstance(ppo("CartPole", 1, overlap=True).rollouts, Sampler)
    sampler = ppo("CartPole", 16, num_envs=4).rollouts
    assert isinstance(sampler, Sampler) and sampler.num_workers == 4  # at most one worker per env


def test_sampler_rollout_equals_the_in_process_rollout_but_for_blas_rounding():
    # CartPole has no normalisation: both paths see the same observations, draw the same noise from the
    # same generator, and act alike; only the acting forward's rounding may differ in the last bits
    # (a matrix product's rows round differently for 4 rows than for 8).
    in_process, sampled = ppo("CartPole", 1, num_envs=4, num_steps=64), ppo("CartPole", 2, num_envs=4, num_steps=64)
    in_process.rollouts.start()
    sampled.rollouts.start()
    try:
        for _ in range(2):  # the second rollout starts from where the first left the envs
            in_process.collect_rollout()
            sampled.collect_rollout()
            a, b = in_process.buffer, sampled.buffer
            for name in ("obs", "actions", "rewards", "terminated", "ended"):
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
            for name in ("dist_params", "values", "log_probs", "next_values", "advantages"):
                np.testing.assert_allclose(getattr(a, name), getattr(b, name), rtol=1e-5, atol=1e-6, err_msg=name)
            assert a.ended.any()  # episodes ended inside the rollout, and were handed over in the same order
            assert in_process.env.pop_episodes() == sampled.env.pop_episodes()
            assert in_process.generator.get_state().equal(sampled.generator.get_state())
    finally:
        sampled.rollouts.close()


def test_sampler_normalises_a_rollout_with_the_statistics_frozen_at_its_start_and_folds_it_in_after():
    algo = ppo("Pendulum", 2, num_envs=4, num_steps=32)
    env = algo.env
    algo.rollouts.start()
    try:
        mean, var, count = env.obs_rms.mean.copy(), env.obs_rms.var.copy(), env.obs_rms.count
        assert count == pytest.approx(4 + 1e-4)  # the reset batch of the 4 envs, as VecEnv.reset folds it in
        return_var = np.array(env.return_rms.var)
        algo.collect_rollout()
        raw = algo.rollouts.rollout.arrays["obs_record"]  # the observations after each step, as the envs paid them
        np.testing.assert_allclose(raw[..., 0] ** 2 + raw[..., 1] ** 2, 1.0, rtol=1e-6)  # (cos, sin, velocity)
        frozen = np.clip((raw - mean) / np.sqrt(var + 1e-8), -10, 10).astype(np.float32)
        np.testing.assert_array_equal(algo.buffer.obs[1:], frozen[:-1])  # (Pendulum's episodes outlast 32 steps)
        expected = type(env.obs_rms)(mean.shape)
        expected.mean, expected.var, expected.count = mean, var, count
        expected.update(raw.reshape(-1, 3))
        np.testing.assert_array_equal(env.obs_rms.mean, expected.mean)
        np.testing.assert_array_equal(env.obs_rms.var, expected.var)
        assert env.return_rms.count == pytest.approx(1e-4 + 32 * 4)
        # The rewards of the rollout were all scaled by the same, frozen, return statistics.
        returns = algo.rollouts.rollout.arrays["return_record"]
        assert returns.shape == (32, 4) and not np.array_equal(np.array(env.return_rms.var), return_var)
    finally:
        algo.rollouts.close()


def test_overlap_collects_the_next_rollout_with_the_policy_before_the_update():
    algo = ppo("CartPole", 2, overlap=True, num_envs=4, num_steps=32, num_minibatches=1, update_epochs=4,
               learning_rate=1e-3)
    learning = algo.learn()
    try:
        # Iteration i receives rollout i (launched at iteration i - 1 with the policy of then), launches
        # rollout i + 1 with the current policy, then updates on rollout i.
        next(learning)
        after_first_update = [p.detach().clone() for p in algo.net.parameters()]
        next(learning)  # launches rollout 3 with these parameters, updates on rollout 2
        next(learning)  # updates on rollout 3
        # Rollout 3's values and distribution parameters are those of the policy after the first update.
        behaviour = ppo("CartPole", 1, num_envs=4, num_steps=32)
        with torch.no_grad():
            for param, value in zip(behaviour.net.parameters(), after_first_update, strict=True):
                param.copy_(value)
        behaviour.acting_net.refresh()
        params, values = behaviour.acting_net.dist_params_and_value(algo.buffer.obs.reshape(-1, 4))
        np.testing.assert_allclose(algo.buffer.values.reshape(-1), values, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(algo.buffer.dist_params.reshape(-1, 2), params, rtol=1e-5, atol=1e-6)
        current, _ = algo.acting_net.dist_params_and_value(algo.buffer.obs.reshape(-1, 4))
        assert not np.allclose(current, params, atol=1e-4)  # the learner has moved on: one update of lag
    finally:
        learning.close()
    assert not algo.rollouts.processes  # closing the generator stopped the workers


def test_a_dead_worker_is_reported_in_one_line_and_not_waited_on():
    algo = ppo("CartPole", 2, num_envs=4, num_steps=32)
    algo.rollouts.start()
    try:
        victim = algo.rollouts.processes[1]
        os.kill(victim.pid, signal.SIGKILL)
        victim.join(10)
        start = time.monotonic()
        with pytest.raises(SamplerError) as error:
            algo.collect_rollout()
        assert time.monotonic() - start < 5
        message = str(error.value)
        assert "\n" not in message and "sampler worker 1 (envs 2-3" in message and "exit code -9" in message
    finally:
        algo.rollouts.close()
    assert not algo.rollouts.processes


class BreaksAtStepFive(gym.Wrapper):
    """A user's env that fails inside a worker (env.wrappers: test_sampler.BreaksAtStepFive)."""

    steps = 0

    def step(self, action):
        self.steps += 1
        if self.steps == 5:
            raise ValueError("the simulator broke")
        return self.env.step(action)


def test_an_error_in_a_worker_is_reported_in_one_line():
    algo = ppo("CartPole", 2, num_envs=4, num_steps=32, env_overrides={"wrappers": ["test_sampler.BreaksAtStepFive"]})
    algo.rollouts.start()
    try:
        with pytest.raises(SamplerError) as error:
            algo.collect_rollout()
        # (Both workers' envs break at their fifth step: whichever reply is read first is reported.)
        assert re.fullmatch(r"sampler worker (0 \(envs 0-1\)|1 \(envs 2-3\)) failed: ValueError: the simulator "
                            r"broke; stopping the run", str(error.value)), str(error.value)
    finally:
        algo.rollouts.close()


def test_a_worker_env_whose_state_cannot_be_saved_leaves_the_checkpoint_without_episodes_and_runs_on():
    # A user's wrapper rlrun cannot save: as in-process, the checkpoint says why and a resume starts
    # fresh episodes; the worker keeps collecting.
    algo = ppo("Pendulum", 2, num_envs=2, num_steps=16,
               env_overrides={"wrappers": ["gymnasium.wrappers.ClipAction"]})
    algo.rollouts.start()
    try:
        algo.collect_rollout()
        state = algo.env.state_dict()
        assert state["episodes"] is None and "ClipAction" in state["unsaved"]
        algo.collect_rollout()
    finally:
        algo.rollouts.close()


def test_trpo_and_reinforce_refuse_overlap_in_one_line():
    trpo = {k: v for k, v in load_conf("algo", "trpo", overlap=True).items() if k != "_target_"}
    with pytest.raises(ConfigError, match="algo.overlap=true is not supported by TRPO"):
        TRPO.parse_config(trpo)
    reinforce = {k: v for k, v in load_conf("algo", "reinforce", overlap=True).items() if k != "_target_"}
    with pytest.raises(ConfigError, match="algo.overlap=true is not supported by REINFORCE"):
        REINFORCE.parse_config(reinforce)


def test_auto_workers_are_the_usable_cores_on_cuda_and_one_on_the_cpu():
    assert resolve_workers("auto", torch.device("cuda")) == usable_cores() == len(os.sched_getaffinity(0))
    assert resolve_workers("auto", torch.device("cpu")) == 1
    assert resolve_workers(3, torch.device("cpu")) == 3


def test_banner_says_workers_envs_and_threads_and_an_algorithm_that_does_not_use_workers(rlrun, tmp_path):
    result = rlrun("algo=ppo", "env=CartPole", "logger=csv", "eval.episodes=1", "total_steps=512", "hardware=cpu",
                   "hardware.workers=2", "algo.overlap=true", "hardware.torch_threads=2", cwd=tmp_path,
                   run_dir=tmp_path / "ppo")
    assert result.returncode == 0, result.describe()
    # Two learner threads beside the workers: rlrun.openmp makes idle OpenMP threads sleep.
    assert ("hardware: 8 envs stepped by 2 sampler worker processes, overlapping the learner's update, "
            "2 torch threads (idle OpenMP threads sleep: OMP_WAIT_POLICY=PASSIVE)") in result.stdout + result.stderr
    rows = list(csv.DictReader(open(tmp_path / "ppo" / "metrics.csv")))
    assert [int(row["global_step"]) for row in rows] == [256, 512]
    result = rlrun("algo=reinforce", "env=CartPole", "logger=csv", "eval.episodes=1", "total_steps=200",
                   "hardware=cpu", "hardware.workers=2", cwd=tmp_path, run_dir=tmp_path / "reinforce")
    assert result.returncode == 0, result.describe()
    assert "hardware.workers=2 unused: this algorithm steps its envs in this process" in result.stdout + result.stderr


def test_synchronous_sampler_split_run_equals_one_run(rlrun, tmp_path):
    # With normalisation on, so that the statistics the learner folds in go through the checkpoint too; the
    # episodes in flight come from the workers into last.pt and go back to them on resume.
    split_equals_whole(rlrun, tmp_path, 1024, "env=CartPole", "hardware.workers=2", "env.normalize_obs=true",
                       "env.normalize_reward=true")


def test_overlapped_resume_continues_the_learner_with_fresh_episodes(rlrun, tmp_path):
    # The promise of docs/sampler.md: weights, optimiser, RNG, statistics and step count continue; the
    # rollout in flight at the checkpoint is dropped and the envs start fresh episodes (said in one line).
    common = ("env=CartPole", "logger=csv", "eval.episodes=1", "eval.every_steps=512", "hardware.workers=2",
              "algo.overlap=true", "env.normalize_obs=true")
    run_dir = tmp_path / "run"
    first = rlrun(*common, "total_steps=1024", cwd=tmp_path, run_dir=run_dir)
    assert first.returncode == 0, first.describe()
    saved = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert saved["env"]["episodes"] is None and "overlap" in saved["env"]["unsaved"]
    # Resumed with two learner threads: the command still chooses OpenMP's wait policy before torch loads.
    second = rlrun(f"resume={run_dir}", "total_steps=2048", "hardware.torch_threads=2", cwd=tmp_path)
    assert second.returncode == 0, second.describe()
    log = second.stdout + second.stderr
    assert "starts fresh episodes" in log and "mid-rollout in the sampler's workers" in log
    assert "2 torch threads (idle OpenMP threads sleep: OMP_WAIT_POLICY=PASSIVE)" in log
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert [int(row["global_step"]) for row in rows] == list(range(256, 2048 + 1, 256))  # no step lost or repeated
    resumed = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert resumed["env"]["obs_rms"]["count"] > saved["env"]["obs_rms"]["count"] + 1024  # statistics carried on


@pytest.mark.slow
@pytest.mark.parametrize("env, threshold", [("CartPole", 475.0)])
def test_ppo_with_overlap_still_reaches_the_bar(rlrun, tmp_path, env, threshold):
    # Measured with hardware.workers=2 algo.overlap=true, tuned settings, 100k steps (docs/sampler.md):
    # CartPole 500 on seeds 0-4. (Pendulum's tuned PPO explores with gSDE, which the workers refuse: see below;
    # with the earlier plain-Gaussian settings overlap reached -300 on 4 of 5 seeds.)
    run_dir = tmp_path / "run"
    result = rlrun("algo=ppo", f"env={env}", "seed=0", "logger=csv", "hardware=cpu", "hardware.workers=2",
                   "algo.overlap=true", cwd=tmp_path, run_dir=run_dir, timeout=600)
    assert result.returncode == 0, result.describe()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["total_steps"] >= 100_000
    assert summary["final_eval_mean_return"] >= threshold, summary


def test_workers_refuse_gsde_in_one_line(rlrun, tmp_path):
    # The workers' policy copies act with the plain distributions: gSDE's per-env exploration matrices are not
    # theirs to draw, so a run asking for both stops in one line instead of exploring without them.
    result = rlrun("algo=ppo", "env=Pendulum", "algo.use_sde=true", "hardware.workers=2", "algo.overlap=true",
                   "total_steps=2048", "logger=csv", "hardware=cpu", cwd=tmp_path, run_dir=tmp_path / "run")
    assert result.returncode != 0
    assert result.stderr_lines() == ["rlrun: error: hardware.workers=2 algo.overlap=true: the sampler's worker "
                                     "processes do not act with gSDE (algo.use_sde=true); set hardware.workers=1 "
                                     "algo.overlap=false"], result.describe()


def test_openmp_waits_passively_only_for_learner_threads_beside_overlapping_workers_and_only_before_torch():
    # In fresh interpreters: libgomp reads OMP_WAIT_POLICY once, when torch loads it.
    script = """
import os, sys
from rlrun import openmp
os.environ.pop("OMP_WAIT_POLICY", None)
openmp.choose_wait_policy(1, True); print(os.environ.get("OMP_WAIT_POLICY"), openmp.note)
openmp.choose_wait_policy(2, False); print(os.environ.get("OMP_WAIT_POLICY"), openmp.note)
openmp.choose_wait_policy(2, True); print(os.environ.get("OMP_WAIT_POLICY"), "|", openmp.note)
openmp.choose_wait_policy(2, True); print(os.environ.get("OMP_WAIT_POLICY"), "|", openmp.note)  # a later job
openmp.set_here = False
os.environ["OMP_WAIT_POLICY"] = "ACTIVE"
openmp.choose_wait_policy(2, True); print(os.environ.get("OMP_WAIT_POLICY"), "|", openmp.note)
del os.environ["OMP_WAIT_POLICY"]
import torch
openmp.choose_wait_policy(2, True); print(os.environ.get("OMP_WAIT_POLICY"), "|", openmp.note)
"""
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "None None",
        "None None",
        "PASSIVE | idle OpenMP threads sleep: OMP_WAIT_POLICY=PASSIVE",
        "PASSIVE | idle OpenMP threads sleep: OMP_WAIT_POLICY=PASSIVE",
        "ACTIVE | OMP_WAIT_POLICY=ACTIVE, from the environment",
        "None | OMP_WAIT_POLICY not set: torch was loaded before this job, so idle OpenMP threads spin; export "
        "OMP_WAIT_POLICY=PASSIVE before the multirun to have them sleep"]
