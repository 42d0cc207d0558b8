"""A checkpoint written by a hardware=gpu run loads into the same algorithm on a CPU-only machine.

The files themselves come from scripts/gpu_check.sh on a machine with CUDA (and are checked with
scripts/gpu_check_load.py); these tests hold what can be proven without one.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import CPU, load_conf

from rlrun.algos.sac import SAC
from rlrun.algos.td3 import TD3
from rlrun.envs import VecEnv, env_config
from rlrun.nets import network_config

ALGOS = {"sac": SAC, "td3": TD3}
REPO = Path(__file__).resolve().parents[1]


def make(name: str, seed: int = 0):
    node = load_conf("algo", name)
    algo_cfg = ALGOS[name].parse_config({k: v for k, v in node["algo"].items() if k != "_target_"})
    env = VecEnv(env_config({**load_conf("env", "Pendulum"), **node["env"]}), algo_cfg.num_envs, seed, "sync",
                 algo_cfg.gamma)
    net = network_config({**load_conf("network", "mlp"), **node["network"], "hidden_sizes": [16, 16]})
    return ALGOS[name](algo_cfg, env, net, CPU, seed, 10_000)


def cuda_generator_state(seed: int, offset: int) -> torch.Tensor:
    """What torch.Generator("cuda").get_state() returns (CUDAGeneratorImpl::get_state): the Philox
    seed (uint64) and offset (int64), 16 bytes; a CPU generator's state is 5,056 bytes."""
    return torch.tensor(list(struct.pack("<Qq", seed, offset)), dtype=torch.uint8)


@pytest.mark.parametrize("name", ["sac", "td3"])
def test_update_noise_generator_of_a_cuda_run_does_not_break_loading_on_cpu(name):
    # On CUDA, SAC and TD3 draw the noise inside an update from a CUDA generator (torch cannot draw
    # CUDA tensors from a CPU one) and checkpoint its state as "update_generator"; on the CPU they
    # draw it from the run's own generator. A GPU run's checkpoint must still load on the CPU.
    trained = make(name, seed=3)
    for _ in range(5):
        torch.rand(7, generator=trained.generator)  # move the run's generator off its seed
    state = trained.state_dict()
    state["update_generator"] = cuda_generator_state(seed=4, offset=128)

    fresh = make(name, seed=0)
    fresh.load_state_dict(state)

    # The run's own generator continues from the checkpoint, not from the CUDA generator's state.
    assert torch.equal(fresh.generator.get_state(), trained.generator.get_state())
    assert torch.equal(torch.rand(5, generator=fresh.generator), torch.rand(5, generator=trained.generator))


@pytest.mark.cluster  # ~2 minutes: `make test-cluster` runs it beside the SLURM and PostgreSQL tests
def test_gpu_check_rehearsed_on_cpu_keeps_checkpoints_that_load_into_their_algorithms(tmp_path):
    # The script the lead runs on a lent GPU machine, rehearsed with hardware=cpu in both slots and
    # tiny budgets on Pendulum: every run passes its checks, and the kept checkpoints load into
    # PPO, SAC, A3C and PPO from pixels in a process that sees no GPU (scripts/gpu_check_load.py); the
    # compiled SAC runs only on a GPU; the sampler's runs (workers + overlap, the fast Atari file) pass their checks too.
    out = tmp_path / "out"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(REPO / "scripts" / "gpu_check.sh"), "--cpu-only", "--env", "Pendulum",
                           "--scale", "0.02", "--a3c-workers", "1", "--sampler-workers", "2", "--load-check",
                           "--budget-seconds", "400"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-3000:]
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["failed"] == [] and report["load_check"] == "exit 0"
    assert sorted(p.name for p in out.glob("*.pt")) == ["a3c_gpu_last.pt", "ppo_atari_gpu_last.pt", "ppo_gpu_last.pt",
                                                        "sac_gpu_last.pt"]
    assert {(r["label"], r["profile"]) for r in report["results"]} == {
        (label, slot) for label in ("ppo", "sac", "a3c", "ppo_atari", "ppo_atari_sampler", "ppo_atari_fast",
                                    "ppo_64envs_sampler") for slot in ("gpu", "cpu")}
    ran = [r for r in report["results"] if r["status"] == "ran"]
    assert all(r["steps_per_second"] > 0 for r in ran)
    # The fast Atari file (tuned/ppo_Pong_fast.yaml) runs in the gpu slot only.
    assert {(r["label"], r["profile"]) for r in report["results"] if r not in ran} == {("ppo_atari_fast", "cpu")}
    assert "ALL LOADED" in done.stdout
