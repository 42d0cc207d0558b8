"""Whole-process time of a short run, rlrun against Stable-Baselines3, and where rlrun's goes.

A sweep of many short runs pays each process's start-up and final evaluation once per job, so the
figure a user feels is the wall time of the whole command, not the training loop's steps/s. Each round
starts fresh interpreters, in alternating order (rlrun, SB3, rlrun, ...):

- rlrun: `rlrun algo=ppo env=HalfCheetah total_steps=N ...` with bench_speed.py's PPO settings, from
  process start to exit: imports, config composition, env and agent construction, training, the final
  10-episode evaluation, checkpoint and summary.
- SB3: the same agent (bench_speed.py's sb3 settings), `learn(N)`, `evaluate_policy` over 10
  deterministic episodes, `save`: the same job done the way SB3's documentation does it.

For rlrun each round also reports its phases, timed inside the process: imports until the CLI is
loaded, then until the first environment step (composition, checks, construction; torch.optim's lazy
import of torch._dynamo fell here), training, and evaluation. `--python` runs the rlrun side with
another checkout's interpreter (e.g. the previous commit's .venv) to give a before/after in one run.

    .venv/bin/python scripts/bench_startup.py [--steps 20480] [--rounds 3] [--logger csv|wandb]
                                              [--python OTHER/.venv/bin/python --label before]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The PPO settings come from bench_common.py, imported inside the functions the parent process runs: the
# timed child (--phases-child) must not load torch before the rlrun imports it times.


def phases_child(argv: list[str]) -> None:
    """Run the rlrun CLI in this process, recording when each phase ends (seconds since the parent
    spawned us, passed in BENCH_T0). Timestamps only: the code that runs is the CLI's own."""
    t0 = float(os.environ["BENCH_T0"])
    marks: dict[str, float] = {}
    from rlrun import cli, run  # noqa: the imports a user's `rlrun` pays
    marks["imports"] = time.time() - t0
    from rlrun.envs import VecEnv

    original_step, original_evaluate = VecEnv.step, run.evaluate
    eval_seconds = [0.0]

    def step(self, actions):
        marks.setdefault("first_step", time.time() - t0)
        return original_step(self, actions)

    def evaluate(*args, **kwargs):
        start = time.time()
        try:
            return original_evaluate(*args, **kwargs)
        finally:
            eval_seconds[0] += time.time() - start

    VecEnv.step, run.evaluate = step, evaluate
    sys.argv = ["rlrun", *argv]
    try:
        cli.main()
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            raise
    marks["exit"] = time.time() - t0
    marks["evaluation"] = eval_seconds[0]
    marks["dynamo_imported"] = "torch._dynamo" in sys.modules
    Path(os.environ["BENCH_OUT"]).write_text(json.dumps(marks))


def sb3_child(budget: int, seed: int, settings: dict, save_to: str) -> None:
    """The SB3 job: build, learn, evaluate 10 episodes, save. Only SB3's own imports."""
    import gymnasium as gym
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.evaluation import evaluate_policy
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    torch.set_num_threads(1)
    h, net, norm = settings["hparams"], settings["network"], settings["normalize"]
    venv = VecNormalize(DummyVecEnv([lambda: Monitor(gym.make(settings["env_id"]))]), gamma=h["gamma"],
                        clip_obs=norm["clip_obs"], clip_reward=norm["clip_reward"])
    lr = h["learning_rate"]
    model = PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0,
                learning_rate=lambda remaining: lr * remaining, n_steps=h["num_steps"],
                batch_size=h["num_steps"] // h["num_minibatches"], n_epochs=h["update_epochs"], gamma=h["gamma"],
                gae_lambda=h["gae_lambda"], clip_range=h["clip_coef"], normalize_advantage=h["norm_adv"],
                ent_coef=h["ent_coef"], vf_coef=h["vf_coef"] / 2, max_grad_norm=h["max_grad_norm"],
                policy_kwargs=dict(net_arch=dict(pi=net["hidden_sizes"], vf=net["hidden_sizes"]),
                                   activation_fn=torch.nn.Tanh, ortho_init=net["ortho_init"],
                                   log_std_init=net["log_std_init"], optimizer_kwargs=dict(eps=h["adam_eps"])))
    model.learn(budget)
    venv.training, venv.norm_reward = False, False  # evaluate with frozen statistics, raw rewards
    evaluate_policy(model, venv, n_eval_episodes=10, deterministic=True)
    model.save(save_to)


def rlrun_overrides(budget: int, seed: int, logger: str, run_dir: Path) -> list[str]:
    from bench_common import ONPOLICY_ENV_ID, ONPOLICY_NETWORK, ONPOLICY_NORMALIZE, PPO_HPARAMS

    algo = [f"algo.{k}={'null' if v is None else v}" for k, v in PPO_HPARAMS.items()]
    network = [f"network.{k}={v}".replace(" ", "") for k, v in ONPOLICY_NETWORK.items()]
    env = [f"env.{k}={v}" for k, v in ONPOLICY_NORMALIZE.items()]
    return ["algo=ppo", "env=HalfCheetah", f"env.id={ONPOLICY_ENV_ID}", f"total_steps={budget}", f"seed={seed}",
            "hardware=cpu", f"logger={logger}", "logger.progress_bar=false", *algo, *network, *env,
            f"hydra.run.dir={run_dir}"]


def timed(cmd: list[str], extra_env: dict[str, str], cwd: Path) -> float:
    start = time.time()
    env = {**os.environ, **extra_env, "BENCH_T0": repr(start)}
    result = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True)
    seconds = time.time() - start
    if result.returncode != 0:
        raise SystemExit(f"bench_startup: {' '.join(cmd[:4])} ... failed:\n{result.stderr[-3000:]}")
    return seconds


def rlrun_process_round(budget: int, seed: int) -> tuple[int, float, list[float]]:
    """bench_speed.py's whole-process round: one `rlrun` process (logger=csv), from start to exit."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, __file__, "--phases-child", *rlrun_overrides(budget, seed, "csv", Path(tmp) / "run")]
        seconds = timed(cmd, {"OMP_NUM_THREADS": "1", "BENCH_OUT": str(Path(tmp) / "marks.json"),
                              "PYTHONPATH": str(HERE)}, Path(tmp))
    return budget, seconds, []


def sb3_process_round(budget: int, seed: int) -> tuple[int, float, list[float]]:
    """bench_speed.py's whole-process round: one SB3 process doing the same job, from start to exit."""
    from bench_common import ONPOLICY_ENV_ID, ONPOLICY_NETWORK, ONPOLICY_NORMALIZE, PPO_HPARAMS

    settings = json.dumps({"env_id": ONPOLICY_ENV_ID, "hparams": PPO_HPARAMS, "network": ONPOLICY_NETWORK,
                           "normalize": ONPOLICY_NORMALIZE})
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, __file__, "--steps", str(budget), "--seed", str(seed), "--sb3-child", settings,
               str(Path(tmp) / "model")]
        seconds = timed(cmd, {"OMP_NUM_THREADS": "1"}, Path(tmp))
    return budget, seconds, []


# For bench_speed.py: steps / whole-process seconds, so its ratio is SB3's wall time over rlrun's.
BENCHMARKS = {"ppo_process": (rlrun_process_round, sb3_process_round, "SB3")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20480)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--logger", default="csv", choices=["csv", "wandb"],
                        help="rlrun's logger (wandb: offline, the default of `rlrun`)")
    parser.add_argument("--python", action="append", default=[],
                        help="another interpreter for the rlrun side (repeatable); its checkout's rlrun runs")
    parser.add_argument("--label", action="append", default=[], help="a name for each --python")
    parser.add_argument("--no-sb3", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--phases-child", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    parser.add_argument("--sb3-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phases_child is not None:
        return phases_child(args.phases_child)
    if args.sb3_child is not None:
        return sb3_child(args.steps, args.seed, json.loads(args.sb3_child[0]), args.sb3_child[1])

    sys.path.insert(0, str(HERE))
    from bench_common import ONPOLICY_ENV_ID, ONPOLICY_NETWORK, ONPOLICY_NORMALIZE, PPO_HPARAMS

    pythons = {"rlrun": sys.executable}
    for i, python in enumerate(args.python):
        pythons[args.label[i] if i < len(args.label) else f"rlrun@{python}"] = python
    settings = json.dumps({"env_id": ONPOLICY_ENV_ID, "hparams": PPO_HPARAMS, "network": ONPOLICY_NETWORK,
                           "normalize": ONPOLICY_NORMALIZE})
    results: dict[str, list[dict]] = {name: [] for name in [*pythons, *([] if args.no_sb3 else ["SB3"])]}
    env = {"OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for r in range(args.rounds):
            for name in results:
                out = work / f"{name.replace('/', '_')}-{r}"
                if name == "SB3":
                    seconds = timed([sys.executable, __file__, "--steps", str(args.steps), "--seed", str(args.seed),
                                     "--sb3-child", settings, str(out)], env, work)
                    row = {"wall": seconds}
                else:
                    marks_file = work / f"marks-{name.replace('/', '_')}-{r}.json"
                    cmd = [pythons[name], __file__, "--phases-child",
                           *rlrun_overrides(args.steps, args.seed, args.logger, out)]
                    seconds = timed(cmd, {**env, "BENCH_OUT": str(marks_file), "PYTHONPATH": str(HERE)}, work)
                    row = {"wall": seconds, **json.loads(marks_file.read_text())}
                results[name].append(row)
                detail = "" if name == "SB3" else (
                    f"  (imports {row['imports']:.2f} s, first step at {row['first_step']:.2f} s, "
                    f"evaluation {row['evaluation']:.2f} s, torch._dynamo imported: {row['dynamo_imported']})")
                print(f"round {r + 1}/{args.rounds}  {name:8s} {seconds:6.2f} s{detail}", flush=True)

    print(f"\nwhole process, {args.steps:,} steps of PPO on {ONPOLICY_ENV_ID} + 10 evaluation episodes + save, "
          f"rlrun logger={args.logger}, median of {args.rounds} rounds (load {os.getloadavg()[0]:.2f}):")
    medians = {name: statistics.median(row["wall"] for row in rows) for name, rows in results.items()}
    for name, rows in results.items():
        line = f"  {name:8s} {medians[name]:6.2f} s"
        if name != "SB3":
            phase = {k: statistics.median(row[k] for row in rows) for k in ("imports", "first_step", "evaluation")}
            line += (f"   imports {phase['imports']:.2f} s, to first step {phase['first_step']:.2f} s, "
                     f"final evaluation {phase['evaluation']:.2f} s")
            if "SB3" in medians:
                line += f"   ratio {medians['SB3'] / medians[name]:.2f}x (SB3 time / rlrun time)"
        print(line)
    if args.json:
        args.json.write_text(json.dumps({"steps": args.steps, "rounds": args.rounds, "logger": args.logger,
                                         "results": results, "medians": medians}, indent=2) + "\n")


if __name__ == "__main__":
    main()
