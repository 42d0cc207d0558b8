"""Soft Actor-Critic with a learned temperature (Haarnoja et al. 2018, "Soft Actor-Critic Algorithms
and Applications", arXiv:1812.05905; equation numbers are that paper's).

Maximum-entropy RL: maximise E[sum_t r_t + alpha H(pi(.|s_t))]. Algorithm 1 of the paper, per
gradient step on a replayed minibatch:
    soft Q targets:  y = r + gamma (min_{i=1,2} Q'_i(s', a') - alpha log pi(a'|s')), a' ~ pi(.|s')
                     (eq. 3 for the soft value; the minimum of two target critics, section 5)
    critics:         J_Q(theta_i) = E[1/2 (Q_i(s, a) - y)^2]                               (eq. 5)
    actor:           J_pi(phi) = E[alpha log pi(a~|s) - min_i Q_i(s, a~)], a~ = f_phi(eps; s) (eq. 7-9)
    temperature:     J(alpha) = E[-alpha log pi(a~|s) - alpha H_target]                    (eq. 18)
    targets:         theta'_i <- tau theta_i + (1 - tau) theta'_i
The policy is a Gaussian squashed by tanh, its log-density corrected for the squashing (appendix C,
in rlrun.nets.continuous.squashed_gaussian_sample). log pi and the entropy target are those of the
action in [-1, 1], as in the authors' softlearning and SB3: the env gets the action rescaled to its
bounds, and H_target = -dim(A) means the same whatever the bounds. The first `learning_starts` steps act uniformly
at random; afterwards the behaviour policy is the stochastic policy itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from rlrun.algos.ddpg import (check_env, compiled, frozen, load_optimizer_state_in_order, noise_generator,
                              online_tensors, optimizer_state_in_order, soft_update, target_network,
                              twin_critic_regression_by_hand)
from rlrun.algos.offpolicy import OffPolicy
from rlrun.config import NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, from_config, rule
from rlrun.envs import VecEnv
from rlrun.hardware import Hardware
from rlrun.nets.cnn_actor_critic import to_tensor
from rlrun.nets.continuous import SquashedGaussianActor, TwinQ, acting, batch_statistics_only, numpy_actor
from rlrun.nets.dict_continuous import DictSquashedGaussianActor, DictTwinQ
from rlrun.nets.flat import flatten_parameters
from rlrun.nets.mlp import MLPConfig
from rlrun.optim import Adam


@dataclass
class SACConfig:
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
    alpha: float = rule(POSITIVE)
    autotune: bool
    alpha_lr: float = rule(POSITIVE)
    target_entropy: float | None
    target_update_interval: int = rule(POSITIVE)
    compile: bool = False


def soft_q_target(rewards: torch.Tensor, terminated: torch.Tensor, next_q1: torch.Tensor, next_q2: torch.Tensor,
                  next_log_prob: torch.Tensor, alpha: torch.Tensor, gamma: float) -> torch.Tensor:
    """y = r + gamma (1 - terminated) (min(Q'_1, Q'_2)(s', a') - alpha log pi(a'|s')), a' ~ pi(.|s')."""
    return rewards + gamma * (1.0 - terminated) * (torch.minimum(next_q1, next_q2) - alpha * next_log_prob)


def temperature_loss(log_alpha: torch.Tensor, log_prob: torch.Tensor, target_entropy: float) -> torch.Tensor:
    """eq. 18: J(alpha) = E[-alpha (log pi(a|s) + H_target)], with alpha = exp(log_alpha) (a log
    parameter keeps alpha positive). Its gradient lowers alpha when the policy's entropy -log pi is
    above the target and raises it when below. As eq. 18, the authors' softlearning and CleanRL;
    SB3 multiplies by log_alpha itself, whose gradient is this one divided by alpha: the same sign
    and fixed point, and under Adam nearly the same steps."""
    return -(log_alpha.exp() * (log_prob.detach() + target_entropy)).mean()


class SAC(OffPolicy):
    """SAC as a generator of metrics (the loop is OffPolicy.learn)."""

    action_spaces = ("continuous",)
    dict_observations = True  # each network through its own per-key encoder (rlrun.nets.dict_continuous)

    def __init__(self, cfg: SACConfig, env: VecEnv, network: MLPConfig, hardware: Hardware, seed: int,
                 total_steps: int):
        obs_dim = check_env(env, cfg)
        super().__init__(cfg, env, hardware, seed, total_steps)
        space, device = env.action_space, self.device
        if obs_dim is None:  # Dict observations
            self.actor = DictSquashedGaussianActor(env.observation_space, space, network).to(device)
            self.critic = DictTwinQ(env.observation_space, space.shape[0], network).to(device)
        else:
            self.actor = SquashedGaussianActor(obs_dim, space, network).to(device)
            self.critic = TwinQ(obs_dim, space.shape[0], network).to(device)
        # The paper keeps no target policy: the next action is drawn from the current one.
        self.critic_target, self.targets = target_network(self.critic)
        self.actor_flat = flatten_parameters(self.actor)
        self.critic_flat = flatten_parameters(self.critic)
        self.sources = online_tensors(self.critic, self.critic_flat)
        self.critic_params = list(self.critic.parameters())
        self.actor_optimizer = Adam(self.actor_flat, lr=cfg.actor_lr)
        self.critic_optimizer = Adam(self.critic_flat, lr=cfg.critic_lr)
        # Section 5: the target entropy is -dim(A) by default, in nats of the action in [-1, 1].
        self.target_entropy = -float(space.shape[0]) if cfg.target_entropy is None else cfg.target_entropy
        self.log_alpha = torch.tensor(math.log(cfg.alpha), device=device, requires_grad=cfg.autotune)
        self.alpha_optimizer = Adam(self.log_alpha, lr=cfg.alpha_lr) if cfg.autotune else None
        self.update_generator = noise_generator(self.generator, device, seed)
        # After flattening: it views the parameters. (Dict observations: their encoder acts in torch.)
        self.numpy_actor = numpy_actor(self.actor.net, device) if obs_dim is not None else None
        self.critic_order = self.critic.checkpoint_order()
        self.update_fns = compiled(self, ("critic_loss", "actor_loss"), cfg.compile, device)
        # Plain MLP critics, eager: the critics' backward written out (rlrun.nets.backprop), as TD3's; the
        # actor's loss, through the squashed Gaussian's sample and log-probability, stays with autograd.
        self.manual_critic_backward = self.critic.has_manual_backward and not cfg.compile

    @classmethod
    def parse_config(cls, cfg) -> SACConfig:
        return from_config(SACConfig, cfg, "algo")

    # --- acting -------------------------------------------------------------------------------------

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        if self.numpy_actor is None:
            return self.act_in_torch(obs, deterministic)
        center, half_range = self.actor.center.numpy(), self.actor.half_range.numpy()
        mean, log_std = np.split(self.numpy_actor(np.asarray(obs, np.float32)), 2, -1)
        if deterministic:
            return center + half_range * np.tanh(mean)
        # Drawn from the run's CPU generator, so that acting never touches the update's generator.
        noise = torch.randn(mean.shape, generator=self.generator).numpy()
        u = mean + np.exp(np.clip(log_std, self.actor.LOG_STD_MIN, self.actor.LOG_STD_MAX)) * noise
        return center + half_range * np.tanh(u)

    @torch.inference_mode()
    def act_in_torch(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        """act() where the actor has no numpy copy (on a GPU, or with batch norm); the same function."""
        obs_t = to_tensor(obs, self.device)
        with acting(self.actor):
            if deterministic:
                return self.actor.mode(obs_t).cpu().numpy()
            mean, log_std = self.actor.dist_params(obs_t)
        noise = torch.randn(mean.shape, generator=self.generator).to(self.device)
        u = mean + log_std.exp() * noise
        return (self.actor.center + self.actor.half_range * torch.tanh(u)).cpu().numpy()

    def explore(self, obs: np.ndarray) -> np.ndarray:
        """The behaviour policy is the stochastic policy itself (its entropy is the exploration)."""
        return self.act(obs, deterministic=False)

    # --- learning -----------------------------------------------------------------------------------

    def critic_loss(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, terminated: torch.Tensor,
                    next_obs: torch.Tensor, next_noise: torch.Tensor, alpha: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """eq. 5 for each critic, summed (one backward gives each critic its own loss's gradient),
        with the soft target of a' ~ pi(.|s') drawn from `next_noise`; returns it and [Q1; Q2](s, a)."""
        y = self.target(rewards, terminated, next_obs, next_noise, alpha)
        q = self.critic(obs, actions)  # both critics in one batched forward
        return 0.5 * (q - y).square().mean(-1).sum(), q

    @torch.no_grad()
    def target(self, rewards: torch.Tensor, terminated: torch.Tensor, next_obs: torch.Tensor,
               next_noise: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        """The soft target of eq. 5 (its V(s') by eq. 3) with a' ~ pi(.|s') drawn from `next_noise`."""
        next_action, next_log_prob = self.actor.sample_with(next_obs, next_noise)
        return soft_q_target(rewards, terminated, *self.critic_target(next_obs, next_action), next_log_prob, alpha,
                             self.cfg.gamma)

    def critic_backward_by_hand(self, obs: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor,
                                terminated: torch.Tensor, next_obs: torch.Tensor, next_noise: torch.Tensor,
                                alpha: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """critic_loss(...) with its backward written out; writes the critics' gradients and returns
        the loss and [Q1; Q2](s, a)."""
        y = self.target(rewards, terminated, next_obs, next_noise, alpha)
        return twin_critic_regression_by_hand(self.critic, obs, actions, y, scale=0.5)

    def actor_loss(self, obs: torch.Tensor, noise: torch.Tensor, alpha: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """eq. 9 with the reparameterised action a~ = f_phi(eps; s) (eq. 8): the gradient reaches phi
        through a~ and log pi. Returns it and log pi(a~|s)."""
        action, log_prob = self.actor.sample_with(obs, noise)
        return (alpha * log_prob - torch.minimum(*self.critic(obs, action))).mean(), log_prob

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        obs = batch["obs"]
        self.update_fns.step_begin()
        alpha = self.log_alpha.detach().exp()
        # The noise of a' ~ pi(.|s'), then of a~ (eq. 8), from the update's generator, outside the
        # loss functions so that a compiled update draws the same numbers as an eager one.
        next_noise, noise = (torch.randn(len(batch["rewards"]), self.actor.action_dim, generator=self.update_generator,
                                         device=batch["rewards"].device) for _ in range(2))
        # With network.batch_norm, each layer records one batch per step, of the minibatch's states s:
        # the actor's in its own loss, the critics' in theirs; other forwards only normalise.
        inputs = (obs, batch["actions"], batch["rewards"], batch["terminated"], batch["next_obs"], next_noise, alpha)
        if self.manual_critic_backward:
            critic_loss, q = self.critic_backward_by_hand(*inputs)
        else:
            with batch_statistics_only(self.actor):
                critic_loss, q = self.update_fns.critic_loss(*inputs)
            self.critic_flat.grad.zero_()
            critic_loss.backward()
        self.critic_optimizer.step()
        metrics = {"train/critic_loss": critic_loss.detach(), "train/q": q[0].detach().mean(), "train/alpha": alpha}

        # The critics' weights are constants in the actor's loss.
        with frozen(self.critic_params), batch_statistics_only(self.critic):
            actor_loss, log_prob = self.update_fns.actor_loss(obs, noise, alpha)
            self.actor_flat.grad.zero_()
            actor_loss.backward()
        self.actor_optimizer.step()

        metrics.update({"train/actor_loss": actor_loss.detach(), "train/entropy": -log_prob.detach().mean()})
        if self.alpha_optimizer is not None:
            # eq. 18, on the log-probabilities of the actions just drawn (before the actor's step).
            alpha_loss = temperature_loss(self.log_alpha, log_prob, self.target_entropy)
            self.alpha_optimizer.zero_grad(set_to_none=False)
            alpha_loss.backward()
            self.alpha_optimizer.step()
            metrics["train/alpha_loss"] = alpha_loss.detach()

        if self.gradient_updates % cfg.target_update_interval == 0:
            soft_update(self.targets, self.sources, cfg.tau)
        return metrics

    # --- checkpointing ------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        state = {**super().state_dict(), "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
                 "critic_target": self.critic_target.state_dict(), "actor_optimizer": self.actor_optimizer.state_dict(),
                 "critic_optimizer": optimizer_state_in_order(self.critic_optimizer, self.critic_order),
                 "log_alpha": self.log_alpha.detach().clone()}
        if self.alpha_optimizer is not None:
            state["alpha_optimizer"] = self.alpha_optimizer.state_dict()
        if self.update_generator is not self.generator:
            state["update_generator"] = self.update_generator.get_state()
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        for name in ("actor", "critic", "critic_target", "actor_optimizer"):
            getattr(self, name).load_state_dict(state[name])
        load_optimizer_state_in_order(self.critic_optimizer, state["critic_optimizer"], self.critic_order)
        with torch.no_grad():
            self.log_alpha.copy_(state["log_alpha"])
        if self.alpha_optimizer is not None:
            self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
        # A CUDA run draws update noise from a CUDA generator, a CPU run from its own generator
        # (ddpg.noise_generator): a GPU run's checkpoint resumes on the CPU without that state.
        if "update_generator" in state and self.update_generator is not self.generator:
            self.update_generator.set_state(state["update_generator"])
