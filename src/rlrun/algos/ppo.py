"""Proximal Policy Optimization (Schulman et al. 2017), clipped and adaptive-KL-penalty objectives.

Algorithm 1 of the paper: N actors each run the policy for T steps; advantages come from GAE; the
surrogate is optimised for K epochs of minibatch Adam; repeat. The implementation details that the
MuJoCo results depend on (Huang et al. 2022, "The 37 Implementation Details of PPO") are those of
CleanRL's ppo_continuous_action: orthogonal init, per-minibatch advantage normalisation, clipped value
loss, global gradient clipping, linear learning-rate annealing, observation and reward normalisation
(in rlrun.envs), truncated episodes bootstrapped from V(final observation).

From pixels (`network=cnn`, section 6.2 of the paper; conf/tuned/ppo_Pong.yaml) the network is the
Nature CNN shared by the policy and value heads (rlrun.nets.cnn_actor_critic), rewards are clipped
to their sign (`clip_reward`), and the settings are those of OpenAI baselines / CleanRL's ppo_atari.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.autograd.function import once_differentiable

from rlrun.algos.onpolicy import SDESettings, build_networks, make_buffer, rollouts_for
from rlrun.config import NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, ConfigError, from_config, one_of, rule
from rlrun.data.rollout import minibatches
from rlrun.envs import VecEnv
from rlrun.hardware import Hardware
from rlrun.nets import CNNConfig, MLPConfig
from rlrun.nets.flat import clip_grad_norm_
from rlrun.optim import Adam


@dataclass
class PPOConfig(SDESettings):
    objective: str = rule(one_of("clip", "kl_penalty"))
    num_envs: int = rule(POSITIVE)
    num_steps: int = rule(POSITIVE)
    num_minibatches: int = rule(POSITIVE)
    update_epochs: int = rule(POSITIVE)
    learning_rate: float = rule(POSITIVE)
    anneal_lr: bool
    adam_eps: float = rule(POSITIVE)
    gamma: float = rule(UNIT_INTERVAL)
    gae_lambda: float = rule(UNIT_INTERVAL)
    norm_adv: bool
    clip_coef: float = rule(POSITIVE)
    clip_vloss: bool
    ent_coef: float = rule(NON_NEGATIVE)
    vf_coef: float = rule(NON_NEGATIVE)
    max_grad_norm: float = rule(POSITIVE)
    target_kl: float | None = rule(POSITIVE)
    kl_target: float = rule(POSITIVE)
    kl_beta: float = rule(POSITIVE)
    kl_adaptive: bool
    clip_reward: bool = False  # (a default: configs saved before the key existed still load)
    overlap: bool = False  # collect rollout k+1 while updating on rollout k (rlrun.sampler; docs/sampler.md)
    # The approx KL the adaptive step size steers each minibatch towards (None: off; a default, as above).
    adaptive_lr_kl: float | None = field(default=None, metadata={"rule": POSITIVE})

    def __post_init__(self):
        batch = self.num_envs * self.num_steps
        if self.adaptive_lr_kl is not None and self.anneal_lr:
            raise ConfigError(f"algo.adaptive_lr_kl={self.adaptive_lr_kl} adapts the learning rate itself; it cannot be "
                              "annealed too: pass algo.anneal_lr=false (or algo.adaptive_lr_kl=null)")
        if batch % self.num_minibatches:
            raise ConfigError(f"algo.num_minibatches ({self.num_minibatches}) must divide the rollout size "
                              f"num_envs * num_steps = {batch}")


def clipped_surrogate_loss(ratio: torch.Tensor, advantages: torch.Tensor, clip_coef: float) -> torch.Tensor:
    """-L^CLIP (eq. 7): the pessimistic minimum of the unclipped and clipped surrogates, negated."""
    return ClippedSurrogateLoss.apply(ratio, advantages, clip_coef)


class ClippedSurrogateLoss(torch.autograd.Function):
    """-L^CLIP with its gradient written out (one autograd node instead of six: a PPO update of small
    networks is bound by per-op overhead). The derivative is the clipping's point: over n samples,

        d(-L^CLIP)/dr_t = -A_t / n   where the unclipped term r_t A_t is the minimum,
                        = 0          where the clipped one is (r_t outside [1 - eps, 1 + eps], on the
                                     side that would improve the objective: no incentive to go further).

    (Inside the range both terms are equal, and autograd's halves of the two add up to the same.)
    """

    @staticmethod
    def forward(ctx, ratio: torch.Tensor, advantages: torch.Tensor, clip_coef: float) -> torch.Tensor:
        clipped_ratio = torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
        unclipped, clipped = ratio * advantages, clipped_ratio * advantages
        unclipped_is_min = unclipped <= clipped
        ctx.save_for_backward(advantages, ratio, clipped_ratio, unclipped_is_min)
        return -torch.min(unclipped, clipped).mean()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        advantages, ratio, clipped_ratio, unclipped_is_min = ctx.saved_tensors
        scale = grad / -ratio.numel()
        grad_ratio = advantages * unclipped_is_min * scale if ctx.needs_input_grad[0] else None
        grad_advantages = None
        if ctx.needs_input_grad[1]:  # (not in PPO) d/dA_t: the chosen term's ratio; at a tie, as autograd, the mean
            chosen = torch.where(unclipped_is_min, ratio, clipped_ratio)
            tie = ratio * advantages == clipped_ratio * advantages
            grad_advantages = torch.where(tie, (ratio + clipped_ratio) / 2, chosen) * scale
        return grad_ratio, grad_advantages, None


def kl_penalty_loss(ratio: torch.Tensor, advantages: torch.Tensor, kl: torch.Tensor, beta: float) -> torch.Tensor:
    """-L^KLPEN (eq. 8): -(r_t A_t - beta KL[pi_old, pi])."""
    return -(ratio * advantages).mean() + beta * kl.mean()


def adapt_kl_beta(beta: float, kl: float, kl_target: float) -> float:
    """The adaptive rule of section 4: halve beta when d < d_targ / 1.5, double it when d > 1.5 d_targ."""
    if kl < kl_target / 1.5:
        return beta / 2
    if kl > kl_target * 1.5:
        return beta * 2
    return beta


# The bounds of the adaptive learning rate (rl_games' AdaptiveScheduler and rsl_rl's "adaptive" schedule).
ADAPTIVE_LR_MIN, ADAPTIVE_LR_MAX = 1e-6, 1e-2


def adapt_learning_rate(lr: torch.Tensor, approx_kl: torch.Tensor, kl: float) -> torch.Tensor:
    """The adaptive step size of rl_games and rsl_rl (the fast GPU PPO recipes): after each minibatch,
    divide the rate by 1.5 when the minibatch's approx KL exceeds 2 kl, multiply it by 1.5 when the KL is
    below kl / 2, within [1e-6, 1e-2]. On tensors, so a CUDA learner never waits for the KL's value."""
    lower = torch.clamp(lr / 1.5, min=ADAPTIVE_LR_MIN)
    higher = torch.clamp(lr * 1.5, max=ADAPTIVE_LR_MAX)
    return torch.where(approx_kl > 2 * kl, lower, torch.where(approx_kl < kl / 2, higher, lr))


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
               clip_coef: float | None) -> torch.Tensor:
    """0.5 (V - R)^2; with `clip_coef`, the pessimistic maximum against a value update clipped to
    old_value +- clip_coef, as in OpenAI baselines."""
    unclipped = (values - returns).square()
    if clip_coef is None:
        return 0.5 * unclipped.mean()
    clipped = old_values + torch.clamp(values - old_values, -clip_coef, clip_coef)
    return 0.5 * torch.max(unclipped, (clipped - returns).square()).mean()


class PPO:
    """PPO as a generator: each iteration collects one rollout, updates, and yields its metrics."""

    action_spaces = ("discrete", "multi_discrete", "multi_binary", "continuous")
    dict_observations = True  # rlrun.nets.dict_actor_critic
    uses_workers = True  # hardware.workers: sampler worker processes (rlrun.algos.onpolicy.rollouts_for)

    def __init__(self, cfg: PPOConfig, env: VecEnv, network: MLPConfig | CNNConfig, hardware: Hardware, seed: int,
                 total_steps: int):
        if env.num_envs != cfg.num_envs:
            raise ValueError(f"env has {env.num_envs} copies, algo.num_envs is {cfg.num_envs}")
        self.cfg = cfg
        self.env = env
        self.device = device = hardware.device
        self.total_steps = total_steps
        torch.manual_seed(seed)
        # The network by type (rlrun.algos.onpolicy.build_networks). An MLP: pi and V of a minibatch in
        # one pass, one batched matmul per layer for both networks (rlrun.nets.merged); acting in numpy on
        # the CPU with a copy of the learner's parameters refreshed after each update (a CUDA learner sends
        # them once per update, not a tensor per step). A CNN: one torso for both heads, acting in torch
        # on the learner's device. Either way the parameters are one flat buffer.
        self.networks = build_networks(env, network, device, sde=cfg)
        self.net, self.merged, self.acting_net = self.networks.net, self.networks.forward, self.networks.acting
        self.flat_params = self.networks.flat
        self.optimizer = Adam(self.flat_params, lr=cfg.learning_rate, eps=cfg.adam_eps)  # torch's fused Adam
        if cfg.adaptive_lr_kl is not None:
            # The adaptive rate lives on the learner's device, where the minibatch KL is: fused Adam reads
            # it there, and adapting it costs no host synchronisation.
            self.optimizer.param_groups[0]["lr"] = torch.tensor(cfg.learning_rate, device=device)
        self.dist = self.net.dist
        self.generator = torch.Generator().manual_seed(seed)
        self.global_step = 0
        self.kl_beta = cfg.kl_beta
        self.buffer = make_buffer(env, cfg.num_steps, cfg.num_envs, self.net)
        # The envs stepped here, or by sampler workers with hardware.workers > 1 or algo.overlap (then the
        # rollout an update consumes was collected by the policy before the previous update: PPO's ratio
        # and clipping are against its stored log-probabilities, so the objective stays that of the paper).
        self.rollouts = rollouts_for(env, self.net, self.acting_net, network, hardware, cfg.overlap, self.buffer)

    @classmethod
    def parse_config(cls, cfg) -> PPOConfig:
        return from_config(PPOConfig, cfg, "algo")

    # --- acting ---------------------------------------------------------------------------------

    @torch.inference_mode()
    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        params = torch.from_numpy(self.acting_net.dist_params(obs))
        action = self.dist.mode(params) if deterministic else self.dist.sample(params, self.generator)
        return action.numpy()

    # --- the loop -------------------------------------------------------------------------------

    def learn(self) -> Iterator[dict]:
        try:
            self.rollouts.start()
            while True:
                self.collect_rollout()
                metrics = self.update()
                returns, lengths = self.env.pop_episodes()
                yield {"global_step": self.global_step, "episodic_returns": returns, "episodic_lengths": lengths,
                       **metrics}
        finally:
            self.rollouts.close()

    def collect_rollout(self) -> None:
        """Run the policy for num_steps in each env, then compute GAE advantages."""
        last_values = self.rollouts.collect(self.buffer, self.generator, self.cfg.clip_reward)
        self.global_step += self.cfg.num_steps * self.cfg.num_envs
        self.buffer.finish(last_values, self.cfg.gamma, self.cfg.gae_lambda)

    def update(self) -> dict:
        """K epochs of minibatch Adam on the surrogate objective over the last rollout."""
        cfg = self.cfg
        batch = self.buffer.flat_tensors(self.device)
        batch_size = batch["values"].shape[0]
        if cfg.anneal_lr:
            # The fraction of the budget left when this rollout began: the first update runs at the
            # initial rate, the last at learning_rate * batch / total_steps (CleanRL's
            # frac = 1 - (iteration - 1) / num_iterations); global_step already counts this rollout.
            steps_before = self.global_step - batch_size
            lr = cfg.learning_rate * max(1.0 - steps_before / self.total_steps, 0.0)
            self.optimizer.param_groups[0]["lr"] = lr
        minibatch_size = batch_size // cfg.num_minibatches
        # Metrics stay tensors during the epochs and become numbers once, at the end (no host sync
        # per minibatch; with target_kl, one per epoch).
        sums = torch.zeros(5, device=self.device)
        count = 0
        epochs = 0
        epoch_kl = float("nan")
        stop_early = False
        for _ in range(cfg.update_epochs):
            order = torch.randperm(batch_size, generator=self.generator).to(self.device)
            epoch_kl_sum = torch.zeros((), device=self.device)
            for mb in minibatches(batch, order, minibatch_size):
                loss, stats = self.loss(mb)
                self.flat_params.grad.zero_()
                loss.backward()
                clip_grad_norm_(self.flat_params, cfg.max_grad_norm)
                self.optimizer.step()
                if cfg.adaptive_lr_kl is not None:
                    lr = self.optimizer.param_groups[0]["lr"]
                    lr.copy_(adapt_learning_rate(lr, stats[3], cfg.adaptive_lr_kl))
                sums += stats
                epoch_kl_sum += stats[3]
                count += 1
            epochs += 1
            if cfg.target_kl is not None:
                # This epoch's mean approx KL, not the mean over all epochs so far: epoch 1's KL is
                # near 0 (its first minibatch's exactly 0) and would hold a running mean down long
                # after the policy has moved past target_kl. CleanRL compares after each epoch too
                # (its last minibatch's KL); SB3 per minibatch, at 1.5 x target_kl.
                epoch_kl = (epoch_kl_sum / cfg.num_minibatches).item()
                if epoch_kl > cfg.target_kl:
                    stop_early = True
                    break
        policy_loss, value_loss_, entropy, approx_kl, clip_fraction = (sums / count).tolist()
        metrics = {"train/policy_loss": policy_loss, "train/value_loss": value_loss_, "train/entropy": entropy,
                   "train/approx_kl": approx_kl, "train/clip_fraction": clip_fraction,
                   "train/learning_rate": float(self.optimizer.param_groups[0]["lr"]),
                   "train/explained_variance": explained_variance(self.buffer.values, self.buffer.returns)}
        if cfg.objective == "kl_penalty":
            with torch.no_grad():
                kl = self.dist.kl(batch["dist_params"], self.net.dist_params(batch["obs"])).mean().item()
            metrics["train/kl"] = kl
            metrics["train/kl_beta"] = self.kl_beta
            if cfg.kl_adaptive:
                self.kl_beta = adapt_kl_beta(self.kl_beta, kl, cfg.kl_target)
        if cfg.target_kl is not None:
            # What the early stop compared with target_kl, and how many epochs ran.
            metrics["train/stopped_early"] = float(stop_early)
            metrics["train/last_epoch_approx_kl"] = epoch_kl
            metrics["train/epochs_run"] = float(epochs)
        self.acting_net.refresh()
        return metrics

    def loss(self, mb: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """The minibatch loss and, detached, [policy loss, value loss, entropy, approx KL, clip fraction]."""
        cfg = self.cfg
        params, values = self.merged(mb["obs"])
        log_ratio = self.dist.log_prob(params, mb["actions"]) - mb["log_probs"]
        ratio = log_ratio.exp()
        advantages = mb["advantages"]
        if cfg.norm_adv:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        if cfg.objective == "clip":
            policy_loss = clipped_surrogate_loss(ratio, advantages, cfg.clip_coef)
        else:
            policy_loss = kl_penalty_loss(ratio, advantages, self.dist.kl(mb["dist_params"], params), self.kl_beta)
        v_loss = value_loss(values, mb["values"], mb["returns"],
                            cfg.clip_coef if cfg.clip_vloss else None)
        # At ent_coef = 0 (the MuJoCo setting) the entropy is only reported: no zero gradient through it.
        entropy = self.dist.entropy(params if cfg.ent_coef else params.detach()).mean()
        loss = policy_loss - cfg.ent_coef * entropy + cfg.vf_coef * v_loss
        with torch.no_grad():
            # Schulman's low-variance unbiased estimator of KL[pi_old, pi]: E[(r - 1) - log r].
            ratio_minus_one = ratio - 1
            approx_kl = (ratio_minus_one - log_ratio).mean()
            clip_fraction = (ratio_minus_one.abs() > cfg.clip_coef).float().mean()
            stats = torch.stack([policy_loss, v_loss, entropy, approx_kl, clip_fraction]).detach()
        return loss, stats

    # --- checkpointing --------------------------------------------------------------------------

    def state_dict(self) -> dict:
        optimizer = self.optimizer.state_dict()
        # The adaptive rate (a tensor) as the number torch.optim's format holds: float32 -> float -> float32 is exact.
        optimizer["param_groups"][0]["lr"] = float(optimizer["param_groups"][0]["lr"])
        return {"net": self.net.state_dict(), "optimizer": optimizer,
                "generator": self.generator.get_state(), "global_step": self.global_step,
                "kl_beta": self.kl_beta, "flat_layout": self.networks.layout}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        # (An MLP checkpoint saved before the merged network holds Adam's moments in net.parameters() order.)
        self.optimizer.load_state_dict(self.networks.optimizer_state(state["optimizer"], state.get("flat_layout")))
        if self.cfg.adaptive_lr_kl is not None:  # the adapted rate goes on from where it was, on this device
            group = self.optimizer.param_groups[0]
            group["lr"] = torch.tensor(float(group["lr"]), device=self.device)
        self.generator.set_state(state["generator"])
        self.global_step = state["global_step"]
        self.kl_beta = state["kl_beta"]
        self.acting_net.refresh()


def explained_variance(predicted: np.ndarray, target: np.ndarray) -> float:
    """1 - Var[target - predicted] / Var[target]: 1 is a perfect value function, 0 no better than a constant."""
    var = np.var(target)
    return float("nan") if var == 0 else float(1 - np.var(target - predicted) / var)
