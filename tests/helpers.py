"""Building blocks shared by the tests: configs from conf/, small PPO instances, and the check of the
written-out learner (rlrun.nets.merged) against autograd."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import OmegaConf

from rlrun.algos.ppo import PPO
from rlrun.envs import VecEnv, env_config
from rlrun.hardware import Hardware
from rlrun.nets import network_config
from rlrun.resources import CONF_DIR

CONF = CONF_DIR  # what the installed rlrun reads (the package rlrun.conf, the repository's conf/)
CPU = Hardware(device=torch.device("cpu"), torch_threads=1, vector_backend="sync", workers=1)


def compose_config(*overrides: str):
    """The config the `rlrun` command composes from these overrides (defaults and tuned file included)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides))


def load_conf(group: str, name: str, **overrides) -> dict:
    node = OmegaConf.load(CONF / group / f"{name}.yaml")
    node.pop("defaults", None)
    return {**OmegaConf.to_container(node), **overrides}


def make_ppo(env_name: str, seed: int = 0, total_steps: int = 10_000, **algo_overrides) -> PPO:
    algo_cfg = PPO.parse_config({k: v for k, v in load_conf("algo", "ppo", **algo_overrides).items()
                                 if k != "_target_"})
    env = VecEnv(env_config(load_conf("env", env_name)), algo_cfg.num_envs, seed, "sync", algo_cfg.gamma)
    return PPO(algo_cfg, env, network_config(load_conf("network", "mlp")), CPU, seed, total_steps)



def assert_merged_matches_autograd(merged, reference, obs: torch.Tensor) -> None:
    """MergedActorCritic `merged` computes the function of the modules `reference` (a copy of the
    network it wraps) at `obs`, and its hand-written backward leaves autograd's gradient in each
    layer's .grad, for a loss of both outputs."""
    params, values = merged(obs)
    torch.testing.assert_close(params, reference.dist_params(obs))
    torch.testing.assert_close(values, reference.value(obs))
    w_params, w_values = torch.randn_like(params), torch.randn_like(values)
    ((params * w_params).sum() + (values * w_values).square().sum()).backward()
    ((reference.dist_params(obs) * w_params).sum() + (reference.value(obs) * w_values).square().sum()).backward()
    for (name, p), q in zip(merged.net.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def train_space_env_runs(rlrun, cwd: Path, runs: dict[str, list[str]]) -> dict[str, Path]:
    """Each of `runs` (name -> CLI arguments) trained by the CLI into cwd/<name>, with tests/ on PYTHONPATH so
    the runs can make this suite's own envs (tests/space_envs)."""
    old = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), old])
    try:
        dirs = {}
        for name, args in runs.items():
            result = rlrun(*args, cwd=cwd, run_dir=cwd / name)
            assert result.returncode == 0, result.describe()
            dirs[name] = cwd / name
        return dirs
    finally:
        os.environ["PYTHONPATH"] = old
