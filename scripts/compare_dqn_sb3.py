"""rlrun's DQN, Double DQN and Dueling DQN against Stable-Baselines3's DQN on CartPole-v1, seed by seed.

Table mode (the default) prints each seed's final evaluation return for every algorithm asked for:
rlrun's runs go through its CLI as a user would (`rlrun algo=dqn env=CartPole`, so conf/tuned/
dqn_CartPole.yaml applies, with `logger=csv hardware=cpu` and `--rlrun` overrides); SB3's DQN is built
from the very config rlrun composes for `algo=dqn env=CartPole` (same overrides), key for key: learning
rate (and its linear annealing), buffer, learning_starts, batch, train_freq, gradient_steps, gamma,
n-step returns (SB3 >= 2.6: n_steps), the loss (SB3 has Huber only: with algo.loss=mse its DQN's
module is given the squared error in its place), target_update_interval, tau, epsilon schedule,
max_grad_norm, hidden sizes and activation (SB3 has neither Double nor Dueling DQN: its column is
plain DQN). Both are evaluated as rlrun's runner evaluates:
10 episodes of the greedy policy on one env seeded seed + 10000.

    python scripts/compare_dqn_sb3.py --seeds 100 101 102 --steps 100000 --jobs 2
    python scripts/compare_dqn_sb3.py --algos dqn sb3 --rlrun algo.learning_rate=1e-3

`--lockstep` instead compares one seed's training update by update: SB3's DQN and rlrun's DQN start
from the same weights, learn from the same replayed minibatches, and the script prints how far their
parameters drift apart, and where their schedules (learning phases, target copies, epsilon, learning
rate) differ.

To measure another checkout of rlrun, put its src/ first: `PYTHONPATH=/path/to/checkout/src python ...`
(the rlrun runs are subprocesses and inherit it). Runs are independent processes, `--jobs` at a time.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from bench_common import CONF, EVAL_EPISODES, run_rlrun_cli, runs_directory, sb3_eval_return

RLRUN_ALGOS = ("dqn", "double_dqn", "dueling_dqn")


def composed(algo: str, overrides: list[str]):
    """The config `rlrun algo=<algo> env=CartPole <overrides>` composes, tuned file included."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=[f"algo={algo}", "env=CartPole", *overrides])


def run_rlrun(algo: str, seed: int, steps: int | None, overrides: list[str], out_dir: str) -> dict:
    """Final and best evaluation mean return, and seconds, of one rlrun CLI run."""
    summary, seconds = run_rlrun_cli(algo, "CartPole", seed, steps, overrides,
                                     Path(out_dir).resolve() / f"{algo}_seed{seed}")
    return {"final": float(summary["final_eval_mean_return"]), "best": float(summary["best_eval_mean_return"]),
            "seconds": seconds}


def sb3_dqn(cfg, seed: int, steps: int):
    """SB3's DQN (not yet trained) with the settings of rlrun's composed config `cfg`."""
    import stable_baselines3.dqn.dqn as sb3_dqn_module
    import torch
    from stable_baselines3 import DQN
    from stable_baselines3.common.env_util import make_vec_env

    algo, net = cfg.algo, cfg.network
    if algo.advantage_learning:
        print(f"compare_dqn_sb3: SB3's DQN has no advantage learning: its runs use algo.advantage_learning=0 "
              f"(rlrun's: {algo.advantage_learning}), every other setting the same", flush=True)
    # SB3's DQN has the Huber loss only (dqn.py calls F.smooth_l1_loss, the one function of F it uses):
    # with algo.loss=mse, its module's F becomes one whose smooth_l1_loss is the squared error.
    functional = torch.nn.functional
    sb3_dqn_module.F = SimpleNamespace(smooth_l1_loss=functional.mse_loss) if algo.loss == "mse" else functional
    if algo.double or algo.dueling or algo.clip_reward or algo.eval_epsilon or algo.num_envs != 1:
        raise SystemExit("compare_dqn_sb3: SB3's DQN has no Double, Dueling, reward clipping or evaluation "
                         "epsilon; compare plain DQN with one env")
    lr = float(algo.learning_rate)
    # SB3 calls a schedule with the progress remaining (1 -> 0) once per learning phase; rlrun's
    # anneal_lr sets the rate from the same fraction at each update (constant within a phase).
    learning_rate = (lambda remaining: lr * remaining) if algo.get("anneal_lr", False) else lr
    activation = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "elu": torch.nn.ELU}[net.activation]
    return DQN("MlpPolicy", make_vec_env("CartPole-v1", n_envs=1, seed=seed), seed=seed, device="cpu",
               learning_rate=learning_rate, buffer_size=int(algo.buffer_size),
               learning_starts=int(algo.learning_starts), batch_size=int(algo.batch_size), tau=float(algo.tau),
               gamma=float(algo.gamma), n_steps=int(algo.n_step), train_freq=int(algo.train_frequency),
               gradient_steps=int(algo.gradient_steps), target_update_interval=int(algo.target_update_interval),
               exploration_fraction=float(algo.exploration_fraction),
               exploration_initial_eps=float(algo.exploration_initial_eps),
               exploration_final_eps=float(algo.exploration_final_eps),
               max_grad_norm=float(algo.max_grad_norm) if algo.max_grad_norm is not None else float("inf"),
               policy_kwargs={"net_arch": list(net.hidden_sizes), "activation_fn": activation})


def run_sb3(seed: int, steps: int | None, overrides: list[str]) -> dict:
    """Final evaluation mean return and seconds of SB3's DQN with rlrun's settings for algo=dqn."""
    import torch

    torch.set_num_threads(1)  # as rlrun's hardware=cpu
    cfg = composed("dqn", overrides)
    steps = steps or int(cfg.total_steps)
    start = time.perf_counter()
    model = sb3_dqn(cfg, seed, steps)
    model.learn(steps)
    seconds = time.perf_counter() - start
    return {"final": sb3_eval_return(model, "CartPole-v1", seed), "best": float("nan"), "seconds": seconds}


def table(args) -> None:
    with runs_directory(args.keep, "compare_dqn_") as out_dir, ProcessPoolExecutor(args.jobs) as pool:
        runs = {(algo, seed): (pool.submit(run_sb3, seed, args.steps, args.rlrun) if algo == "sb3" else
                               pool.submit(run_rlrun, algo, seed, args.steps, args.rlrun, out_dir))
                for algo in args.algos for seed in args.seeds}
        results = {key: future.result() for key, future in runs.items()}

    steps = f"{args.steps:,} steps" if args.steps else "the tuned total_steps"
    print(f"CartPole-v1, {steps}, conf/tuned/*dqn_CartPole.yaml; overrides: {' '.join(args.rlrun) or 'none'}")
    print(f"final evaluation return (mean of {EVAL_EPISODES} greedy episodes); in brackets: rlrun's best evaluation")
    names = {"dqn": "DQN", "double_dqn": "Double", "dueling_dqn": "Dueling", "sb3": "SB3 DQN"}
    print(f"{'seed':>6}" + "".join(f"{names[a]:>16}" for a in args.algos))
    for seed in args.seeds:
        cells = []
        for algo in args.algos:
            r = results[algo, seed]
            cells.append(f"{r['final']:>7.1f}" + (f" ({r['best']:>5.0f})" if algo != "sb3" else " " * 8))
        print(f"{seed:>6}" + "".join(f"{c:>16}" for c in cells))
    finals = {a: np.array([results[a, s]["final"] for s in args.seeds]) for a in args.algos}
    print(f"{'mean':>6}" + "".join(f"{finals[a].mean():>8.1f}{'':>8}" for a in args.algos))
    print(f"{'>=475':>6}" + "".join(f"{int((finals[a] >= 475).sum()):>5d}/{len(args.seeds):<2d}{'':>8}"
                                    for a in args.algos))
    print(f"{'s/run':>6}" + "".join(f"{np.mean([results[a, s]['seconds'] for s in args.seeds]):>8.0f}{'':>8}"
                                    for a in args.algos))


# --- lockstep: one seed, update by update --------------------------------------------------------------


def lockstep(args) -> None:
    """Train rlrun's DQN on one seed and put each of its learning phases through SB3's DQN as well: the
    same start weights, the same minibatches, SB3's own target copies (its _on_step, once per env step)
    and schedules. Prints both schedules and the parameter gap after each phase."""
    import torch
    from stable_baselines3.common.type_aliases import ReplayBufferSamples

    from rlrun.algos.dqn import DQN
    from rlrun.envs import VecEnv, env_config
    from rlrun.hardware import Hardware
    from rlrun.nets import network_config

    torch.set_num_threads(1)
    seed = args.seeds[0]
    cfg = composed("dqn", args.rlrun)
    if cfg.algo.n_step != 1:
        raise SystemExit("compare_dqn_sb3 --lockstep feeds SB3 rlrun's 1-step minibatches: use algo.n_step=1")
    steps = args.steps or int(cfg.total_steps)
    algo_cfg = DQN.parse_config({k: v for k, v in cfg.algo.items() if k != "_target_"})
    env = VecEnv(env_config(cfg.env), 1, seed, "sync", algo_cfg.gamma)
    rl = DQN(algo_cfg, env, network_config(cfg.network), Hardware(torch.device("cpu"), 1, "sync", 1), seed, steps)
    sb3 = sb3_dqn(cfg, seed, steps)
    sb3._setup_learn(steps)  # SB3's logger and progress bookkeeping, as learn() sets them up
    rl_params, sb3_params = list(rl.net.parameters()), list(sb3.q_net.parameters())

    def std(params) -> list[float]:
        return [round(float(p.detach().std()), 4) for p in params if p.ndim == 2]

    print(f"initial weight std per layer (network.ortho_init={cfg.network.ortho_init}): rlrun {std(rl_params)}, "
          f"SB3's own {std(sb3_params)}; SB3 now starts from rlrun's weights")
    with torch.no_grad():
        for p, q in zip([*sb3_params, *sb3.q_net_target.parameters()],
                        [*rl_params, *rl.target_net.parameters()], strict=True):
            p.copy_(q)

    def gap() -> float:
        return max(float((p - q).detach().abs().max()) for p, q in zip(sb3_params, rl_params, strict=True))

    state = {"phase": 0, "batches": [], "sb3_step": 0, "rl_copied_at": 0, "sb3_copied_at": 0, "worst": 0.0,
             "first_phases": []}
    train_step, update_target = rl.train_step, rl.update_target

    def sb3_env_steps_until(step: int) -> None:
        """SB3's per-env-step bookkeeping up to `step`: _on_step copies the target every
        target_update_interval calls and sets epsilon from the progress."""
        polyak = sb3.q_net_target.state_dict()["q_net.0.weight"].clone()
        while state["sb3_step"] < step:
            state["sb3_step"] += 1
            sb3.num_timesteps = state["sb3_step"]
            sb3._update_current_progress_remaining(sb3.num_timesteps, steps)
            sb3._on_step()
        if not torch.equal(polyak, sb3.q_net_target.state_dict()["q_net.0.weight"]):
            state["sb3_copied_at"] = sb3._n_updates

    def recording_update_target(*args) -> None:
        update_target(*args)
        state["rl_copied_at"] = rl.gradient_updates

    print(f"{'phase':>5} {'step':>7} {'eps rlrun':>9} {'eps SB3':>9} {'lr rlrun':>9} {'lr SB3':>9} "
          f"{'target=net after update (rlrun/SB3)':>36} {'max |dtheta|':>12}")

    def snapshot() -> dict[str, torch.Tensor]:
        """rlrun's learner before a phase: online and target weights, Adam's moments and step."""
        return {"online": rl.flat_params.detach().clone(), "target": rl.target_params.clone(),
                **{k: v.clone() for k, v in rl.optimizer.state.items()}}

    def load_into_sb3(saved: dict[str, torch.Tensor]) -> None:
        """Set SB3's learner to rlrun's `saved` state (flat tensors split in parameter order)."""
        offset = 0
        with torch.no_grad():
            for p, q in zip(sb3_params, sb3.q_net_target.parameters(), strict=True):
                n = p.numel()
                p.copy_(saved["online"][offset:offset + n].view_as(p))
                q.copy_(saved["target"][offset:offset + n].view_as(q))
                adam = sb3.policy.optimizer.state.setdefault(p, {})
                for key in ("exp_avg", "exp_avg_sq"):
                    adam[key] = saved[key][offset:offset + n].view_as(p).clone()
                adam["step"] = saved["step"].clone()
                offset += n

    def recording_train_step(batch):
        if args.resync and not state["batches"]:
            state["before"] = snapshot()
        out = train_step(batch)  # copies the target first where due
        state["batches"].append(batch)
        if len(state["batches"]) == algo_cfg.gradient_steps:  # the phase is over: SB3 does it too
            state["first_phases"].append(rl.global_step)
            if args.resync and rl.gradient_updates > algo_cfg.gradient_steps:
                load_into_sb3(state["before"])
            sb3_env_steps_until(rl.global_step)
            queue = [ReplayBufferSamples(b["obs"], b["actions"].long().unsqueeze(1), b["next_obs"],
                                         b["terminated"].unsqueeze(1), b["rewards"].unsqueeze(1))
                     for b in state["batches"]]
            state["batches"] = []
            sb3.replay_buffer.sample = lambda *a, **k: queue.pop(0)
            sb3.train(algo_cfg.gradient_steps, algo_cfg.batch_size)
            state["phase"] += 1
            state["worst"] = max(state["worst"], gap())
            k = state["phase"]
            if k <= 3 or k % args.lockstep_every == 0:
                print(f"{k:>5} {rl.global_step:>7} {rl.epsilon():>9.4f} {sb3.exploration_rate:>9.4f} "
                      f"{rl.optimizer.param_groups[0]['lr']:>9.2e} {sb3.policy.optimizer.param_groups[0]['lr']:>9.2e} "
                      f"{state['rl_copied_at']:>17}/{state['sb3_copied_at']:<18} {gap():>12.2e}")
        return out

    rl.train_step, rl.update_target = recording_train_step, recording_update_target
    for metrics in rl.learn():
        if metrics["global_step"] >= steps:
            break
    # When each library starts learning (learning_starts) and how often (train_freq): SB3 on its own,
    # its train() calls recorded for the first few phases.
    probe = sb3_dqn(cfg, seed, steps)
    calls: list[int] = []
    train = probe.train
    probe.train = lambda *a, **k: calls.append(probe.num_timesteps) or train(*a, **k)
    probe.learn(algo_cfg.learning_starts + 3 * algo_cfg.train_frequency)
    print(f"SB3's first learning phases at env steps {calls[:3]}; rlrun's at {state['first_phases'][:3]}")
    print(f"largest parameter gap over {state['phase']} phases ({rl.gradient_updates} updates): {state['worst']:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[100, 101, 102, 103, 104, 105, 106, 107, 108, 109])
    parser.add_argument("--algos", nargs="+", default=[*RLRUN_ALGOS, "sb3"], choices=[*RLRUN_ALGOS, "sb3"])
    parser.add_argument("--steps", type=int, default=None, help="training steps per run (default: the tuned file's)")
    parser.add_argument("--jobs", type=int, default=2, help="runs at a time (one core each)")
    parser.add_argument("--rlrun", nargs="*", default=[], metavar="OVERRIDE",
                        help="config overrides, for rlrun's runs and the settings SB3's DQN is given")
    parser.add_argument("--keep", metavar="DIR", help="keep rlrun's run directories (eval.csv: the curves) in DIR")
    parser.add_argument("--lockstep", action="store_true", help="compare one seed (the first) update by update")
    parser.add_argument("--resync", action="store_true",
                        help="with --lockstep: give SB3 rlrun's weights, target and Adam state before each "
                             "phase, so that the gap is one phase's, not rounding compounded over the run")
    parser.add_argument("--lockstep-every", type=int, default=20, help="print every this many phases")
    args = parser.parse_args()
    lockstep(args) if args.lockstep else table(args)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
