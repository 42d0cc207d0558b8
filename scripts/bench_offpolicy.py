"""Benchmark pairs for bench_speed.py: SAC and TD3 against Stable-Baselines3, on HalfCheetah-v5.

Each entry: name -> (rlrun round, baseline round or None, baseline name); a round takes
(budget steps, seed) and returns (steps taken, seconds, training episodic returns).

Both sides train the same agent (HPARAMS below: one env, [256, 256] ReLU actor and critics, batch 256,
one gradient step per env step, the same learning rates, tau, gamma, noise and delays, buffer 1e6,
no observation or reward normalisation) with LEARNING_STARTS uniform random steps first. SAC and TD3
are update-bound once learning starts, so a round times the learning phase only: from the end of env
step LEARNING_STARTS to the end of step `budget`, on both sides (`steps` is budget - LEARNING_STARTS);
env and agent construction and the random phase are excluded. Pick --steps a multiple of 1000 above
LEARNING_STARTS, e.g.

    .venv/bin/python scripts/bench_speed.py --algos sac,td3 --steps 4000 --rounds 2

Where a learning step's time goes (acting, env, replay, update; torch.profiler's operators with --ops),
and the update with algo.compile=true: scripts/profile_offpolicy.py.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
import torch
from bench_common import CONF, cpu, load, timed_learning
from omegaconf import OmegaConf
from stable_baselines3 import SAC as SB3SAC
from stable_baselines3 import TD3 as SB3TD3
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.noise import NormalActionNoise

from rlrun.algos.sac import SAC
from rlrun.algos.td3 import TD3
from rlrun.envs import VecEnv, env_config
from rlrun.nets import network_config

ENV_ID = "HalfCheetah-v5"
LEARNING_STARTS = 1000
NETWORK = dict(hidden_sizes=[256, 256], activation="relu", ortho_init=False)
# One source of truth for both sides, merged over conf/algo/<name>.yaml (so an edit there cannot make
# the comparison unequal unnoticed). SB3 has one learning rate per algorithm: the same for every part.
COMMON = dict(num_envs=1, buffer_size=1_000_000, learning_starts=LEARNING_STARTS, batch_size=256,
              train_frequency=1, gradient_steps=1, steps_per_iteration=1000, gamma=0.99, tau=0.005)
HPARAMS = {
    "sac": dict(COMMON, actor_lr=3e-4, critic_lr=3e-4, alpha_lr=3e-4, alpha=1.0, autotune=True, target_entropy=None,
                target_update_interval=1),
    "td3": dict(COMMON, actor_lr=1e-3, critic_lr=1e-3, exploration_noise=0.1, policy_noise=0.2, noise_clip=0.5,
                policy_delay=2),
}
CLASSES = {"sac": SAC, "td3": TD3}


def rlrun_round(name: str, budget: int, seed: int) -> tuple[int, float, list[float]]:
    """Train rlrun's `name` for `budget` steps; returns (learning-phase steps, their seconds, returns)."""
    node = OmegaConf.load(CONF / "algo" / f"{name}.yaml")  # the algo file's own env and network defaults
    algo_cfg = CLASSES[name].parse_config(load("algo", name, HPARAMS[name]))
    env_cfg = env_config(load("env", "HalfCheetah", OmegaConf.merge(node.env, {"id": ENV_ID})))
    net_cfg = network_config(load("network", "mlp", OmegaConf.merge(node.network, NETWORK)))
    env = VecEnv(env_cfg, algo_cfg.num_envs, seed, "sync", algo_cfg.gamma)
    result = timed_learning(CLASSES[name](algo_cfg, env, net_cfg, cpu(), seed, total_steps=budget), budget,
                            timed_from=LEARNING_STARTS)
    env.close()
    return result


class StartClock(BaseCallback):
    """Notes the time at the end of env step LEARNING_STARTS (SB3 trains after steps > learning_starts)."""

    def __init__(self):
        super().__init__()
        self.start: float | None = None

    def _on_step(self) -> bool:
        if self.start is None and self.num_timesteps >= LEARNING_STARTS:
            self.start = time.perf_counter()
        return True


def sb3_round(name: str, budget: int, seed: int) -> tuple[int, float, list[float]]:
    """Train SB3's `name` for `budget` steps; returns (learning-phase steps, their seconds, returns)."""
    h = HPARAMS[name]
    env = Monitor(gym.make(ENV_ID))
    common = dict(learning_rate=h["actor_lr"], buffer_size=h["buffer_size"], learning_starts=h["learning_starts"],
                  batch_size=h["batch_size"], tau=h["tau"], gamma=h["gamma"], train_freq=h["train_frequency"],
                  gradient_steps=h["gradient_steps"], seed=seed, device="cpu", verbose=0,
                  policy_kwargs=dict(net_arch=NETWORK["hidden_sizes"], activation_fn=torch.nn.ReLU))
    if name == "sac":
        model = SB3SAC("MlpPolicy", env, ent_coef=f"auto_{h['alpha']}", target_entropy="auto",
                       target_update_interval=h["target_update_interval"], **common)
    else:
        n = env.action_space.shape[0]
        # SB3 works in actions scaled to [-1, 1]: its sigmas are in half-range units, like rlrun's.
        noise = NormalActionNoise(np.zeros(n), h["exploration_noise"] * np.ones(n))
        model = SB3TD3("MlpPolicy", env, action_noise=noise, policy_delay=h["policy_delay"],
                       target_policy_noise=h["policy_noise"], target_noise_clip=h["noise_clip"], **common)
    clock = StartClock()
    model.learn(budget, callback=clock)
    seconds = time.perf_counter() - clock.start
    returns = [float(info["r"]) for info in model.ep_info_buffer]
    env.close()
    return model.num_timesteps - LEARNING_STARTS, seconds, returns


def pair(name: str) -> tuple:
    return (lambda budget, seed: rlrun_round(name, budget, seed), lambda budget, seed: sb3_round(name, budget, seed),
            "SB3")


BENCHMARKS: dict = {"sac": pair("sac"), "td3": pair("td3")}
