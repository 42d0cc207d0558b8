"""What every benchmark round of rlrun shares: configs from conf/, a timed training loop, the PPO
comparison's settings (bench_speed.py and bench_startup.py both use them, so neither imports the other),
and the comparisons against Stable-Baselines3's runner and evaluation (compare_*_sb3.py).

torch and rlrun are imported inside the functions that need them: the compare scripts' parent process
only starts runs, and stays light."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from omegaconf import OmegaConf

if TYPE_CHECKING:
    from rlrun.hardware import Hardware

CONF = Path(__file__).resolve().parents[1] / "conf"

# The agent every on-policy comparison on HalfCheetah trains on both sides (PPO in bench_speed.py and
# bench_startup.py, A2C, TRPO and A3C in bench_onpolicy.py): separate 64x64 tanh actor and critic,
# orthogonal init, state-independent log std starting at 0, observation and reward normalisation.
ONPOLICY_ENV_ID = "HalfCheetah-v5"
ONPOLICY_NETWORK = dict(hidden_sizes=[64, 64], activation="tanh", ortho_init=True, log_std_init=0.0)
ONPOLICY_NORMALIZE = dict(normalize_obs=True, normalize_reward=True, clip_obs=10.0, clip_reward=10.0)
# PPO against SB3 (bench_speed.py's ppo row, bench_startup.py's whole-process row): one source of truth
# for both sides; merged over conf/algo/ppo.yaml so an edit there cannot make the comparison unequal
# without anyone noticing.
PPO_HPARAMS = dict(num_envs=1, num_steps=2048, num_minibatches=32, update_epochs=10, learning_rate=3e-4,
                   anneal_lr=True, adam_eps=1e-5, gamma=0.99, gae_lambda=0.95, norm_adv=True, clip_coef=0.2,
                   clip_vloss=False, ent_coef=0.0, vf_coef=0.5, max_grad_norm=0.5, target_kl=None)
# Value losses differ in form between the libraries: rlrun's is 0.5 * MSE (clipped as max(unclipped,
# clipped), as in OpenAI baselines), SB3's is MSE of the clipped prediction alone. Unclipped on both
# sides and SB3's coefficient halved make the two objectives the same function.


def load(group: str, name: str, overrides: dict) -> dict:
    """conf/<group>/<name>.yaml with the benchmark's settings on top, as a plain dict (for a
    `# @package _global_` algo file, its `algo:` block)."""
    node = OmegaConf.load(CONF / group / f"{name}.yaml")
    if group == "algo" and "algo" in node:
        node = node.algo
    node = OmegaConf.merge(node, overrides)
    return {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k not in ("_target_", "defaults")}


def cpu(workers: int = 1) -> Hardware:
    """The CPU profile at the thread count bench_speed.py set for both libraries."""
    import torch

    from rlrun.hardware import Hardware

    return Hardware(torch.device("cpu"), torch.get_num_threads(), "sync", workers)


def timed_learning(algo, budget: int, timed_from: int = 0) -> tuple[int, float, list[float]]:
    """Run `algo.learn()` to `budget` steps; returns (steps timed, their seconds, training episodic
    returns). With `timed_from`, the clock starts at the first report at or past that step (off-policy:
    time the learning phase only). The generator is closed inside the timed part (A3C joins its workers)."""
    returns: list[float] = []
    start, start_step = (time.perf_counter(), algo.global_step) if timed_from == 0 else (None, 0)
    learning = algo.learn()
    for metrics in learning:
        returns += metrics["episodic_returns"]
        if start is None and metrics["global_step"] >= timed_from:
            start, start_step = time.perf_counter(), metrics["global_step"]
        if metrics["global_step"] >= budget:
            break
    learning.close()
    return algo.global_step - start_step, time.perf_counter() - start, returns


def timed_onpolicy_round(cls, algo_cfg, budget: int, seed: int, workers: int = 1) -> tuple[int, float, list[float]]:
    """A bench_speed.py round of rlrun's on-policy algorithm `cls` (its parsed `algo_cfg`) on the
    ONPOLICY_* env and network: (steps, seconds, training episodic returns) as timed_learning."""
    from rlrun.envs import VecEnv, env_config
    from rlrun.nets import network_config

    env_cfg = env_config(load("env", "HalfCheetah", {"id": ONPOLICY_ENV_ID, **ONPOLICY_NORMALIZE}))
    net_cfg = network_config(load("network", "mlp", ONPOLICY_NETWORK))
    env = VecEnv(env_cfg, getattr(algo_cfg, "num_envs", 1), seed, "sync", algo_cfg.gamma)
    result = timed_learning(cls(algo_cfg, env, net_cfg, cpu(workers), seed, total_steps=budget), budget)
    env.close()
    return result


def sb3_onpolicy_env(gamma: float, num_envs: int):
    """SB3's side of the ONPOLICY_* env: `num_envs` HalfCheetahs with VecNormalize's clipping."""
    import gymnasium as gym
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    # Monitor records the raw episode returns that model.ep_info_buffer reports; SB3 adds it itself
    # only when given a bare gym env, not a VecEnv.
    return VecNormalize(DummyVecEnv([lambda: Monitor(gym.make(ONPOLICY_ENV_ID))] * num_envs), gamma=gamma,
                        clip_obs=ONPOLICY_NORMALIZE["clip_obs"], clip_reward=ONPOLICY_NORMALIZE["clip_reward"])


def sb3_onpolicy_policy_kwargs(**optimizer_kwargs) -> dict:
    """SB3's MlpPolicy as the ONPOLICY_NETWORK (separate actor and critic torsos)."""
    import torch

    hidden = ONPOLICY_NETWORK["hidden_sizes"]
    return dict(net_arch=dict(pi=hidden, vf=hidden), activation_fn=torch.nn.Tanh,
                ortho_init=ONPOLICY_NETWORK["ortho_init"], log_std_init=ONPOLICY_NETWORK["log_std_init"],
                **(dict(optimizer_kwargs=optimizer_kwargs) if optimizer_kwargs else {}))


def timed_sb3_round(model, venv, budget: int) -> tuple[int, float, list[float]]:
    """Train an SB3 `model` for `budget` steps: (steps, seconds, training episodic returns)."""
    start = time.perf_counter()
    model.learn(budget)
    seconds = time.perf_counter() - start
    # A fresh model per round, and HalfCheetah's episodes are 1,000 steps: a round of up to 100,000
    # steps fits the 100-episode buffer, so this is every episode of the round.
    returns = [float(info["r"]) for info in model.ep_info_buffer]
    venv.close()
    return model.num_timesteps, seconds, returns


# --- rlrun against Stable-Baselines3, seed by seed (compare_*_sb3.py) ----------------------------------

# Both sides are evaluated as rlrun's runner evaluates: EVAL_EPISODES episodes of the greedy policy on one
# env seeded seed + EVAL_SEED_OFFSET.
EVAL_EPISODES = 10
EVAL_SEED_OFFSET = 10_000  # conf/config.yaml's eval.seed_offset


@contextmanager
def runs_directory(keep: str | None, prefix: str) -> Iterator[str]:
    """Where the rlrun runs write: `keep` (created, and left behind) or a temporary directory."""
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        yield keep
    else:
        with tempfile.TemporaryDirectory(prefix=prefix) as out_dir:
            yield out_dir


def run_rlrun_cli(algo: str, env: str, seed: int, steps: int | None, overrides: list[str],
                  run_dir: Path) -> tuple[dict, float]:
    """(summary.json, seconds) of one run of rlrun's CLI as a user starts it, `rlrun algo=<algo> env=<env>`
    (so conf/tuned/ applies), with `logger=csv hardware=cpu`, the comparison's evaluation and `overrides`,
    into `run_dir`. `steps` None keeps the config's total_steps."""
    budget = [f"total_steps={steps}"] if steps else []
    args = [sys.executable, "-m", "rlrun.cli", f"algo={algo}", f"env={env}", f"seed={seed}", *budget,
            "logger=csv", "hardware=cpu", f"eval.episodes={EVAL_EPISODES}", f"eval.seed_offset={EVAL_SEED_OFFSET}",
            *overrides, f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(args, capture_output=True, text=True, cwd=run_dir.parent)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return json.loads((run_dir / "summary.json").read_text()), seconds


def sb3_eval_return(model, env_id: str, seed: int) -> float:
    """Mean return of an SB3 `model`'s deterministic policy over EVAL_EPISODES episodes of one `env_id`
    env, the first reset seeded seed + EVAL_SEED_OFFSET and later episodes continuing its stream, as
    rlrun's evaluation does."""
    import gymnasium as gym

    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed + EVAL_SEED_OFFSET)
    returns: list[float] = []
    episode_return = 0.0
    while len(returns) < EVAL_EPISODES:
        action, _ = model.predict(obs, deterministic=True)
        obs, reward, terminated, truncated, _ = env.step(int(action))
        episode_return += float(reward)
        if terminated or truncated:
            returns.append(episode_return)
            episode_return = 0.0
            obs, _ = env.reset()
    env.close()
    return float(np.mean(returns))
