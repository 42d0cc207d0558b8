"""Trust Region Policy Optimization (Schulman et al. 2015), with GAE (Schulman et al. 2016).

Each iteration, on a rollout of the current policy pi_old:

    maximise   L(theta) = E[ pi_theta(a|s) / pi_old(a|s) A(s, a) ]            (the surrogate, eq. 14)
    subject to E_s[ KL(pi_old(.|s) || pi_theta(.|s)) ] <= delta                (the trust region)

solved as in Appendix C: the search direction s = F^-1 g (g = grad L, F the Fisher matrix, the
Hessian of the mean KL at theta_old) by conjugate gradient on Fisher-vector products, never forming F;
the step scaled to the boundary of the quadratic model of the constraint, beta = sqrt(2 delta /
s^T F s); then a backtracking line search that shrinks the step until the surrogate improves and the
exact mean KL is within delta. The value function, which GAE needs, is fitted separately by Adam on
the lambda-returns (the GAE paper's section 5 uses a trust region there too; Adam is what OpenAI
baselines' successors and sb3-contrib use).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from rlrun.algos.onpolicy import SDESettings, act, build_actor_critic, make_buffer, rollouts_for
from rlrun.algos.ppo import explained_variance, value_loss
from rlrun.config import POSITIVE, UNIT_INTERVAL, ConfigError, from_config, rule
from rlrun.envs import VecEnv
from rlrun.hardware import Hardware
from rlrun.nets import MLPConfig, NumpyActorCritic
from rlrun.nets.distributions import Categorical, DiagGaussian
from rlrun.nets.flat import flatten_parameters
from rlrun.optim import Adam


@dataclass
class TRPOConfig(SDESettings):
    num_envs: int = rule(POSITIVE)
    num_steps: int = rule(POSITIVE)
    gamma: float = rule(UNIT_INTERVAL)
    gae_lambda: float = rule(UNIT_INTERVAL)
    norm_adv: bool
    max_kl: float = rule(POSITIVE)
    cg_iters: int = rule(POSITIVE)
    cg_damping: float = rule(UNIT_INTERVAL)
    line_search_shrink: float = rule(("in (0, 1)", lambda v: 0 < v < 1))
    line_search_steps: int = rule(POSITIVE)
    vf_learning_rate: float = rule(POSITIVE)
    vf_epochs: int = rule(POSITIVE)
    vf_minibatch_size: int = rule(POSITIVE)
    adam_eps: float = rule(POSITIVE)
    overlap: bool = False  # refused: see __post_init__

    def __post_init__(self):
        if self.overlap:
            raise ConfigError("algo.overlap=true is not supported by TRPO: its trust region is around the policy "
                              "that collected the rollout, and with the overlap's one-update lag the current "
                              "policy already sits about max_kl from it; use algo.overlap=false "
                              "(hardware.workers still steps the envs in worker processes)")


def flat_grad(output: torch.Tensor, params: Sequence[torch.Tensor], **kwargs) -> torch.Tensor:
    return torch.cat([g.reshape(-1) for g in torch.autograd.grad(output, params, **kwargs)])


def conjugate_gradient(matrix_vector_product: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, iters: int,
                       residual_tol: float = 1e-10) -> torch.Tensor:
    """Approximately solve A x = b for symmetric positive-definite A given only x -> A x (Appendix C;
    Nocedal & Wright, Algorithm 5.2). Exact after dim(b) iterations, in exact arithmetic."""
    x = torch.zeros_like(b)
    r = b.clone()  # residual b - A x, with x = 0
    p = r.clone()  # search direction, A-conjugate to the previous ones
    r_dot_r = r @ r
    for _ in range(iters):
        if r_dot_r < residual_tol:
            break
        a_p = matrix_vector_product(p)
        alpha = r_dot_r / (p @ a_p)
        x += alpha * p
        r -= alpha * a_p
        new_r_dot_r = r @ r
        p = r + (new_r_dot_r / r_dot_r) * p
        r_dot_r = new_r_dot_r
    return x


def fisher_vector_product(dist: Categorical | DiagGaussian, policy: Callable[[torch.Tensor], torch.Tensor],
                          obs: torch.Tensor, params: Sequence[torch.Tensor],
                          damping: float) -> Callable[[torch.Tensor], torch.Tensor]:
    """v -> (F + damping I) v, F the Hessian of the mean KL(pi_old || pi_theta) at theta = theta_old,
    which equals the Fisher information matrix there (Appendix C): one gradient of (grad KL . v), no
    explicit F. The damping keeps CG stable where F is near singular."""
    new = policy(obs)
    kl = dist.kl(new.detach(), new).mean()  # zero, with zero gradient, at theta_old; its Hessian is F
    kl_grad = flat_grad(kl, params, create_graph=True)

    def product(v: torch.Tensor) -> torch.Tensor:
        return flat_grad(kl_grad @ v, params, retain_graph=True) + damping * v

    return product


def backtracking_line_search(evaluate: Callable[[float], tuple[float, float]], old_objective: float, max_kl: float,
                             shrink: float, max_steps: int) -> float | None:
    """Try the fractions 1, shrink, shrink^2, ... of the full step; return the first one whose
    surrogate improves on `old_objective` with mean KL <= max_kl, or None (the caller then keeps
    theta_old). `evaluate(fraction)` puts theta_old + fraction * step in place and returns
    (surrogate, mean KL) there."""
    fraction = 1.0
    for _ in range(max_steps):
        objective, kl = evaluate(fraction)
        if kl <= max_kl and objective > old_objective:
            return fraction
        fraction *= shrink
    return None


class TRPO:
    """TRPO as a generator: each iteration is one rollout, one natural-gradient policy step, and the
    value function's regression."""

    action_spaces = ("discrete", "multi_discrete", "multi_binary", "continuous")
    uses_workers = True  # hardware.workers: sampler worker processes (rlrun.algos.onpolicy.rollouts_for)

    def __init__(self, cfg: TRPOConfig, env: VecEnv, network: MLPConfig, hardware: Hardware, seed: int,
                 total_steps: int):
        if env.num_envs != cfg.num_envs:
            raise ValueError(f"env has {env.num_envs} copies, algo.num_envs is {cfg.num_envs}")
        self.cfg = cfg
        self.env = env
        self.device = hardware.device
        torch.manual_seed(seed)
        self.net = build_actor_critic(env, network, shared_torso=False, sde=cfg).to(self.device)
        self.dist = self.net.dist
        # theta: the policy's parameters, stepped by hand; the critic's are flat, fitted by fused Adam.
        self.policy_params = list(self.net.actor.parameters()) + ([self.net.log_std] if self.net.log_std is not None
                                                                  else [])
        self.critic_params = flatten_parameters(self.net.critic)
        self.critic_optimizer = Adam(self.critic_params, lr=cfg.vf_learning_rate, eps=cfg.adam_eps)
        self.acting_net = NumpyActorCritic(self.net)
        self.generator = torch.Generator().manual_seed(seed)
        self.buffer = make_buffer(env, cfg.num_steps, cfg.num_envs, self.net)
        self.global_step = 0
        # Stepped here, or by sampler workers with hardware.workers > 1 (never overlapped: TRPOConfig).
        self.rollouts = rollouts_for(env, self.net, self.acting_net, network, hardware, False, self.buffer)

    @classmethod
    def parse_config(cls, cfg) -> TRPOConfig:
        return from_config(TRPOConfig, cfg, "algo")

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
            last_values = self.rollouts.collect(self.buffer, self.generator)
            self.global_step += self.cfg.num_envs * self.cfg.num_steps
            self.buffer.finish(last_values, self.cfg.gamma, self.cfg.gae_lambda)
            batch = self.buffer.flat_tensors(self.device)
            metrics = self.update_policy(batch)
            metrics |= self.update_critic(batch)
            self.acting_net.refresh()
            returns, lengths = self.env.pop_episodes()
            yield {"global_step": self.global_step, "episodic_returns": returns, "episodic_lengths": lengths,
                   **metrics}

    def get_policy(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.policy_params])

    def set_policy(self, flat: torch.Tensor) -> None:
        offset = 0
        for p in self.policy_params:
            p.data.copy_(flat[offset : offset + p.numel()].view_as(p))
            offset += p.numel()

    def update_policy(self, batch: dict[str, torch.Tensor]) -> dict:
        cfg = self.cfg
        obs, actions, old_params = batch["obs"], batch["actions"], batch["dist_params"]
        old_log_probs = batch["log_probs"]
        advantages = batch["advantages"]
        if cfg.norm_adv:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)

        def surrogate_and_kl() -> tuple[torch.Tensor, torch.Tensor]:
            params = self.net.dist_params(obs)
            ratio = torch.exp(self.dist.log_prob(params, actions) - old_log_probs)  # pi_theta / pi_old
            return (ratio * advantages).mean(), self.dist.kl(old_params, params).mean()

        surrogate, _ = surrogate_and_kl()
        g = flat_grad(surrogate, self.policy_params)
        fvp = fisher_vector_product(self.dist, self.net.dist_params, obs, self.policy_params, cfg.cg_damping)
        direction = conjugate_gradient(fvp, g, cfg.cg_iters)  # s ~= F^-1 g
        s_f_s = direction @ fvp(direction)
        # The largest step along s that the quadratic model of the KL, 1/2 s^T F s, lets reach delta.
        full_step = torch.sqrt(2 * cfg.max_kl / (s_f_s + 1e-12)) * direction
        old_theta = self.get_policy()
        old_objective = surrogate.item()

        @torch.no_grad()
        def evaluate(fraction: float) -> tuple[float, float]:
            self.set_policy(old_theta + fraction * full_step)
            objective, kl = surrogate_and_kl()
            return objective.item(), kl.item()

        fraction = backtracking_line_search(evaluate, old_objective, cfg.max_kl, cfg.line_search_shrink,
                                            cfg.line_search_steps)
        if fraction is None:
            self.set_policy(old_theta)  # no acceptable step: keep pi_old
        with torch.no_grad():
            objective, kl = surrogate_and_kl()
            entropy = self.dist.entropy(self.net.dist_params(obs)).mean()
        return {"train/surrogate_improvement": objective.item() - old_objective, "train/kl": kl.item(),
                "train/entropy": entropy.item(), "train/step_fraction": 0.0 if fraction is None else fraction,
                "train/line_search_success": float(fraction is not None)}

    def update_critic(self, batch: dict[str, torch.Tensor]) -> dict:
        """Regress V on the GAE lambda-returns: vf_epochs passes of minibatch Adam."""
        cfg = self.cfg
        obs, returns = batch["obs"], batch["returns"]
        size = obs.shape[0]
        losses = []
        for _ in range(cfg.vf_epochs):
            order = torch.randperm(size, generator=self.generator).to(self.device)
            for start in range(0, size, cfg.vf_minibatch_size):
                index = order[start : start + cfg.vf_minibatch_size]
                loss = value_loss(self.net.value(obs[index]), batch["values"][index], returns[index], None)
                self.critic_params.grad.zero_()
                loss.backward()
                self.critic_optimizer.step()
                losses.append(loss.detach())
        return {"train/value_loss": torch.stack(losses).mean().item(),
                "train/explained_variance": explained_variance(self.buffer.values, self.buffer.returns)}

    def state_dict(self) -> dict:
        return {"net": self.net.state_dict(), "critic_optimizer": self.critic_optimizer.state_dict(),
                "generator": self.generator.get_state(), "global_step": self.global_step}

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])
        self.generator.set_state(state["generator"])
        self.global_step = state["global_step"]
        self.acting_net.refresh()
