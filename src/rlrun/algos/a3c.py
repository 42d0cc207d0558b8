"""Asynchronous Advantage Actor-Critic (A3C; Mnih et al. 2016, Algorithm S3).

K actor-learner processes (`hardware.workers`), each with its own environment and its own copy of
the network theta'. Each one, in a loop: synchronises theta' <- theta from the shared model, runs
its policy for t_max steps, computes the n-step returns R bootstrapped from V(s_{t_max}) and the
gradients of the A2C loss (see a2c.py) with respect to theta', and applies them to the shared theta
with a shared optimiser, without locks (Hogwild!, Recht et al. 2011). The optimiser's statistics
are shared too (section 4 and S2 of the paper: "shared RMSProp" was the most robust).

The main process owns no environment step and no gradient: it starts the workers, turns what they
report (a global step counter in shared memory, episodes and loss statistics through a queue) into
the metrics the runner expects, and exposes the shared model for evaluation and checkpoints.
"""

from __future__ import annotations

import queue as queue_module
import signal
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
import torch.multiprocessing as mp

from rlrun.algos.a2c import actor_critic_loss, make_optimizer
from rlrun.algos.onpolicy import act, build_actor_critic, collect_rollout, make_buffer
from rlrun.config import NON_NEGATIVE, POSITIVE, UNIT_INTERVAL, from_config, one_of, rule
from rlrun.envs import EnvConfig, VecEnv
from rlrun.hardware import Hardware
from rlrun.nets import MLPConfig, NumpyActorCritic
from rlrun.nets.flat import clip_grad_norm_, flatten_parameters
from rlrun.optim import Adam, RMSprop
from rlrun.processes import stop_processes

# Messages from a worker that it sends at most this often (its episodes and loss statistics).
REPORT_SECONDS = 0.2


@dataclass
class A3CConfig:
    num_steps: int = rule(POSITIVE)
    learning_rate: float = rule(POSITIVE)
    anneal_lr: bool
    optimizer: str = rule(one_of("rmsprop", "adam"))
    rmsprop_alpha: float = rule(UNIT_INTERVAL)
    optimizer_eps: float = rule(POSITIVE)
    gamma: float = rule(UNIT_INTERVAL)
    ent_coef: float = rule(NON_NEGATIVE)
    vf_coef: float = rule(NON_NEGATIVE)
    max_grad_norm: float = rule(POSITIVE)
    shared_torso: bool
    report_every: int = rule(POSITIVE)


def shared_optimizer_state(name: str, flat: torch.Tensor) -> dict[str, torch.Tensor]:
    """The optimiser's state for the flat parameter, created up front and placed in shared memory so
    that every worker's optimiser object updates the same statistics (the paper's shared RMSProp)."""
    state = (RMSprop if name == "rmsprop" else Adam).initial_state(flat)
    for tensor in state.values():
        tensor.share_memory_()  # no-op for CUDA tensors, which torch.multiprocessing shares by IPC
    return state


class WorkerArgs:
    """Everything a worker process needs, picklable for the 'spawn' start method."""

    def __init__(self, rank: int, cfg: A3CConfig, env_cfg: EnvConfig, network: MLPConfig, env_state: dict,
                 seed: int, total_steps: int, shared_params: torch.nn.Parameter,
                 optimizer_state: dict[str, torch.Tensor], global_step, stop, messages):
        self.__dict__.update(locals())
        del self.__dict__["self"]


def worker(args: WorkerArgs) -> None:
    """One actor-learner thread of Algorithm S3, as a process."""
    try:
        # Ctrl-C goes to the whole process group: the main process handles it (checkpoint, then stop
        # us); a worker dying of it would look like a crash.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        torch.set_num_threads(1)  # K workers on K cores: one thread each, no oversubscription
        cfg, shared = args.cfg, args.shared_params
        device = shared.device
        torch.manual_seed(args.seed + 1000 * args.rank)
        env = VecEnv(args.env_cfg, 1, args.seed + 1000 * args.rank, "sync", cfg.gamma)
        env.load_state_dict(args.env_state)
        local_net = build_actor_critic(env, args.network, cfg.shared_torso).to(device)  # theta'
        local_params = flatten_parameters(local_net)
        optimizer = make_optimizer(cfg.optimizer, shared, cfg.learning_rate, cfg.rmsprop_alpha, cfg.optimizer_eps,
                                   state=args.optimizer_state)
        acting_net = NumpyActorCritic(local_net)
        generator = torch.Generator().manual_seed(args.seed + 1000 * args.rank)
        buffer = make_buffer(env, cfg.num_steps, 1, local_net)
        obs = env.reset()
        sums, updates, last_report = torch.zeros(4, device=device), 0, time.monotonic()
        while not args.stop.is_set():
            with args.global_step.get_lock():
                # No stop at a step count: the runner stops the workers at its budget (closing the
                # generator), and `total_steps` is only the learning-rate schedule's horizon.
                step = args.global_step.value
                args.global_step.value += cfg.num_steps  # T <- T + t_max (counted before acting)
            with torch.no_grad():
                local_params.copy_(shared)  # theta' <- theta (torn reads are part of Hogwild)
            acting_net.refresh()
            obs = collect_rollout(env, buffer, acting_net, generator, obs)
            buffer.finish_nstep(acting_net.value(obs), cfg.gamma)  # R <- V(s_t_max), R <- r_i + gamma R
            if cfg.anneal_lr:
                optimizer.param_groups[0]["lr"] = cfg.learning_rate * max(1 - step / args.total_steps, 0)
            # a3c.yaml's vf_coef weighs 1/2 (R - V)^2; actor_critic_loss's value term is the plain MSE.
            loss, stats = actor_critic_loss(local_net, buffer.flat_tensors(device), cfg.ent_coef, cfg.vf_coef / 2,
                                            norm_adv=False)
            local_params.grad.zero_()
            loss.backward()  # d theta' ...
            grad_norm = clip_grad_norm_(local_params, cfg.max_grad_norm)
            shared.grad = local_params.grad  # ... applied to the shared theta, without a lock
            optimizer.step()
            sums += torch.cat([stats, grad_norm.detach()[None]])
            updates += 1
            if time.monotonic() - last_report > REPORT_SECONDS:
                report(args, env, sums, updates)
                sums, updates, last_report = torch.zeros(4, device=device), 0, time.monotonic()
        report(args, env, sums, updates)
        env.close()
    except BaseException as error:
        # Reported once, by the main process, with this traceback; the exit code says it failed.
        args.messages.put(("error", args.rank, f"{type(error).__name__}: {error}", traceback.format_exc()))
        raise SystemExit(1) from None


def report(args: WorkerArgs, env: VecEnv, sums: torch.Tensor, updates: int) -> None:
    """Episodes, loss sums and (worker 0) normalisation statistics to the main process, as plain
    numbers and arrays (a tensor put on a queue would cost a shared-memory segment each time)."""
    returns, lengths = env.pop_episodes()
    rms = None
    if args.rank == 0:
        rms = {name: None if stats is None else (stats.mean.copy(), stats.var.copy(), stats.count)
               for name, stats in (("obs_rms", env.obs_rms), ("return_rms", env.return_rms))}
    args.messages.put(("report", args.rank, returns, lengths, sums.tolist(), updates, rms))


def worker_error(message: tuple) -> RuntimeError:
    _, rank, summary, trace = message
    return RuntimeError(f"A3C worker {rank} failed: {summary}; stopping the run. The worker's traceback:\n{trace}")


class A3C:
    """A3C as a generator in the main process: yields every `report_every` environment steps of all
    workers together; the workers keep training in the meantime."""

    action_spaces = ("discrete", "multi_discrete", "multi_binary", "continuous")
    uses_workers = True  # hardware.workers: its actor-learner processes

    def __init__(self, cfg: A3CConfig, env: VecEnv, network: MLPConfig, hardware: Hardware, seed: int,
                 total_steps: int):
        self.cfg = cfg
        self.env = env  # not stepped here: holds the normalisation statistics the runner evaluates with
        self.network = network
        self.num_workers = hardware.workers
        self.seed = seed
        self.total_steps = total_steps
        torch.manual_seed(seed)
        # The shared model theta: one flat parameter in shared memory (on CUDA with the gpu profile,
        # shared with the workers by CUDA IPC).
        self.net = build_actor_critic(env, network, cfg.shared_torso).to(hardware.device)
        self.flat_params = flatten_parameters(self.net)
        self.flat_params.share_memory_()
        self.optimizer_state = shared_optimizer_state(cfg.optimizer, self.flat_params)
        self.acting_net = NumpyActorCritic(self.net)
        self.generator = torch.Generator().manual_seed(seed)
        self.global_step = 0
        self.workers: list = []

    @classmethod
    def parse_config(cls, cfg) -> A3CConfig:
        return from_config(A3CConfig, cfg, "algo")

    def act(self, obs: np.ndarray, deterministic: bool = True) -> np.ndarray:
        # The acting copy is refreshed from the shared model at each yield: an evaluation sees one
        # consistent snapshot while the workers go on updating.
        return act(self.acting_net, obs, deterministic, self.generator)

    def learn(self) -> Iterator[dict]:
        # 'spawn', not 'fork': a forked child inherits torch's OpenMP thread pool in a state it cannot
        # use (a known deadlock), and the runner's logger threads; spawn starts clean interpreters
        # and is the only method that shares CUDA tensors.
        ctx = mp.get_context("spawn")
        global_step = ctx.Value("q", self.global_step)
        stop = ctx.Event()
        messages = ctx.Queue()
        env_state = self.env.state_dict()
        self.workers = [ctx.Process(target=worker, name=f"a3c-worker-{rank}", daemon=True, args=(WorkerArgs(
            rank, self.cfg, self.env.cfg, self.network, env_state, self.seed + self.global_step, self.total_steps,
            self.flat_params, self.optimizer_state, global_step, stop, messages),)) for rank in range(self.num_workers)]
        try:
            for process in self.workers:
                process.start()
            next_report = self.global_step + self.cfg.report_every
            returns: list[float] = []
            lengths: list[int] = []
            sums, updates = np.zeros(4), 0
            while True:
                for message in self.receive(messages):
                    _, rank, r, l, s, n, rms = message
                    returns += r
                    lengths += l
                    sums += s
                    updates += n
                    if rms is not None:
                        self.load_normalization(rms)
                self.global_step = global_step.value
                finished = all(not p.is_alive() for p in self.workers)
                if self.global_step >= next_report or finished:
                    if finished:
                        for message in self.receive(messages, wait=0.0):  # the workers' last reports
                            returns += message[2]
                            lengths += message[3]
                            sums += message[4]
                            updates += message[5]
                    self.acting_net.refresh()
                    metrics = {"global_step": self.global_step, "episodic_returns": returns,
                               "episodic_lengths": lengths, "train/updates": float(updates)}
                    if updates:
                        # A window whose workers' reports have not arrived yet has no means: its loss
                        # cells stay empty rather than read as losses of 0.
                        names = ("train/policy_loss", "train/value_loss", "train/entropy", "train/grad_norm")
                        metrics.update(zip(names, (sums / updates).tolist()))
                    yield metrics
                    returns, lengths, sums, updates = [], [], np.zeros(4), 0
                    next_report = self.global_step + self.cfg.report_every
                    if finished:
                        return
        finally:
            self.shutdown(stop, messages)

    def receive(self, messages, wait: float = 0.05) -> list[tuple]:
        """The workers' reports waiting on the queue; raises if a worker failed or died."""
        received = []
        try:
            received.append(messages.get(timeout=wait) if wait else messages.get_nowait())
            while True:
                received.append(messages.get_nowait())
        except queue_module.Empty:
            pass
        for message in received:
            if message[0] == "error":
                raise worker_error(message)
        for rank, process in enumerate(self.workers):
            if process.exitcode not in (None, 0):
                # Its error report, if it sent one, may still be on its way.
                try:
                    late = messages.get(timeout=1.0)
                    if late[0] == "error":
                        raise worker_error(late)
                except queue_module.Empty:
                    pass
                raise RuntimeError(f"A3C worker {rank} (pid {process.pid}) died with exit code {process.exitcode}; "
                                   "stopping the run")
        return [m for m in received if m[0] == "report"]

    def shutdown(self, stop, messages) -> None:
        """Stop every worker, whatever brought us here: ask, then wait, terminate, kill (stop_processes)."""
        stop.set()
        stop_processes(self.workers)
        # Messages left unread must not keep this process waiting on the queue's feeder thread.
        messages.cancel_join_thread()
        messages.close()
        self.workers = []

    def load_normalization(self, rms: dict) -> None:
        """Worker 0's observation and return statistics, for evaluation and checkpoints: each worker
        normalises with its own, all estimates of the same distribution."""
        for name, stats in rms.items():
            target = getattr(self.env, name)
            if stats is not None and target is not None:
                target.mean, target.var, target.count = stats

    def state_dict(self) -> dict:
        """A resumed A3C run continues from these weights and statistics, but not bit-for-bit as one
        never interrupted: its workers update without locks in whatever order the OS schedules them
        (Hogwild), and restart their episodes (their envs live in the worker processes)."""
        # Clones: the workers keep writing into the shared tensors while a checkpoint is saved.
        return {"net": {k: v.detach().clone() for k, v in self.net.state_dict().items()},
                "optimizer": {k: v.clone() for k, v in self.optimizer_state.items()},
                "generator": self.generator.get_state(), "global_step": self.global_step}

    def load_state_dict(self, state: dict) -> None:
        # In place, so the parameters and statistics stay in the shared memory the workers use.
        self.net.load_state_dict(state["net"])
        for name, tensor in self.optimizer_state.items():
            tensor.copy_(state["optimizer"][name])
        self.generator.set_state(state["generator"])
        self.global_step = state["global_step"]
        self.acting_net.refresh()
