"""Deep Q-Networks: DQN (Mnih et al. 2015), Double DQN (van Hasselt et al. 2016) and Dueling DQN
(Wang et al. 2016), as two options of one algorithm that combine freely.

Algorithm 1 of Mnih et al. 2015, "deep Q-learning with experience replay":
  - act epsilon-greedily on Q(s, .; theta), epsilon annealed linearly (`explore`, `epsilon`);
  - store (s, a, r, s', terminated) in the replay memory D and sample uniform minibatches from it
    (the shared off-policy loop, rlrun.algos.offpolicy); Atari's frame stacks are stored one frame per
    transition and rebuilt when sampled (rlrun.data.frames), so the paper's 1M transitions fit in 7 GB;
  - regress Q(s, a; theta) on y = r + gamma max_a' Q(s', a'; theta^-) (eq. 2 of the paper's
    Methods), y = r where the episode terminated, with the Huber loss: the paper clips the error
    term (y - Q) to [-1, 1], which is the gradient of the Huber loss with delta 1 (on MLPs that
    gradient is backpropagated by hand, `backward_by_hand`: autograd's result, faster);
  - reset the target network theta^- to theta every C steps (`target_update_interval`), or, with
    tau < 1, move it towards theta by Polyak averaging (Lillicrap et al. 2016).
`loss`: "huber" as above (SB3's DQN), or "mse", the squared TD error (CleanRL's dqn.py). Where the Q-values
are much larger than 1 (CartPole: up to 1/(1 - gamma) = 100), the Huber loss is the absolute error for
nearly every sample, and regressing with it fits the median of the targets: a failure that follows a
state-action in 1% of the replayed samples does not move it. The squared error fits their mean.
`double` (van Hasselt et al. 2016, eq. 4): the online network selects a' = argmax_a Q(s', a; theta)
and the target network evaluates it, y = r + gamma Q(s', a'; theta^-); the max of eq. 2 picks and
scores with the same noisy estimate, which overestimates.
`dueling` (Wang et al. 2016, eq. 9): the network computes V(s) and A(s, a) in separate streams and
outputs Q = V + (A - mean_a A) (rlrun.nets.q).
`n_step` (Sutton 1988; one of Rainbow's parts, Hessel et al. 2018, eq. 2): regress on the n-step return,
y = sum_{k<n} gamma^k r_{t+k} + gamma^n max_a' Q(s_{t+n}, a'; theta^-), cut short at the episode's end
(rlrun.data.replay.ReplayBuffer.n_step_walk). As in Rainbow, the sum is not corrected for the epsilon-greedy
actions inside it: it estimates the behaviour policy's return over those n steps.
`advantage_learning` = alpha > 0 (Bellemare et al. 2016, "Increasing the action gap", eq. 6 and their DQN
variant): y_AL = y - alpha (max_b Q(s, b; theta^-) - Q(s, a; theta^-)), the target lowered by alpha times the
taken action's gap under the target network. The greedy actions keep their values, the others lose
alpha times their gap at each backup, so the gaps grow towards 1/(1 - alpha) times Q*'s and the greedy
policy is the same (the operator is optimality-preserving, their Theorem 1).
`prioritized_replay` (Schaul et al. 2016, Algorithm 1, proportional variant): transitions are sampled
with probability P(i) = p_i / sum_k p_k, p_i = (|delta_i| + eps)^alpha (rlrun.data.prioritized); each
sample's Huber loss is weighted by w_i = (N P(i))^-beta / max_k w_k, beta annealed linearly from beta0
to 1 at total_steps (`importance_weights`), and after each gradient step the sampled transitions'
priorities become their new |delta|.

Episodes cut by a time limit are bootstrapped: the replay stores termination only (Pardo et al. 2018).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F

from rlrun.algos.offpolicy import OffPolicy
from rlrun.config import NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, ConfigError, from_config, one_of, rule
from rlrun.data import ReplayBuffer
from rlrun.data.frames import FrameStackReplay
from rlrun.data.prioritized import PrioritizedReplayBuffer
from rlrun.envs import VecEnv, spaces
from rlrun.hardware import Hardware
from rlrun.nets import CNNConfig, MLPConfig, NumpyQ, QNetwork
from rlrun.nets.cnn_actor_critic import to_tensor
from rlrun.nets.flat import clip_grad_norm_, flatten_parameters
from rlrun.optim import Adam

HALF_OPEN_UNIT = ("in (0, 1]", lambda v: 0 < v <= 1)


@dataclass
class DQNConfig:
    double: bool
    dueling: bool
    num_envs: int = rule(POSITIVE)
    buffer_size: int = rule(POSITIVE)
    learning_starts: int = rule(POSITIVE)
    batch_size: int = rule(POSITIVE)
    train_frequency: int = rule(POSITIVE)
    gradient_steps: int = rule(POSITIVE)
    steps_per_iteration: int = rule(POSITIVE)
    learning_rate: float = rule(POSITIVE)
    anneal_lr: bool
    adam_eps: float = rule(POSITIVE)
    gamma: float = rule(UNIT_INTERVAL)
    n_step: int = rule(POSITIVE)
    advantage_learning: float = rule(("in [0, 1)", lambda v: 0 <= v < 1))
    target_update_interval: int = rule(POSITIVE)
    tau: float = rule(HALF_OPEN_UNIT)
    exploration_initial_eps: float = rule(UNIT_INTERVAL)
    exploration_final_eps: float = rule(UNIT_INTERVAL)
    exploration_fraction: float = rule(HALF_OPEN_UNIT)
    eval_epsilon: float = rule(UNIT_INTERVAL)
    max_grad_norm: float | None = rule(POSITIVE)
    loss: str = rule(one_of("huber", "mse"))
    clip_reward: bool
    prioritized_replay: bool
    per_alpha: float = rule(NON_NEGATIVE)
    per_beta0: float = rule(UNIT_INTERVAL)
    per_eps: float = rule(POSITIVE)


# --- the mathematics, as functions of tensors (tests check them against hand-worked values) ---------


def linear_schedule(start: float, end: float, duration: float, t: float) -> float:
    """`start` at t = 0, linearly to `end` at t = duration, then `end` (Mnih et al. 2015: epsilon
    from 1.0 to 0.1 over the first million frames, then fixed)."""
    if duration <= 0:
        return end
    return start + (end - start) * min(t / duration, 1.0)


def td_target(rewards: torch.Tensor, terminated: torch.Tensor, next_q_target: torch.Tensor,
              gamma: float | torch.Tensor, next_q_online: torch.Tensor | None = None) -> torch.Tensor:
    """y = r + gamma (1 - terminated) Q(s', a*; theta^-), for a batch.

    DQN (Mnih et al. 2015, eq. 2): a* = argmax_a Q(s', a; theta^-), i.e. the target network's max.
    Double DQN (van Hasselt et al. 2016, eq. 4): pass `next_q_online` = Q(s', .; theta), and
    a* = argmax_a Q(s', a; theta) is evaluated by the target network.
    `terminated` is 1 only where the environment ended the episode; a transition cut by a time limit
    has terminated = 0 and is bootstrapped from the state it reached.
    n-step transitions: `rewards` is the discounted sum of m rewards and `gamma` is gamma^m, per sample.
    """
    if next_q_online is None:
        next_value = next_q_target.amax(1)
    else:
        next_actions = next_q_online.argmax(1, keepdim=True)
        next_value = next_q_target.gather(1, next_actions).squeeze(1)
    return torch.addcmul(rewards, (1.0 - terminated) * gamma, next_value)  # r + gamma (1 - terminated) Q'


def advantage_learning_target(y: torch.Tensor, q_target_here: torch.Tensor, actions: torch.Tensor,
                               alpha: float) -> torch.Tensor:
    """y - alpha (max_b Q(s, b; theta^-) - Q(s, a; theta^-)) for a batch (Bellemare et al. 2016): the
    Bellman target lowered by alpha times the gap of the action taken in s, scored by the target network."""
    gap = q_target_here.amax(1) - q_target_here.gather(1, actions.unsqueeze(1)).squeeze(1)
    return y - alpha * gap


def q_loss(q_taken: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None,
           kind: str = "huber") -> torch.Tensor:
    """Huber loss with delta 1, averaged over the batch: quadratic for |y - Q| <= 1, linear beyond, so
    the gradient is the TD error clipped to [-1, 1] (Mnih et al. 2015, Methods, "error clipping"); or,
    `kind` "mse", the squared error (y - Q)^2 averaged over the batch, whose gradient is 2 (Q - y) / batch.
    With `weights` (prioritized replay's importance-sampling weights), each sample's loss is multiplied
    by its weight before the mean (Schaul et al. 2016, Algorithm 1, line 12: w_j delta_j grad Q)."""
    per_sample = F.smooth_l1_loss if kind == "huber" else F.mse_loss
    if weights is None:
        return per_sample(q_taken, target)
    return (weights * per_sample(q_taken, target, reduction="none")).mean()


def importance_weights(probabilities: torch.Tensor, min_probability: torch.Tensor, beta: float) -> torch.Tensor:
    """w_i = (N P(i))^-beta / max_k w_k (Schaul et al. 2016, section 3.4), which corrects the bias of
    sampling in proportion to priority (beta = 1: fully). The max is over the whole buffer, as the paper
    and SB2's/OpenAI Baselines' replay do (Dopamine takes it over the minibatch): it is the weight of the
    least likely transition, (N min_k P(k))^-beta, so the weights are (P(i) / min_k P(k))^-beta, N
    cancelling, all in (0, 1], and the step size does not depend on which minibatch was drawn. (A
    transition whose TD error was ~0 has p = eps^alpha, which makes every weight small; Adam, which
    divides by the gradient's running scale, hardly sees such a common factor.)"""
    return (probabilities / min_probability).pow(-beta).float()


class DQN(OffPolicy):
    """DQN as a generator (the loop is OffPolicy.learn); `double` and `dueling` select the variants."""

    action_spaces = ("discrete",)
    dict_observations = True  # one encoder per key (rlrun.nets.dict_encoder) under the Q network's torso
    samples_phase_at_once = True  # train_step draws no random numbers (epsilon's draws are the acting's)

    def __init__(self, cfg: DQNConfig, env: VecEnv, network: MLPConfig | CNNConfig, hardware: Hardware,
                 seed: int, total_steps: int):
        if env.num_envs != cfg.num_envs:
            raise ValueError(f"env has {env.num_envs} copies, algo.num_envs is {cfg.num_envs}")
        if not isinstance(env.action_space, gym.spaces.Discrete):
            raise ConfigError(f"DQN needs a discrete action space (got {env.action_space})")
        if len(env.observation_space.shape or ()) == 3 and not isinstance(network, CNNConfig):
            raise ConfigError(f"image observations of shape {env.observation_space.shape} need network=cnn")
        check_replay_fits_in_memory(cfg, env)
        if cfg.prioritized_replay and stacks_frames(env):
            raise ConfigError("algo.prioritized_replay=true is not implemented for Atari frame stacks "
                              "(env.wrappers=atari); set algo.prioritized_replay=false")
        if cfg.n_step > 1 and stacks_frames(env):
            raise ConfigError(f"algo.n_step={cfg.n_step} is not implemented for Atari frame stacks "
                              "(env.wrappers=atari); set algo.n_step=1")
        if cfg.n_step > 1 and cfg.clip_reward:
            raise ConfigError(f"algo.clip_reward=true clips each reward, which an n-step sum (algo.n_step="
                              f"{cfg.n_step}) no longer holds apart; set algo.n_step=1 or algo.clip_reward=false")
        # With prioritized replay each minibatch is drawn after the previous update has changed priorities.
        self.samples_phase_at_once = not cfg.prioritized_replay
        super().__init__(cfg, env, hardware, seed, total_steps)
        self.n_actions = int(env.action_space.n)
        self.dict_obs = isinstance(env.observation_space, gym.spaces.Dict)
        self.net = QNetwork(env.observation_space, env.action_space, network, cfg.dueling).to(self.device)
        self.target_net = copy.deepcopy(self.net)
        # One flat parameter (and gradient) per network: a fused Adam step, a one-tensor gradient clip,
        # and a target update that is a single copy_ or lerp_ (see rlrun.nets.flat).
        self.flat_params = flatten_parameters(self.net)
        self.target_params = flatten_parameters(self.target_net).requires_grad_(False)
        self.target_net.requires_grad_(False)  # moved only by update_target, never by a gradient
        # rlrun.optim: torch's fused Adam kernel on the flat parameter, without Optimizer.step's per-call
        # bookkeeping (~50 us of a ~1 ms update) nor torch.optim's import of torch._dynamo.
        self.optimizer = Adam(self.flat_params, lr=cfg.learning_rate, eps=cfg.adam_eps)
        self.target_updated_at = 0  # global_step of the last target update (see target_updates_due)
        # Acting on an MLP: numpy on views of the parameters (measured ~4x cheaper than a torch forward
        # on one observation; see NumpyQ). A CNN forward is real work, done in torch.
        # (Dict observations: their encoder, which may hold CNNs, runs in torch.)
        self.numpy_q = NumpyQ(self.net) if isinstance(network, MLPConfig) and not self.dict_obs else None
        # Learning on an MLP: the backward pass written out (QNetwork.backward), autograd's result faster.
        self.manual_backward = self.net.has_manual_backward
        self.acting_version = self.gradient_updates
        self.epsilon_at: tuple[int, torch.Tensor] = (-1, torch.tensor(0.0))  # (global_step, epsilon there)
        # Evaluation epsilon draws come from their own generator, so that evaluating (which the
        # runner does at times the algorithm does not know) never shifts the training random stream.
        self.eval_generator = torch.Generator().manual_seed(seed + 1)

    @classmethod
    def parse_config(cls, cfg) -> DQNConfig:
        return from_config(DQNConfig, cfg, "algo")

    def make_replay(self, cfg: DQNConfig, env: VecEnv) -> ReplayBuffer | FrameStackReplay:
        if stacks_frames(env):
            return FrameStackReplay(cfg.buffer_size, env.observation_space, env.action_space, env.num_envs)
        if cfg.prioritized_replay:
            return PrioritizedReplayBuffer(cfg.buffer_size, env.observation_space, env.action_space,
                                           cfg.per_alpha, cfg.per_eps, cfg.n_step, cfg.gamma)
        return ReplayBuffer(cfg.buffer_size, env.observation_space, env.action_space, cfg.n_step, cfg.gamma)

    # --- acting ---------------------------------------------------------------------------------------

    def epsilon(self) -> float:
        cfg = self.cfg
        return linear_schedule(cfg.exploration_initial_eps, cfg.exploration_final_eps,
                               cfg.exploration_fraction * self.total_steps, self.global_step)

    def learning_rate(self) -> float:
        """The step size now: learning_rate, or with anneal_lr, learning_rate linearly to 0 at total_steps
        (SB3's linear schedule: lr times the fraction of the run remaining, constant within a phase)."""
        if not self.cfg.anneal_lr:
            return self.cfg.learning_rate
        return linear_schedule(self.cfg.learning_rate, 0.0, self.total_steps, self.global_step)

    def per_beta(self) -> float:
        """Prioritized replay's importance-sampling exponent: beta0 linearly to 1 at total_steps (Schaul
        et al. 2016, section 3.4: full correction matters most near the end of learning)."""
        return linear_schedule(self.cfg.per_beta0, 1.0, self.total_steps, self.global_step)

    def q_values(self, obs: np.ndarray) -> np.ndarray:
        """Q(s, .) of the online network for a batch of observations, as numpy."""
        if self.numpy_q is None:
            with torch.inference_mode():
                return self.net(to_tensor(obs, self.device)).cpu().numpy()
        if not self.numpy_q.live and self.acting_version != self.gradient_updates:
            self.numpy_q.refresh()  # a learner on another device: copy its weights, once per update
            self.acting_version = self.gradient_updates
        return self.numpy_q(obs)

    def epsilon_greedy(self, obs: np.ndarray, epsilon: float, generator: torch.Generator,
                       q: np.ndarray | None = None) -> np.ndarray:
        """Epsilon-greedy actions; `q`, Q(s, .) if the caller has it already (else computed when needed)."""
        # One uniform draw per env decides and, below epsilon, also picks the action: given u < eps,
        # u / eps is uniform on [0, 1), so floor(u / eps * |A|) is a uniform random action.
        u = torch.rand(spaces.batch_size(obs), generator=generator, dtype=torch.float64).numpy()
        explore = u < epsilon
        if not explore.any():
            return (self.q_values(obs) if q is None else q).argmax(1)
        random_actions = np.minimum((u / epsilon * self.n_actions).astype(np.int64), self.n_actions - 1)
        if explore.all():
            return random_actions  # no forward pass: the greedy action would be discarded
        return np.where(explore, random_actions, (self.q_values(obs) if q is None else q).argmax(1))

    def explore(self, obs: np.ndarray) -> np.ndarray:
        return self.epsilon_greedy(obs, self.epsilon(), self.generator)

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        if not deterministic:
            return self.explore(obs)
        if self.cfg.eval_epsilon > 0:
            return self.epsilon_greedy(obs, self.cfg.eval_epsilon, self.eval_generator)
        return self.q_values(obs).argmax(1)

    def act_with_q_values(self, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """act(obs) (the evaluation policy, eval_epsilon's draws included) and Q(s, .), from one forward
        pass: what the runner's evaluation needs for its value check (rlrun.run.evaluate)."""
        q = self.q_values(obs)
        if self.cfg.eval_epsilon > 0:
            return self.epsilon_greedy(obs, self.cfg.eval_epsilon, self.eval_generator, q), q
        return q.argmax(1), q

    # --- learning -------------------------------------------------------------------------------------

    def update_target(self, times: int = 1) -> None:
        """theta^- <- theta (tau = 1, Mnih et al.), or `times` Polyak steps theta^- <- tau theta + (1 - tau)
        theta^- towards the same theta, in one: theta^- <- theta + (1 - tau)^times (theta^- - theta)."""
        if self.cfg.tau == 1.0:
            self.target_params.copy_(self.flat_params.detach())
        else:
            self.target_params.lerp_(self.flat_params.detach(), 1.0 - (1.0 - self.cfg.tau) ** times)
        self.target_updated_at = self.global_step

    def target_updates_due(self) -> int:
        """How many target updates SB3's DQN makes between the last learning phase and this one: one at
        each env step that is a multiple of C (`target_update_interval`). The online network does not
        change between phases, so they all move the target towards the same theta."""
        interval = self.cfg.target_update_interval
        return self.global_step // interval - self.target_updated_at // interval

    def train_step(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        # C counts environment steps, as in SB3 and CleanRL (the paper's C = 10,000 counts updates, at
        # one update per 4 steps). SB3 updates the target after each env step whose count is a multiple
        # of C; here, before a learning phase's first update, all the updates due since the last phase
        # (with tau < 1 and C < train_frequency, several Polyak steps: an earlier version made one).
        due = self.target_updates_due()
        if due > 0:
            self.update_target(due)
        if cfg.anneal_lr:
            self.optimizer.param_groups[0]["lr"] = self.learning_rate()
        rewards = batch["rewards"].sign() if cfg.clip_reward else batch["rewards"]
        with torch.no_grad():
            next_obs = batch["next_obs"]
            next_q_online = self.net(next_obs) if cfg.double else None
            gamma = batch["discounts"] if cfg.n_step > 1 else cfg.gamma  # gamma^m of each n-step transition
            y = td_target(rewards, batch["terminated"], self.target_net(next_obs), gamma, next_q_online)
            if cfg.advantage_learning > 0:
                y = advantage_learning_target(y, self.target_net(batch["obs"]), batch["actions"],
                                              cfg.advantage_learning)
            weights = (importance_weights(batch["probabilities"], batch["min_probability"], self.per_beta())
                       if cfg.prioritized_replay else None)
        if self.manual_backward:
            loss, q_all, q_taken = self.backward_by_hand(batch["obs"], batch["actions"], y, weights)
        else:
            q_all = self.net(batch["obs"])
            q_taken = q_all.gather(1, batch["actions"].unsqueeze(1)).squeeze(1)
            loss = q_loss(q_taken, y, weights, cfg.loss)
            self.flat_params.grad.zero_()
            loss.backward()
        if cfg.max_grad_norm is not None:
            clip_grad_norm_(self.flat_params, cfg.max_grad_norm)
        self.optimizer.step()
        metrics = {}
        if cfg.prioritized_replay:
            # The new priorities: the TD errors of this step, before its update (Algorithm 1, line 11).
            td_errors = (y - q_taken.detach()).cpu().numpy()
            self.replay.update_priorities(batch["indices"].numpy(), td_errors)
            metrics = {"train/per_beta": torch.tensor(self.per_beta()), "train/is_weight": weights.mean()}
        # train/max_q: the value estimate max_a Q(s, a) averaged over the minibatch's states, the quantity
        # whose overestimation van Hasselt et al. (2016, Figure 3) compare between DQN and Double DQN.
        return {"train/loss": loss.detach(), "train/q_values": q_taken.detach().mean(),
                "train/max_q": q_all.detach().amax(1).mean(), "train/epsilon": self.epsilon_tensor(), **metrics}

    def epsilon_tensor(self) -> torch.Tensor:
        """epsilon() as a 0-d tensor (a metric), made once per env step: a learning phase's gradient steps
        all report the same one."""
        if self.epsilon_at[0] != self.global_step:
            self.epsilon_at = (self.global_step, torch.tensor(self.epsilon()))
        return self.epsilon_at[1]

    def backward_by_hand(self, obs: torch.Tensor, actions: torch.Tensor, y: torch.Tensor,
                         weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q_loss(Q(s, a), y, weights, loss).backward() without autograd's graph (see rlrun.nets.q): the
        Huber loss's gradient is the TD error clipped to [-1, 1] (Mnih et al.'s error clipping), the squared
        error's twice the TD error; times the sample's importance weight if any, divided by the batch size
        (the mean), at the taken action; 0 at the others. Returns (loss, Q(s, .), Q(s, a))."""
        with torch.no_grad():
            q_all, saved = self.net.forward_saving(obs)
            index = actions.unsqueeze(1)
            q_taken = q_all.gather(1, index).squeeze(1)
            loss = q_loss(q_taken, y, weights, self.cfg.loss)
            error = q_taken - y
            grad_q_taken = (error.clamp_(-1.0, 1.0) if self.cfg.loss == "huber" else error.mul_(2.0)).div_(len(y))
            if weights is not None:
                grad_q_taken.mul_(weights)
            self.net.backward(saved, torch.zeros_like(q_all).scatter_(1, index, grad_q_taken.unsqueeze(1)))
        return loss, q_all, q_taken

    # --- checkpointing --------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        # The evaluation generator too: a resumed run draws the same eval_epsilon actions.
        return {**super().state_dict(), "net": self.net.state_dict(), "target_net": self.target_net.state_dict(),
                "optimizer": self.optimizer.state_dict(), "target_updated_at": self.target_updated_at,
                "eval_generator": self.eval_generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        # Module.load_state_dict copies into the parameters in place: the flat views stay valid.
        self.net.load_state_dict(state["net"])
        self.target_net.load_state_dict(state["target_net"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.target_updated_at = state["target_updated_at"]
        if "eval_generator" in state:  # absent from checkpoints written before it was saved
            self.eval_generator.set_state(state["eval_generator"])
        if self.numpy_q is not None and not self.numpy_q.live:
            self.numpy_q.refresh()


def stacks_frames(env: VecEnv) -> bool:
    """Whether the observations are the Atari stack's frames (rlrun.envs.atari.FrameStack), which the
    replay can store one frame per transition."""
    return env.cfg.wrappers == "atari"


def replay_bytes(cfg: DQNConfig, env: VecEnv) -> int:
    """The replay's memory once full: single frames for Atari stacks, whole s and s' otherwise."""
    if stacks_frames(env):
        return FrameStackReplay.nbytes(cfg.buffer_size, env.observation_space, env.action_space, env.num_envs)
    return ReplayBuffer.nbytes(cfg.buffer_size, env.observation_space, env.action_space)


def check_replay_fits_in_memory(cfg: DQNConfig, env: VecEnv) -> None:
    """Refuse, before allocating, a replay buffer larger than the machine's memory: numpy reserves it
    lazily, so an oversized buffer would otherwise fail hours later, when it fills."""
    needed = replay_bytes(cfg, env)
    try:
        available = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return
    if needed > available:
        raise ConfigError(f"algo.buffer_size={cfg.buffer_size:,} needs {needed / 2**30:.1f} GiB of replay "
                          f"({needed / cfg.buffer_size:,.0f} bytes per transition), more than this machine's "
                          f"{available / 2**30:.1f} GiB; lower algo.buffer_size")
