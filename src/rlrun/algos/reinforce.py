"""REINFORCE: Monte-Carlo policy gradient (Williams 1992; Sutton & Barto 2018, section 13.3-13.4).

The likelihood-ratio estimate of the gradient of J(theta) = E[G] from M whole episodes,

    grad J ~= 1/M sum_episodes sum_t grad log pi(a_t|s_t) (G_t - b(s_t))              (S&B eq. 13.8)

with G_t the reward-to-go sum_{k>=t} gamma^(k-t) r_k (or, without reward-to-go, the whole episode's
return G_0 for every step, Williams' episodic form), pi a softmax (discrete) or Gaussian
(continuous) policy network, and b either 0 or a learned state-value baseline V(s_t) regressed on
the same target (S&B section 13.4: any b that does not depend on a_t keeps the estimate unbiased).
Updates are made only from whole episodes of the current policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from rlrun.algos.onpolicy import act
from rlrun.config import NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, ConfigError, from_config, rule
from rlrun.data import discounted_returns
from rlrun.envs import VecEnv
from rlrun.hardware import Hardware
from rlrun.nets import ActorCritic, MLPConfig, NumpyActorCritic
from rlrun.nets.flat import clip_grad_norm_, flatten_parameters
from rlrun.optim import Adam


@dataclass
class REINFORCEConfig:
    num_envs: int = rule(POSITIVE)
    episodes_per_update: int = rule(POSITIVE)
    learning_rate: float = rule(POSITIVE)
    adam_eps: float = rule(POSITIVE)
    gamma: float = rule(UNIT_INTERVAL)
    reward_to_go: bool
    baseline: bool
    norm_adv: bool
    ent_coef: float = rule(NON_NEGATIVE)
    vf_coef: float = rule(NON_NEGATIVE)
    max_grad_norm: float | None = rule(POSITIVE)
    overlap: bool = False  # refused: see __post_init__

    def __post_init__(self):
        if self.overlap:
            raise ConfigError("algo.overlap=true is not supported by REINFORCE: its gradient estimate needs whole "
                              "episodes of the current policy (no importance ratio corrects for an older one); "
                              "use algo.overlap=false")


def reinforce_loss(log_probs: torch.Tensor, weights: torch.Tensor, num_episodes: int) -> torch.Tensor:
    """-1/M sum_t log pi(a_t|s_t) w_t: its gradient is minus the REINFORCE estimate of grad J, for
    weights w_t = G_t - b(s_t) held constant (no gradient flows into the return or the baseline)."""
    return -(log_probs * weights.detach()).sum() / num_episodes


@dataclass
class Episode:
    obs: list[np.ndarray]
    actions: list[np.ndarray]
    rewards: list[float]


class REINFORCE:
    """REINFORCE as a generator: each iteration collects `episodes_per_update` whole episodes and
    takes one gradient step."""

    action_spaces = ("discrete", "multi_discrete", "multi_binary", "continuous")

    def __init__(self, cfg: REINFORCEConfig, env: VecEnv, network: MLPConfig, hardware: Hardware, seed: int,
                 total_steps: int):
        if env.num_envs != cfg.num_envs:
            raise ValueError(f"env has {env.num_envs} copies, algo.num_envs is {cfg.num_envs}")
        self.cfg = cfg
        self.env = env
        self.device = hardware.device
        torch.manual_seed(seed)
        # The critic of an ActorCritic is the baseline V(s); without a baseline it is never used.
        self.net = ActorCritic(env.observation_space, env.action_space, network).to(self.device)
        self.dist = self.net.dist
        self.flat_params = flatten_parameters(self.net)
        self.optimizer = Adam(self.flat_params, lr=cfg.learning_rate, eps=cfg.adam_eps)
        self.acting_net = NumpyActorCritic(self.net)
        self.generator = torch.Generator().manual_seed(seed)
        self.global_step = 0

    @classmethod
    def parse_config(cls, cfg) -> REINFORCEConfig:
        return from_config(REINFORCEConfig, cfg, "algo")

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return act(self.acting_net, obs, deterministic, self.generator)

    def learn(self) -> Iterator[dict]:
        obs = self.env.reset()
        num_envs = self.cfg.num_envs
        episodes = [Episode([], [], []) for _ in range(num_envs)]
        # An env whose episode began under an older policy is stepped to the episode's end but not
        # recorded: every update uses whole episodes of the current policy only (with one env,
        # updates fall on episode boundaries and no step is left out).
        recording = np.ones(num_envs, bool)
        while True:
            finished: list[Episode] = []
            while len(finished) < self.cfg.episodes_per_update:
                action, _ = self.dist.act(self.acting_net.dist_params(obs), self.generator)
                next_obs, reward, terminated, truncated, _ = self.env.step(action)
                self.global_step += num_envs
                for i in np.flatnonzero(recording):
                    episodes[i].obs.append(obs[i])
                    episodes[i].actions.append(action[i])
                    episodes[i].rewards.append(float(reward[i]))
                # A truncated episode is used as if it had ended: REINFORCE has no value to bootstrap
                # from (with a baseline, its G_t are still the rewards the episode received).
                for i in np.flatnonzero(terminated | truncated):
                    if recording[i]:
                        finished.append(episodes[i])
                    episodes[i] = Episode([], [], [])
                    recording[i] = True
                obs = next_obs
            metrics = self.update(finished)
            # Only an env whose episode ended at the last step begins its next one under the updated
            # policy; the others are inside an episode begun under an older policy (an env that was
            # waiting one out has empty `rewards` too, so emptiness does not tell) and wait for their
            # next one.
            recording = terminated | truncated
            episodes = [Episode([], [], []) for _ in range(num_envs)]
            returns, lengths = self.env.pop_episodes()
            yield {"global_step": self.global_step, "episodic_returns": returns, "episodic_lengths": lengths,
                   **metrics}

    def update(self, episodes: list[Episode]) -> dict:
        cfg = self.cfg
        if cfg.reward_to_go:
            targets = [discounted_returns(np.array(e.rewards), cfg.gamma) for e in episodes]
        else:
            targets = [np.full(len(e.rewards), discounted_returns(np.array(e.rewards), cfg.gamma)[0])
                       for e in episodes]
        obs = torch.from_numpy(np.stack([o for e in episodes for o in e.obs])).to(self.device)
        actions = torch.from_numpy(np.stack([a for e in episodes for a in e.actions])).to(self.device)
        g = torch.from_numpy(np.concatenate(targets).astype(np.float32)).to(self.device)
        params = self.net.dist_params(obs)
        log_probs = self.dist.log_prob(params, actions)
        weights = g
        value_loss = torch.zeros((), device=self.device)
        if cfg.baseline:
            values = self.net.value(obs)
            weights = g - values.detach()
            value_loss = 0.5 * (g - values).square().mean()
        if cfg.norm_adv:
            # Centre and scale the weights (a common variance reduction; it changes the step's size
            # and, by the mean, acts as a constant baseline).
            weights = (weights - weights.mean()) / (weights.std() + 1e-8)
        policy_loss = reinforce_loss(log_probs, weights, len(episodes))
        entropy = self.dist.entropy(params).mean()
        loss = policy_loss - cfg.ent_coef * entropy + cfg.vf_coef * value_loss
        self.flat_params.grad.zero_()
        loss.backward()
        if cfg.max_grad_norm is not None:
            clip_grad_norm_(self.flat_params, cfg.max_grad_norm)
        self.optimizer.step()
        self.acting_net.refresh()
        policy_loss, value_loss, entropy = torch.stack([policy_loss, value_loss, entropy]).tolist()
        return {"train/policy_loss": policy_loss, "train/value_loss": value_loss, "train/entropy": entropy,
                "train/batch_steps": float(len(g))}

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "global_step": self.global_step}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.generator.set_state(state["generator"])
        self.global_step = state["global_step"]
        self.acting_net.refresh()
