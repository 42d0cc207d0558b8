"""Benchmark pairs for bench_speed.py: A2C and TRPO against Stable-Baselines3 / sb3-contrib, A3C throughput.

Each entry: name -> (rlrun round, baseline round or None, baseline name); a round takes
(budget steps, seed) and returns (steps taken, seconds, training episodic returns).

Both sides train the same agent on HalfCheetah-v5 (bench_common's ONPOLICY_*: separate 64x64 tanh actor
and critic, orthogonal init, state-independent log std starting at 0, observation and reward
normalisation) with the hyperparameters of A2C_HPARAMS / TRPO_HPARAMS below, at the thread count
bench_speed.py sets for both. A2C's value loss is vf_coef * MSE on both sides; TRPO's value function (rlrun 1/2 MSE, SB3 MSE)
is fitted by Adam, which is invariant to that factor of 2.

A3C has no baseline here: its rounds time 1 and 2 worker processes, worker start-up (spawning a
Python interpreter each) included, since that is part of what an A3C run costs.
"""

from __future__ import annotations

from bench_common import sb3_onpolicy_env, sb3_onpolicy_policy_kwargs, timed_onpolicy_round, timed_sb3_round
from sb3_contrib import TRPO as SB3TRPO
from stable_baselines3 import A2C as SB3A2C

from rlrun.algos.a2c import A2C
from rlrun.algos.a3c import A3C
from rlrun.algos.trpo import TRPO

# SB3's A2C defaults (OpenAI baselines'), with 8 envs.
A2C_HPARAMS = dict(num_envs=8, num_steps=5, learning_rate=7e-4, anneal_lr=False, optimizer="rmsprop",
                   rmsprop_alpha=0.99, optimizer_eps=1e-5, gamma=0.99, gae_lambda=1.0, norm_adv=False, ent_coef=0.0,
                   vf_coef=0.5, max_grad_norm=0.5, shared_torso=False, log_interval=100)
# sb3-contrib's TRPO defaults.
TRPO_HPARAMS = dict(num_envs=1, num_steps=2048, gamma=0.99, gae_lambda=0.95, norm_adv=True, max_kl=0.01, cg_iters=15,
                    cg_damping=0.1, line_search_shrink=0.8, line_search_steps=10, vf_learning_rate=1e-3,
                    vf_epochs=10, vf_minibatch_size=128, adam_eps=1e-5)
A3C_HPARAMS = dict(num_steps=5, learning_rate=7e-4, anneal_lr=True, optimizer="rmsprop", rmsprop_alpha=0.99,
                   optimizer_eps=1e-5, gamma=0.99, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5, shared_torso=False,
                   report_every=2048)


def train_rlrun(cls, hparams: dict, budget: int, seed: int, workers: int = 1) -> tuple[int, float, list[float]]:
    return timed_onpolicy_round(cls, cls.parse_config(hparams), budget, seed, workers)


def a2c_round(budget: int, seed: int) -> tuple[int, float, list[float]]:
    return train_rlrun(A2C, A2C_HPARAMS, budget, seed)


def sb3_a2c_round(budget: int, seed: int) -> tuple[int, float, list[float]]:
    h = A2C_HPARAMS
    venv = sb3_onpolicy_env(h["gamma"], h["num_envs"])
    model = SB3A2C("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, learning_rate=h["learning_rate"],
                   n_steps=h["num_steps"], gamma=h["gamma"], gae_lambda=h["gae_lambda"], ent_coef=h["ent_coef"],
                   vf_coef=h["vf_coef"], max_grad_norm=h["max_grad_norm"], rms_prop_eps=h["optimizer_eps"],
                   use_rms_prop=True, normalize_advantage=h["norm_adv"], policy_kwargs=sb3_onpolicy_policy_kwargs())
    return timed_sb3_round(model, venv, budget)


def trpo_round(budget: int, seed: int) -> tuple[int, float, list[float]]:
    return train_rlrun(TRPO, TRPO_HPARAMS, budget, seed)


def sb3_trpo_round(budget: int, seed: int) -> tuple[int, float, list[float]]:
    h = TRPO_HPARAMS
    venv = sb3_onpolicy_env(h["gamma"], h["num_envs"])
    model = SB3TRPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, learning_rate=h["vf_learning_rate"],
                    n_steps=h["num_steps"], batch_size=h["vf_minibatch_size"], gamma=h["gamma"],
                    gae_lambda=h["gae_lambda"], cg_max_steps=h["cg_iters"], cg_damping=h["cg_damping"],
                    line_search_shrinking_factor=h["line_search_shrink"], line_search_max_iter=h["line_search_steps"],
                    n_critic_updates=h["vf_epochs"], normalize_advantage=h["norm_adv"], target_kl=h["max_kl"],
                    policy_kwargs=sb3_onpolicy_policy_kwargs(eps=h["adam_eps"]))
    return timed_sb3_round(model, venv, budget)


def a3c_round(workers: int):
    def round_(budget: int, seed: int) -> tuple[int, float, list[float]]:
        return train_rlrun(A3C, A3C_HPARAMS, budget, seed, workers=workers)

    return round_


BENCHMARKS: dict = {
    "a2c": (a2c_round, sb3_a2c_round, "SB3"),
    "trpo": (trpo_round, sb3_trpo_round, "sb3-contrib"),
    "a3c_1w": (a3c_round(1), None, ""),
    "a3c_2w": (a3c_round(2), None, ""),
}
