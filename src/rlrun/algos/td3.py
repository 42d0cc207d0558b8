"""Twin Delayed DDPG, TD3 (Fujimoto, van Hoof and Meger 2018, arXiv:1802.09477).

DDPG with three changes against overestimation and variance, Algorithm 1 of the paper:
    target policy smoothing: a~ = mu'(s') + eps, eps ~ clip(N(0, sigma~), -c, c)      (eq. 14)
    clipped double Q:        y = r + gamma min_{i=1,2} Q'_i(s', a~)                   (eq. 10)
    both critics:            theta_i <- argmin 1/N sum (y - Q_i(s, a))^2
    delayed policy updates:  every d critic updates, the actor ascends Q_1(s, mu(s)) (the DDPG
                             gradient, DDPG eq. 6) and the targets move by tau    (section 5.1)
Exploration is Gaussian noise on mu(s); the first `learning_starts` steps act uniformly at random.
What is the same as in DDPG (target networks, soft updates, noise, frozen critic weights in the
actor's backward) is imported from ddpg.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rlrun.algos.ddpg import (GaussianNoise, check_env, compiled, deterministic_act, frozen,
                              load_optimizer_state_in_order, noise_generator, online_tensors, optimizer_state_in_order,
                              soft_update, target_network, twin_critic_regression_by_hand)
from rlrun.algos.offpolicy import OffPolicy
from rlrun.config import NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, from_config, rule
from rlrun.envs import VecEnv
from rlrun.hardware import Hardware
from rlrun.nets.continuous import DeterministicActor, TwinQ, batch_statistics_only, numpy_actor
from rlrun.nets.flat import flatten_parameters
from rlrun.nets.mlp import MLPConfig
from rlrun.optim import Adam


@dataclass
class TD3Config:
    num_envs: int = rule(POSITIVE)
    buffer_size: int = rule(POSITIVE)
    learning_starts: int = rule(NON_NEGATIVE)
    batch_size: int = rule(POSITIVE)
    train_frequency: int = rule(POSITIVE)
    gradient_steps: int = rule(POSITIVE)
    steps_per_iteration: int = rule(POSITIVE)
    gamma: float = rule(UNIT_INTERVAL)
    tau: float = rule(UNIT_INTERVAL)
    actor_lr: float = rule(POSITIVE)
    critic_lr: float = rule(POSITIVE)
    exploration_noise: float = rule(NON_NEGATIVE)
    policy_noise: float = rule(NON_NEGATIVE)
    noise_clip: float = rule(NON_NEGATIVE)
    policy_delay: int = rule(POSITIVE)
    compile: bool = False


def smoothed_target_action(target_action: torch.Tensor, noise: torch.Tensor, policy_noise: float, noise_clip: float,
                           low: torch.Tensor, high: torch.Tensor, half_range: torch.Tensor) -> torch.Tensor:
    """eq. 14: mu'(s') + clip(sigma~ N(0, 1), -c, c), kept inside the action bounds. sigma~ and c are in
    units of the action half-range (the paper's envs have bounds [-1, 1], where the two agree)."""
    eps = (policy_noise * noise).clamp(-noise_clip, noise_clip)
    return torch.maximum(torch.minimum(target_action + half_range * eps, high), low)


def clipped_double_q_target(rewards: torch.Tensor, terminated: torch.Tensor, next_q1: torch.Tensor,
                            next_q2: torch.Tensor, gamma: float) -> torch.Tensor:
    """eq. 10: y = r + gamma (1 - terminated) min(Q'_1, Q'_2)."""
    return rewards + gamma * (1.0 - terminated) * torch.minimum(next_q1, next_q2)


class TD3(OffPolicy):
    """TD3 as a generator of metrics (the loop is OffPolicy.learn)."""

    action_spaces = ("continuous",)

    def __init__(self, cfg: TD3Config, env: VecEnv, network: MLPConfig, hardware: Hardware, seed: int,
                 total_steps: int):
        obs_dim = check_env(env, cfg)
        super().__init__(cfg, env, hardware, seed, total_steps)
        space, device = env.action_space, self.device
        self.actor = DeterministicActor(obs_dim, space, network).to(device)
        self.critic = TwinQ(obs_dim, space.shape[0], network).to(device)
        self.actor_target, actor_target_tensors = target_network(self.actor)
        self.critic_target, critic_target_tensors = target_network(self.critic)
        self.actor_flat = flatten_parameters(self.actor)
        # Both critics in one flat tensor: one optimiser step, and one backward of the summed losses.
        self.critic_flat = flatten_parameters(self.critic)
        self.critic_params = list(self.critic.parameters())
        self.actor_optimizer = Adam(self.actor_flat, lr=cfg.actor_lr)
        self.critic_optimizer = Adam(self.critic_flat, lr=cfg.critic_lr)
        self.targets = actor_target_tensors + critic_target_tensors
        self.sources = online_tensors(self.actor, self.actor_flat) + online_tensors(self.critic, self.critic_flat)
        self.low = torch.as_tensor(space.low, device=device)
        self.high = torch.as_tensor(space.high, device=device)
        self.half_range_t = (self.high - self.low) / 2
        self.half_range = ((space.high - space.low) / 2).astype(np.float32)
        self.noise = GaussianNoise(cfg.exploration_noise, (env.num_envs, space.shape[0]))
        self.update_generator = noise_generator(self.generator, device, seed)
        self.numpy_actor = numpy_actor(self.actor.net, device)  # after flattening: it views the parameters
        self.critic_order = self.critic.checkpoint_order()
        self.update_fns = compiled(self, ("critic_loss", "actor_loss"), cfg.compile, device)
        # Plain MLPs (no batch norm), eager: both updates' backward passes written out (rlrun.nets.backprop),
        # autograd's gradients without its graph; algo.compile=true leaves them to Inductor.
        self.manual_backward = self.critic.has_manual_backward and self.actor.has_manual_backward and not cfg.compile

    @classmethod
    def parse_config(cls, cfg) -> TD3Config:
        return from_config(TD3Config, cfg, "algo")

    # --- acting -------------------------------------------------------------------------------------

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        return deterministic_act(self.actor, self.numpy_actor, obs, self.device)

    def explore(self, obs: np.ndarray) -> np.ndarray:
        """a = clip(mu(s) + eps, low, high), eps ~ N(0, exploration_noise^2) in half-range units."""
        space = self.env.action_space
        noise = self.noise(self.generator, self.env.episode_length == 0)
        return np.clip(self.act(obs) + self.half_range * noise, space.low, space.high)

    # --- learning -----------------------------------------------------------------------------------

    @torch.no_grad()
    def target(self, rewards: torch.Tensor, terminated: torch.Tensor, next_obs: torch.Tensor,
               noise: torch.Tensor) -> torch.Tensor:
        """The clipped double-Q target (eq. 10) of the smoothed target action (eq. 14, from standard
        normal `noise`)."""
        cfg = self.cfg
        next_action = smoothed_target_action(self.actor_target(next_obs), noise, cfg.policy_noise, cfg.noise_clip,
                                             self.low, self.high, self.half_range_t)
        return clipped_double_q_target(rewards, terminated, *self.critic_target(next_obs, next_action), cfg.gamma)

    def critic_loss(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, terminated: torch.Tensor,
                    next_obs: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both critics' mean squared errors to the target, summed: one backward, and each critic's
        gradient is its own loss's. Returns it and [Q1; Q2](s, a)."""
        y = self.target(rewards, terminated, next_obs, noise)
        q = self.critic(obs, actions)  # both critics in one batched forward
        return (q - y).square().mean(-1).sum(), q

    def critic_backward_by_hand(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                                terminated: torch.Tensor, next_obs: torch.Tensor, noise: torch.Tensor
                                ) -> tuple[torch.Tensor, torch.Tensor]:
        """critic_loss(...) with its backward written out; writes the critics' gradients and returns
        the loss and [Q1; Q2](s, a)."""
        y = self.target(rewards, terminated, next_obs, noise)
        return twin_critic_regression_by_hand(self.critic, obs, actions, y, scale=1.0)

    def actor_loss(self, obs: torch.Tensor) -> torch.Tensor:
        """The deterministic policy gradient through Q_1 alone (DDPG eq. 6)."""
        return -self.critic.q1(obs, self.actor(obs)).mean()

    @torch.no_grad()
    def actor_backward_by_hand(self, obs: torch.Tensor) -> torch.Tensor:
        """actor_loss(obs) and its backward without autograd's graph: d loss / d Q_1 = -1/N per row,
        carried to the action through Q_1 (its weights constants: grad_a Q_1 only), then through mu
        into the actor's gradient (DDPG eq. 6's chain rule). Returns the loss."""
        action, saved_actor = self.actor.forward_saving(obs)
        q1, saved_q1 = self.critic.q1_saving(obs, action)
        grad_action = self.critic.q1_action_grad(saved_q1, torch.full_like(q1, -1.0 / len(q1)))
        self.actor.backward(saved_actor, grad_action)
        return -q1.mean()

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs = batch["obs"]
        self.update_fns.step_begin()
        # Drawn outside the loss, so that a compiled update draws the same numbers as an eager one.
        noise = torch.randn(obs.shape[0], self.low.shape[0], generator=self.update_generator, device=obs.device)
        inputs = (obs, batch["actions"], batch["rewards"], batch["terminated"], batch["next_obs"], noise)
        if self.manual_backward:
            critic_loss, q = self.critic_backward_by_hand(*inputs)
        else:
            critic_loss, q = self.update_fns.critic_loss(*inputs)
            self.critic_flat.grad.zero_()
            critic_loss.backward()
        self.critic_optimizer.step()
        metrics = {"train/critic_loss": critic_loss.detach(), "train/q": q[0].detach().mean()}

        if self.gradient_updates % cfg.policy_delay == 0:
            # Delayed policy update (Q_1's batch norm, if any, recorded this minibatch in the critics'
            # loss: here it only normalises).
            if self.manual_backward:
                actor_loss = self.actor_backward_by_hand(obs)
            else:
                with frozen(self.critic_params), batch_statistics_only(self.critic):
                    actor_loss = self.update_fns.actor_loss(obs)
                    self.actor_flat.grad.zero_()
                    actor_loss.backward()
            self.actor_optimizer.step()
            soft_update(self.targets, self.sources, cfg.tau)
            metrics["train/actor_loss"] = actor_loss.detach()  # averaged over the updates that have one
        return metrics

    # --- checkpointing ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        state = {**super().state_dict(), "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                 "actor_target": self.actor_target.state_dict(), "critic_target": self.critic_target.state_dict(),
                 "actor_optimizer": self.actor_optimizer.state_dict(),
                 "critic_optimizer": optimizer_state_in_order(self.critic_optimizer, self.critic_order)}
        if self.update_generator is not self.generator:
            state["update_generator"] = self.update_generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for name in ("actor", "critic", "actor_target", "critic_target", "actor_optimizer"):
            getattr(self, name).load_state_dict(state[name])
        load_optimizer_state_in_order(self.critic_optimizer, state["critic_optimizer"], self.critic_order)
        # A CUDA run draws update noise from a CUDA generator, a CPU run from its own generator
        # (ddpg.noise_generator): a GPU run's checkpoint resumes on the CPU without that state.
        if "update_generator" in state and self.update_generator is not self.generator:
            self.update_generator.set_state(state["update_generator"])
