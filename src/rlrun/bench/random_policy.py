"""The random-policy score of an environment: the 0 of normalised scores.

`python -m rlrun.bench.random_policy CartPole Pendulum --episodes 100` plays uniformly random actions
(`action_space.sample()`, seeded) in the env exactly as rlrun builds it (conf/env/<name>.yaml through
`make_env`: same id, kwargs, time limit and wrappers, raw rewards) and prints one CSV row per env:
env, mean return, std, episodes, seed. conf/bench/reference/normalisation.csv records the rows it gave.
"""

from __future__ import annotations

import argparse

import numpy as np
from omegaconf import OmegaConf

from rlrun.envs import env_config
from rlrun.envs.vector import make_env

from rlrun.resources import CONF_DIR


def random_returns(env_name: str, episodes: int, seed: int) -> list[float]:
    node = OmegaConf.load(CONF_DIR / "env" / f"{env_name}.yaml")
    env = make_env(env_config(OmegaConf.to_container(node)))
    env.action_space.seed(seed)
    returns = []
    try:
        for episode in range(episodes):
            env.reset(seed=seed + episode)
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return returns


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("envs", nargs="+", help="names of conf/env/*.yaml")
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print("env,random_score,random_std,episodes,seed")
    for name in args.envs:
        returns = random_returns(name, args.episodes, args.seed)
        print(f"{name},{np.mean(returns):.2f},{np.std(returns):.2f},{len(returns)},{args.seed}", flush=True)


if __name__ == "__main__":
    main()
