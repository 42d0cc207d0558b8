"""The sampler: K worker processes stepping slices of the envs, and the learner's side of them.

    learner (this process)                         worker w (envs lo..hi-1), K of them
    ----------------------                         -----------------------------------
    launch: params, noise, frozen statistics  -->  ("collect"): T steps with its policy copy,
            into shared memory; one pipe message    writing obs/actions/rewards/values into
                                                    shared memory; one reply (its finished episodes)
    receive: wait for the K replies (or a dead worker), copy the rollout into the algorithm's
             RolloutBuffer, compute log-probabilities from the noise, fold the recorded
             observations and returns into the env's running statistics, pass on the episodes.

Synchronous (`algo.overlap=false`): launch, then receive, then the algorithm updates. Overlapped
(`algo.overlap=true`): receive rollout k, launch rollout k+1 with the policy as it is now, and let
the algorithm update on rollout k while the workers collect k+1: the rollout an update consumes was
collected by the policy one update older (a one-iteration lag; docs/sampler.md).

Acting happens in each worker, on a copy of the behaviour policy refreshed once per rollout (numpy
for MLPs, torch on the CPU for the CNN). Measured on this 2-core CPU (docs/sampler.md): acting in
the workers is the only arrangement in which collection overlaps the learner's update, since a
batched forward in the learner's process would wait for the update (or the update for it) every
step. Batched acting on a GPU for many workers is not built: no GPU was lent to measure it.
"""

from __future__ import annotations

import logging
import multiprocessing
from multiprocessing.connection import wait

import numpy as np
import torch

from rlrun.envs import VecEnv
from rlrun.envs.state import EnvStateError, generator_state, set_generator_state
from rlrun.processes import stop_processes
from rlrun.sampler.shared import SharedRollout
from rlrun.sampler.worker import STEP_ARRAYS, WorkerSpec, run_worker

log = logging.getLogger("rlrun")


class SamplerError(RuntimeError):
    """A worker failed or died: reported as one line, and the run stops."""


def env_slices(num_envs: int, workers: int) -> list[tuple[int, int]]:
    """Contiguous slices of env indices, as even as possible: 8 envs, 3 workers -> 0:3, 3:6, 6:8."""
    bounds = np.linspace(0, num_envs, workers + 1).round().astype(int)
    return [(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]


class Sampler:
    """Rollouts of `env`'s N envs from K worker processes, for an on-policy algorithm's RolloutBuffer.

    The same interface as rlrun.algos.onpolicy.InProcessRollouts: start(), collect(buffer, generator,
    clip_reward) -> V(s_T) per env, close(). `env` stays the learner's: it owns the normalisation
    statistics (evaluation and checkpoints read them), the finished episodes and, for checkpoints,
    the episodes in flight, which it asks this sampler for (`episodes_state`)."""

    def __init__(self, env: VecEnv, net: torch.nn.Module, network, shared_torso: bool, workers: int,
                 overlap: bool, num_steps: int, obs_dtype: np.dtype, action_dtype: np.dtype, build):
        self.env = env
        self.net = net
        self.dist = net.dist
        self.overlap = overlap
        self.num_steps = num_steps
        self.slices = env_slices(env.num_envs, min(workers, env.num_envs))
        self.num_params = sum(p.numel() for p in net.parameters())
        noise = self.dist.noise((num_steps, env.num_envs), torch.Generator())  # its shape and dtype
        self.rollout = SharedRollout(num_steps, env.num_envs, env.observation_space.shape, obs_dtype,
                                     env.action_space.shape, action_dtype, self.dist.num_params, self.num_params,
                                     noise, env.obs_rms is not None, env.return_rms is not None)
        self.spec = WorkerSpec(env.cfg, env.seed, env.gamma, network, shared_torso, build, self.rollout)
        self.restored: dict | None = None  # episodes from a checkpoint, for the workers to continue
        self.processes: list = []
        self.conns: list = []
        self.in_flight = False
        env.sampler = self

    @property
    def num_workers(self) -> int:
        return len(self.slices)

    # --- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers; each resets its envs (or continues the checkpoint's episodes)."""
        # 'spawn' as A3C: a forked child inherits torch's OpenMP pool in a state it cannot use and the
        # runner's threads; spawn starts clean interpreters.
        ctx = multiprocessing.get_context("spawn")
        self.spec.seed = self.env.seed  # moved on by a resume that starts fresh episodes
        self.env.started = True
        if self.restored is None:
            self.env.action_space.seed(self.env.seed)  # as VecEnv.reset (a restore sets its generator's state)
        for rank, (lo, hi) in enumerate(self.slices):
            parent, child = ctx.Pipe()
            episodes = None if self.restored is None else slice_episodes(self.restored, lo, hi)
            process = ctx.Process(target=run_worker, name=f"rlrun-sampler-{rank}", daemon=True,
                                  args=(rank, lo, hi, self.spec, episodes, child))
            process.start()
            child.close()
            self.processes.append(process)
            self.conns.append(parent)
        replies = self.replies("ready")
        self.restored = None
        reset_obs = [r[1] for r in replies if r[1] is not None]
        if reset_obs and self.env.training:
            self.env.obs_rms.update(np.concatenate(reset_obs))  # the reset batch, as VecEnv.reset folds it in

    def close(self) -> None:
        """Stop every worker, whatever brought us here (a rollout in flight is dropped)."""
        for conn, process in zip(self.conns, self.processes, strict=True):
            try:
                conn.send(("stop",))
            except OSError:
                pass
            if self.in_flight:
                process.terminate()  # mid-rollout: nothing it holds is kept, no need to wait for the rollout's end
        stop_processes(self.processes)
        for conn in self.conns:
            conn.close()
        self.processes, self.conns, self.in_flight = [], [], False

    # --- rollouts -------------------------------------------------------------------------------

    def collect(self, buffer, generator: torch.Generator, clip_reward: bool = False) -> np.ndarray:
        """Fill `buffer` with a rollout; returns V(s_T) of the policy that collected it. Overlapped, the
        rollout was launched at the previous call (with the policy of then) and the next one is
        launched now, with the current policy, to run while the caller updates."""
        if not self.in_flight:
            self.launch(generator, clip_reward)
        self.receive(buffer)
        last_values = self.rollout.arrays["last_values"].copy()
        if self.overlap:
            self.launch(generator, clip_reward)
        return last_values

    def launch(self, generator: torch.Generator, clip_reward: bool) -> None:
        arrays = self.rollout.arrays
        with torch.no_grad():
            arrays["params"][:] = torch.nn.utils.parameters_to_vector(self.net.parameters()).cpu().numpy()
        # Drawn here from the learner's generator, as collect_rollout draws it: one RNG state covers the run.
        arrays["noise"][:] = self.dist.noise((self.num_steps, self.env.num_envs), generator)
        if self.env.obs_rms is not None:
            arrays["obs_mean"][:] = self.env.obs_rms.mean
            arrays["obs_var"][:] = self.env.obs_rms.var
        if self.env.return_rms is not None:
            arrays["return_var"][...] = self.env.return_rms.var
        self.send(("collect", clip_reward))
        self.in_flight = True

    def receive(self, buffer) -> None:
        replies = self.replies("collected")
        self.in_flight = False
        arrays = self.rollout.arrays
        for name in STEP_ARRAYS:
            getattr(buffer, name)[...] = arrays[name]
        buffer.log_probs[:] = self.dist.log_prob_from_noise(buffer.dist_params, buffer.actions, arrays["noise"])
        env = self.env
        env.steps += buffer.rewards.size
        if env.training:
            # The whole rollout's batch at once: the same statistics whichever worker stepped which env.
            if env.obs_rms is not None:
                record = arrays["obs_record"]
                env.obs_rms.update(record.reshape((-1,) + record.shape[2:]))
            if env.return_rms is not None:
                env.return_rms.update(arrays["return_record"].reshape(-1))
        # Episodes in the order the in-process path finishes them: by step, then by env index.
        finished = sorted((step, rank, i, ret, length) for rank, reply in enumerate(replies)
                          for i, (step, ret, length) in enumerate(reply[1]))
        env.finished_returns += [float(ret) for *_, ret, _ in finished]
        env.finished_lengths += [int(length) for *_, length in finished]

    def send(self, message: tuple) -> None:
        """`message` to every worker; a worker that cannot take it is dead (raises SamplerError)."""
        for rank, conn in enumerate(self.conns):
            try:
                conn.send(message)
            except OSError:
                self.check(rank, self.receive_one(rank), "")  # its error report, or its exit code

    def replies(self, kind: str) -> list[tuple]:
        """One reply of `kind` from every worker; raises SamplerError at the first error or death (a
        worker's process sentinel is watched beside its pipe: a dead worker is never waited on)."""
        replies: list[tuple | None] = [None] * self.num_workers
        pending = set(range(self.num_workers))
        while pending:
            watched = {self.conns[rank]: rank for rank in pending}
            watched |= {self.processes[rank].sentinel: rank for rank in pending}
            for ready in wait(list(watched)):
                rank = watched[ready]
                if rank not in pending:
                    continue  # its pipe and its sentinel were both ready: the reply came first
                replies[rank] = self.check(rank, self.receive_one(rank), kind)
                pending.discard(rank)
        return replies

    def check(self, rank: int, reply: tuple, kind: str) -> tuple:
        """`reply` if it is of `kind`; a worker's error becomes one SamplerError line (its traceback goes
        to the log files only, cli.log: the terminal shows the one line)."""
        if reply[0] == "error":
            record = log.makeRecord(log.name, logging.ERROR, __file__, 0, "sampler worker %d traceback:\n%s",
                                    (rank, reply[2]), None)
            for handler in logging.getLogger().handlers:
                if isinstance(handler, logging.FileHandler):
                    handler.handle(record)
            raise SamplerError(f"sampler worker {rank} (envs {self.describe(rank)}) failed: {reply[1]}; "
                               "stopping the run")
        if reply[0] != kind:
            raise SamplerError(f"sampler worker {rank} replied {reply[0]!r} to a {kind!r} request")
        return reply

    def receive_one(self, rank: int) -> tuple:
        """Worker `rank`'s reply; a worker that died without one raises SamplerError."""
        conn, process = self.conns[rank], self.processes[rank]
        try:
            if conn.poll() if process.is_alive() else conn.poll(0.1):  # a dead worker's report may be in the pipe
                return conn.recv()
        except (EOFError, OSError):
            pass
        process.join(1.0)
        raise SamplerError(f"sampler worker {rank} (envs {self.describe(rank)}, pid {process.pid}) died with "
                           f"exit code {process.exitcode}; stopping the run")

    def describe(self, rank: int) -> str:
        lo, hi = self.slices[rank]
        return f"{lo}-{hi - 1}"

    # --- checkpoints: the episodes in flight --------------------------------------------------------

    def episodes_state(self) -> dict:
        """The workers' episodes in flight, merged into the state a single-process VecEnv saves (so a
        checkpoint resumes with any number of workers, or none). Raises EnvStateError while a rollout is
        in flight (overlapped mode): its envs are mid-rollout and the rollout would be lost."""
        if self.in_flight:
            raise EnvStateError("with algo.overlap=true the envs are mid-rollout in the sampler's workers")
        if not self.processes:
            raise EnvStateError("the sampler's workers have not started")
        self.send(("state",))
        replies = self.replies("state")
        unsaved = next((reply[2] for reply in replies if reply[1] is None), None)
        if unsaved is not None:
            raise EnvStateError(unsaved)
        parts = [reply[1] for reply in replies]
        merged = {"env_id": self.env.cfg.id, "num_envs": self.env.num_envs,
                  "envs": [env for part in parts for env in part["envs"]],
                  "obs": torch.cat([part["obs"] for part in parts]),
                  "action_space": generator_state(self.env.action_space),
                  "finished_returns": list(self.env.finished_returns),
                  "finished_lengths": list(self.env.finished_lengths)}
        for name in ("episode_return", "episode_length", "discounted_return"):
            merged[name] = torch.cat([part[name] for part in parts])
        return merged

    def load_episodes(self, episodes: dict) -> str | None:
        """Keep a checkpoint's episodes for the workers to continue when they start."""
        set_generator_state(self.env.action_space, episodes["action_space"])
        self.env.finished_returns = list(episodes["finished_returns"])
        self.env.finished_lengths = list(episodes["finished_lengths"])
        self.restored = episodes
        return None


def slice_episodes(episodes: dict, lo: int, hi: int) -> dict:
    """Envs lo..hi-1 of a VecEnv's saved episodes, as a VecEnv of hi - lo envs saves them. (A VecEnv's
    action space is its first env's: the worker's is env lo's, whose own state the env's entry holds.)"""
    first = episodes["envs"][lo]
    action_space = first["action_space"] if isinstance(first, dict) and "action_space" in first \
        else episodes["action_space"]
    per_env = {name: episodes[name][lo:hi]
               for name in ("envs", "obs", "episode_return", "episode_length", "discounted_return")}
    return {**episodes, **per_env, "num_envs": hi - lo, "action_space": action_space, "finished_returns": [],
            "finished_lengths": []}
