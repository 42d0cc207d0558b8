"""Benchmark pairs for bench_speed.py: DQN against Stable-Baselines3 DQN on CartPole-v1.

Each entry: name -> (rlrun round, baseline round or None, baseline name); a round takes
(budget steps, seed) and returns (steps taken, seconds, training episodic returns).

Both sides train the same agent with the same hyperparameters (HPARAMS: RL Zoo's CartPole settings,
the speed figures' reference since the first benchmark): one env, a 256x256 ReLU Q network, Huber loss, hard
target copies every 10 env steps, 128 gradient steps of batch 64 every 256 env steps, gradient norm
clipped at 10. "dqn_freq4" is the same agent updated as in SB3's defaults (one gradient step every
4 env steps), where acting and per-step overhead weigh more. Threads: bench_speed.py sets them for
both sides (--threads).

    .venv/bin/python scripts/bench_speed.py --algos dqn,dqn_freq4 --rounds 3
"""

from __future__ import annotations

import time
from pathlib import Path

import gymnasium as gym
import torch
from bench_common import cpu, load, timed_learning

from rlrun.algos.dqn import DQN
from rlrun.envs import VecEnv, env_config
from rlrun.nets import network_config

CONF = Path(__file__).resolve().parents[1] / "conf"
ENV_ID = "CartPole-v1"
HPARAMS = dict(num_envs=1, buffer_size=100_000, learning_starts=1000, batch_size=64, train_frequency=256,
               gradient_steps=128, learning_rate=2.3e-3, adam_eps=1e-8, gamma=0.99, target_update_interval=10,
               tau=1.0, exploration_initial_eps=1.0, exploration_final_eps=0.04, exploration_fraction=0.16,
               max_grad_norm=10.0, double=False, dueling=False, clip_reward=False, eval_epsilon=0.0,
               steps_per_iteration=256)  # rlrun only: metrics every 256 steps, so a round stops at the budget
# SB3's default learning rate (2.3e-3 at this cadence collapses both sides). In a 20k-step round neither
# side's training return leaves ~10 here: dqn_freq4 is a speed figure for per-step overhead only.
FREQ4 = dict(train_frequency=4, gradient_steps=1, learning_rate=1e-4)
NETWORK = dict(hidden_sizes=[256, 256], activation="relu", ortho_init=False)  # SB3: PyTorch's default init


def rlrun_round(budget: int, seed: int, extra: dict | None = None) -> tuple[int, float, list[float]]:
    algo_cfg = DQN.parse_config(load("algo", "dqn", {**HPARAMS, **(extra or {})}))
    env_cfg = env_config(load("env", "CartPole", {"id": ENV_ID}))
    env = VecEnv(env_cfg, algo_cfg.num_envs, seed, "sync", algo_cfg.gamma)
    algo = DQN(algo_cfg, env, network_config(load("network", "mlp", NETWORK)), cpu(), seed, total_steps=budget)
    result = timed_learning(algo, budget)
    env.close()
    return result


def sb3_round(budget: int, seed: int, extra: dict | None = None) -> tuple[int, float, list[float]]:
    from stable_baselines3 import DQN as SB3DQN

    h = {**HPARAMS, **(extra or {})}
    model = SB3DQN(
        "MlpPolicy", gym.make(ENV_ID), seed=seed, device="cpu", verbose=0, learning_rate=h["learning_rate"],
        buffer_size=h["buffer_size"], learning_starts=h["learning_starts"], batch_size=h["batch_size"],
        tau=h["tau"], gamma=h["gamma"], train_freq=h["train_frequency"], gradient_steps=h["gradient_steps"],
        target_update_interval=h["target_update_interval"], exploration_fraction=h["exploration_fraction"],
        exploration_initial_eps=h["exploration_initial_eps"], exploration_final_eps=h["exploration_final_eps"],
        max_grad_norm=h["max_grad_norm"],
        policy_kwargs=dict(net_arch=NETWORK["hidden_sizes"], activation_fn=torch.nn.ReLU,
                           optimizer_kwargs=dict(eps=h["adam_eps"])))
    start = time.perf_counter()
    model.learn(budget)
    seconds = time.perf_counter() - start
    returns = [float(info["r"]) for info in model.ep_info_buffer]  # the last 100 episodes
    model.env.close()
    return model.num_timesteps, seconds, returns


def rlrun_freq4(budget: int, seed: int) -> tuple[int, float, list[float]]:
    return rlrun_round(budget, seed, FREQ4)


def sb3_freq4(budget: int, seed: int) -> tuple[int, float, list[float]]:
    return sb3_round(budget, seed, FREQ4)


BENCHMARKS: dict = {
    "dqn": (rlrun_round, sb3_round, "SB3"),
    "dqn_freq4": (rlrun_freq4, sb3_freq4, "SB3"),
}
