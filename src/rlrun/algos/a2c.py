"""Advantage Actor-Critic, synchronous (A2C): the synchronous variant of Mnih et al. 2016's A3C.

Algorithm S3 of the paper, with its N asynchronous actor-learners replaced by N envs stepped
together: each iteration runs the policy for t_max steps in every env, computes the n-step returns
R_t bootstrapped from V(s_{t_max}), and takes one gradient step on

    L = -log pi(a_t|s_t) (R_t - V(s_t)) - beta H(pi(.|s_t)) + c_v (R_t - V(s_t))^2

(the policy gradient with advantage A_t = R_t - V(s_t) held constant, the entropy bonus of section
4, and the value regression: the squared error of Algorithm S3, with no 1/2, as OpenAI baselines'
and SB3's `vf_coef * mse`), averaged over the N * t_max samples, with RMSProp (the paper's
optimiser) or Adam. The settings of OpenAI baselines / Stable-Baselines3 are the defaults.
With network=cnn (the paper's Atari network, one torso for both outputs) it learns from pixels, with
`clip_reward` as in the paper's Atari experiments.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from rlrun.algos.onpolicy import SDESettings, act, build_networks, dist_params_and_value, make_buffer, rollouts_for
from rlrun.algos.ppo import explained_variance
from rlrun.config import NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, from_config, one_of, rule
from rlrun.envs import VecEnv
from rlrun.hardware import Hardware
from rlrun.nets import ActorCritic, CNNConfig, MLPConfig
from rlrun.nets.flat import clip_grad_norm_
from rlrun.optim import Adam, RMSprop


@dataclass
class A2CConfig(SDESettings):
    num_envs: int = rule(POSITIVE)
    num_steps: int = rule(POSITIVE)
    learning_rate: float = rule(POSITIVE)
    anneal_lr: bool
    optimizer: str = rule(one_of("rmsprop", "adam"))
    rmsprop_alpha: float = rule(UNIT_INTERVAL)
    optimizer_eps: float = rule(POSITIVE)
    gamma: float = rule(UNIT_INTERVAL)
    gae_lambda: float = rule(UNIT_INTERVAL)
    norm_adv: bool
    ent_coef: float = rule(NON_NEGATIVE)
    vf_coef: float = rule(NON_NEGATIVE)
    max_grad_norm: float = rule(POSITIVE)
    shared_torso: bool
    log_interval: int = rule(POSITIVE)
    clip_reward: bool = False  # (a default: configs saved before the key existed still load)
    overlap: bool = False  # collect rollout k+1 while updating on rollout k (rlrun.sampler; docs/sampler.md)


def make_optimizer(name: str, flat: torch.nn.Parameter, lr: float, alpha: float, eps: float,
                   state: dict[str, torch.Tensor] | None = None) -> RMSprop | Adam:
    """RMSprop as torch.optim computes it: v = alpha v + (1 - alpha) grad^2 from v = 0,
    theta -= lr grad / (sqrt(v) + eps), as SB3's A2C uses by default; or Adam. rlrun.optim's classes:
    torch.optim's arithmetic for one flat parameter, without its per-step Python. `state`: a state to
    update in place (A3C's, shared by its workers).

    Not TensorFlow's RMSProp, which the paper and OpenAI baselines used and SB3's `RMSpropTFLike`
    emulates: there eps is inside the square root, lr grad / sqrt(v + eps), and v starts at 1.
    """
    if name == "rmsprop":
        return RMSprop(flat, state, lr=lr, alpha=alpha, eps=eps)
    return Adam(flat, state, lr=lr, eps=eps)


def actor_critic_loss(net: ActorCritic, batch: dict[str, torch.Tensor], ent_coef: float, vf_coef: float,
                      norm_adv: bool, forward: Callable | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss of Algorithm S3 over a batch, and, detached, [policy loss, value loss, entropy].
    `forward(obs)` gives pi's parameters and V(s) (default: the modules of `net`)."""
    params, values = forward(batch["obs"]) if forward is not None else dist_params_and_value(net, batch["obs"])
    log_probs = net.dist.log_prob(params, batch["actions"])
    # A_t = R_t - V(s_t) of the rollout's (old) critic: a constant of the policy gradient.
    advantages = batch["advantages"]
    if norm_adv:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    policy_loss = -(advantages * log_probs).mean()
    value_loss = (batch["returns"] - values).square().mean()
    # At ent_coef = 0 the entropy is only reported: no zero gradient through it.
    entropy = net.dist.entropy(params if ent_coef else params.detach()).mean()
    loss = policy_loss - ent_coef * entropy + vf_coef * value_loss
    return loss, torch.stack([policy_loss, value_loss, entropy]).detach()


class A2C:
    """A2C as a generator: each iteration is one rollout of N x t_max steps and one gradient step."""

    action_spaces = ("discrete", "multi_discrete", "multi_binary", "continuous")
    dict_observations = True  # rlrun.nets.dict_actor_critic
    uses_workers = True  # hardware.workers: sampler worker processes (rlrun.algos.onpolicy.rollouts_for)

    def __init__(self, cfg: A2CConfig, env: VecEnv, network: MLPConfig | CNNConfig, hardware: Hardware, seed: int,
                 total_steps: int):
        if env.num_envs != cfg.num_envs:
            raise ValueError(f"env has {env.num_envs} copies, algo.num_envs is {cfg.num_envs}")
        self.cfg = cfg
        self.env = env
        self.device = hardware.device
        self.total_steps = total_steps
        torch.manual_seed(seed)
        # Separate MLPs are evaluated as one (rlrun.nets.merged), as in PPO; a shared torso runs once; a
        # CNN (always one torso) learns and acts in torch (rlrun.algos.onpolicy.build_networks).
        self.networks = build_networks(env, network, self.device, cfg.shared_torso, sde=cfg)
        self.net, self.merged, self.acting_net = self.networks.net, self.networks.forward, self.networks.acting
        self.flat_params = self.networks.flat
        self.optimizer = make_optimizer(cfg.optimizer, self.flat_params, cfg.learning_rate, cfg.rmsprop_alpha,
                                        cfg.optimizer_eps)
        self.generator = torch.Generator().manual_seed(seed)
        self.buffer = make_buffer(env, cfg.num_steps, cfg.num_envs, self.net)
        self.global_step = 0
        # Stepped here, or by sampler workers (hardware.workers > 1 or algo.overlap; with the overlap the
        # gradient is that of the policy one update older, a staleness of the kind A3C's workers have).
        self.rollouts = rollouts_for(env, self.net, self.acting_net, network, hardware, cfg.overlap, self.buffer,
                                     cfg.shared_torso)

    @classmethod
    def parse_config(cls, cfg) -> A2CConfig:
        return from_config(A2CConfig, cfg, "algo")

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return act(self.acting_net, obs, deterministic, self.generator)

    def learn(self) -> Iterator[dict]:
        try:
            self.rollouts.start()
            yield from self.iterations()
        finally:
            self.rollouts.close()

    def iterations(self) -> Iterator[dict]:
        while True:
            # One yield per log_interval updates (SB3's log_interval): an update is only N * t_max steps,
            # and the runner's bookkeeping per yield would otherwise cost more than the update.
            sums = torch.zeros(4, device=self.device)
            for _ in range(self.cfg.log_interval):
                last_values = self.rollouts.collect(self.buffer, self.generator, self.cfg.clip_reward)
                self.global_step += self.cfg.num_envs * self.cfg.num_steps
                sums += self.update(last_values)
            policy_loss, value_loss, entropy, grad_norm = (sums / self.cfg.log_interval).tolist()
            returns, lengths = self.env.pop_episodes()
            yield {"global_step": self.global_step, "episodic_returns": returns, "episodic_lengths": lengths,
                   "train/policy_loss": policy_loss, "train/value_loss": value_loss, "train/entropy": entropy,
                   "train/grad_norm": grad_norm, "train/learning_rate": self.optimizer.param_groups[0]["lr"],
                   "train/explained_variance": explained_variance(self.buffer.values, self.buffer.returns)}

    def update(self, last_values: np.ndarray) -> torch.Tensor:
        """One gradient step on the last rollout, whose states after the last step have values
        `last_values`; returns, detached, [policy loss, value loss, entropy, gradient norm before clipping]."""
        cfg = self.cfg
        if cfg.gae_lambda == 1.0:
            # The paper's n-step returns: R = r_t + gamma R, from R = V(s_{t_max}) backwards.
            self.buffer.finish_nstep(last_values, cfg.gamma)
        else:
            # GAE(lambda) advantages (Schulman et al. 2016), an option of OpenAI baselines and SB3.
            self.buffer.finish(last_values, cfg.gamma, cfg.gae_lambda)
        if cfg.anneal_lr:
            # The fraction of the budget left when this rollout began (global_step already counts
            # it): the first update runs at the initial rate and the last above 0, as in CleanRL
            # (SB3 reads its schedule after the rollout, one rollout later than this).
            steps_before = self.global_step - cfg.num_envs * cfg.num_steps
            self.optimizer.param_groups[0]["lr"] = cfg.learning_rate * max(1 - steps_before / self.total_steps, 0)
        loss, stats = actor_critic_loss(self.net, self.buffer.flat_tensors(self.device), cfg.ent_coef, cfg.vf_coef,
                                        cfg.norm_adv, self.merged)
        self.flat_params.grad.zero_()
        loss.backward()
        grad_norm = clip_grad_norm_(self.flat_params, cfg.max_grad_norm)
        self.optimizer.step()
        self.acting_net.refresh()
        return torch.cat([stats, grad_norm.detach()[None]])

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                "generator": self.generator.get_state(), "global_step": self.global_step,
                "flat_layout": self.networks.layout}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        # (Saved before the merged network: the optimiser's statistics in net.parameters() order.)
        self.optimizer.load_state_dict(self.networks.optimizer_state(state["optimizer"], state.get("flat_layout")))
        self.generator.set_state(state["generator"])
        self.global_step = state["global_step"]
        self.acting_net.refresh()
