"""A sampler worker process: steps its slice of the envs with a copy of the behaviour policy and writes
the rollout into shared memory (rlrun.sampler.shared).

It keeps a VecEnv of its own (envs lo..hi-1 of the learner's N, env i seeded seed + i as in-process),
so the wrappers, action clipping, episode statistics, Atari's whole-game returns and the truncation
bootstrap are the ones the in-process path uses. Its normalisers are `FrozenStatistics`: the
learner owns the running statistics, hands them over frozen for each rollout and folds in afterwards
what the worker's env recorded.
"""

from __future__ import annotations

import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from rlrun.envs import VecEnv
from rlrun.envs.normalize import RunningMeanStd
from rlrun.envs.state import EnvStateError
from rlrun.envs.vector import EnvConfig
from rlrun.sampler.shared import SharedRollout

STEP_ARRAYS = ("obs", "actions", "dist_params", "values", "rewards", "terminated", "ended", "next_values")


class FrozenStatistics:
    """Stands in for a worker env's RunningMeanStd: normalises with the statistics the learner gave for
    this rollout (`mean`, `var`: views of shared arrays), and records each batch VecEnv would have
    folded in, at row `row` of `record`, for the learner to fold into its own RunningMeanStd (batches
    given outside a rollout, i.e. at reset, are kept in `reset_batches`)."""

    def __init__(self, mean: np.ndarray | None, var: np.ndarray, record: np.ndarray):
        self.mean, self.var, self.record = mean, var, record
        self.row: int | None = None
        self.reset_batches: list[np.ndarray] = []

    # VecEnv normalises through its statistics' own method: the same arithmetic on the frozen mean and var.
    normalize = RunningMeanStd.normalize

    def update(self, batch: np.ndarray) -> None:
        if self.row is None:
            self.reset_batches.append(np.array(batch, np.float64))
        else:
            self.record[self.row] = batch


@dataclass
class WorkerSpec:
    """What every worker needs, picklable for the 'spawn' start method."""

    env_cfg: EnvConfig
    seed: int  # env i of the N is seeded seed + i (VecEnv's rule)
    gamma: float
    network: object  # MLPConfig | CNNConfig
    shared_torso: bool
    # (VecEnv, network config, device, shared_torso) -> rlrun.algos.onpolicy.ActorCriticNetworks: the
    # learner's builder, passed by reference, so that the copy has the learner's modules in its order.
    build: Callable
    rollout: SharedRollout


def run_worker(rank: int, lo: int, hi: int, spec: WorkerSpec, episodes: dict | None, conn) -> None:
    """The worker's loop: ("collect", clip_reward) fills one rollout, ("state",) returns its episodes in
    flight, ("stop",) ends it. Any exception goes back to the learner as one ("error", ...) reply."""
    try:
        # Ctrl-C reaches the whole process group: the learner handles it (checkpoint, then stops us).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        torch.set_num_threads(1)  # K workers on K cores: one thread each
        arrays = spec.rollout.arrays
        env = VecEnv(spec.env_cfg, hi - lo, spec.seed + lo, "sync", spec.gamma)
        if env.obs_rms is not None:
            env.obs_rms = FrozenStatistics(arrays["obs_mean"], arrays["obs_var"], arrays["obs_record"][:, lo:hi])
        if env.return_rms is not None:
            env.return_rms = FrozenStatistics(None, arrays["return_var"], arrays["return_record"][:, lo:hi])
        networks = spec.build(env, spec.network, torch.device("cpu"), spec.shared_torso)
        if episodes is not None:
            problem = env.load_episodes(episodes)
            if problem is not None:
                raise RuntimeError(f"cannot continue the checkpoint's episodes: {problem}")
        env.reset()
        reset_obs = np.concatenate(env.obs_rms.reset_batches) if env.obs_rms is not None and \
            env.obs_rms.reset_batches else None
        conn.send(("ready", reset_obs))
        while True:
            command = conn.recv()
            if command[0] == "collect":
                load_parameters(networks.net, arrays["params"])
                networks.acting.refresh()
                conn.send(("collected", collect(env, networks.acting, arrays, lo, hi, command[1])))
            elif command[0] == "state":
                try:
                    conn.send(("state", env.episodes_state()))
                except EnvStateError as error:  # an env whose state cannot be saved: the checkpoint says why
                    conn.send(("state", None, str(error)))
            else:
                break
        env.close()
    except EOFError:
        pass  # the learner is gone: nothing to report to
    except BaseException as error:  # noqa: BLE001 (reported to the learner, which stops the run)
        try:
            conn.send(("error", f"{type(error).__name__}: {error}", traceback.format_exc()))
        except OSError:
            pass
        raise SystemExit(1) from None


@torch.no_grad()
def load_parameters(net: torch.nn.Module, flat: np.ndarray) -> None:
    """Copy the learner's parameters (module order) into this worker's network."""
    flat = torch.from_numpy(flat)
    start = 0
    for param in net.parameters():
        param.copy_(flat[start:start + param.numel()].view_as(param))
        start += param.numel()


def collect(env: VecEnv, acting, arrays: dict[str, np.ndarray], lo: int, hi: int,
            clip_reward: bool) -> list[tuple[int, float, int]]:
    """rlrun.algos.onpolicy.collect_rollout for envs lo..hi-1, into the shared arrays; returns the episodes
    finished as (step, return, length). The log-probabilities are the learner's to compute (from the
    noise it drew), as in-process."""
    own = {name: arrays[name][:, lo:hi] for name in STEP_ARRAYS}
    noise = arrays["noise"][:, lo:hi]
    dist = acting.net.dist
    stats = [s for s in (env.obs_rms, env.return_rms) if s is not None]
    own["next_values"][:] = 0.0
    # The current observations (raw, as the envs last returned them), normalised with this rollout's
    # statistics: every observation of a rollout is normalised alike.
    obs = env.normalize_obs(env.envs.obs.copy(), update=False)
    finished = []
    for t in range(own["obs"].shape[0]):
        params, value = acting.dist_params_and_value(obs)
        action = dist.sample_from_noise(params, noise[t])
        own["obs"][t] = obs
        own["actions"][t] = action
        own["dist_params"][t] = params
        own["values"][t] = value
        for s in stats:
            s.row = t
        obs, reward, terminated, truncated, final_obs = env.step(action)
        own["rewards"][t] = np.sign(reward) if clip_reward else reward
        own["terminated"][t] = terminated
        own["ended"][t] = terminated | truncated
        if final_obs is not None and truncated.any():
            # Time ran out, the episode did not end: bootstrap from V(final observation).
            own["next_values"][t, truncated] = acting.value(final_obs[truncated])
        if env.finished_returns:
            returns, lengths = env.pop_episodes()
            finished += [(t, r, n) for r, n in zip(returns, lengths, strict=True)]
    for s in stats:
        s.row = None
    arrays["last_values"][lo:hi] = acting.value(obs)
    return finished
