"""Load checkpoints written by hardware=gpu runs on a machine without a GPU, into the algorithm.

    python scripts/gpu_check_load.py [--expect-cuda] CHECKPOINT_OR_FOLDER [...]   # a folder: every *.pt

For each checkpoint (scripts/gpu_check.sh keeps <run>_gpu_last.pt of each GPU run):
1. torch.load with weights_only=True (the safe loader: tensors and plain containers only) and
   map_location="cpu", as rlrun.checkpoint.load does; the devices its tensors were saved from are
   reported, read from the file itself, to show that this is a GPU run's checkpoint;
2. the algorithm, its env and network built on the CPU from the config stored in the checkpoint, and
   its state (networks, optimisers, generators, normalisation) loaded into them;
3. the loaded policy evaluated for one episode (its return must be finite), then one more training
   iteration on the CPU from the loaded state (losses finite, steps counted on from the checkpoint's).
With --expect-cuda a checkpoint whose tensors were not saved from a CUDA device fails (proof that
the files came from a real GPU run, not a --cpu-only rehearsal). Exit code 0 when every one passes.
"""

from __future__ import annotations

import math
import sys
import time
from collections import Counter
from pathlib import Path

import torch
from hydra.utils import get_class

from rlrun.envs import VecEnv, env_config
from rlrun.hardware import Hardware
from rlrun.nets import network_config
from rlrun.run import evaluate

# Shorter iterations for step 3 where the algorithm has such a key: one iteration of A3C is
# report_every steps, of SAC steps_per_iteration; SAC's replay buffer is not in the checkpoint
# (checkpoint.replay=false), so it refills learning_starts transitions before it trains again. A run
# trained with algo.compile=true is checked eagerly: compilation changes no saved state, and a
# CPU-only machine would spend a minute compiling for one iteration.
CHECK_OVERRIDES = {"report_every": 500, "steps_per_iteration": 500, "learning_starts": 256, "compile": False}


def load_cpu(path: Path) -> tuple[dict, Counter]:
    """The checkpoint on the CPU, and how many storages were saved from each device."""
    saved_on: Counter = Counter()

    def to_cpu(storage, location: str):
        saved_on[location] += 1
        return storage  # deserialised on the CPU already; returning it keeps it there

    state = torch.load(path, map_location=to_cpu, weights_only=True)
    return state, saved_on


def tensors_finite(obj) -> bool:
    if isinstance(obj, torch.Tensor):
        return not obj.is_floating_point() or bool(torch.isfinite(obj).all())
    if isinstance(obj, dict):
        return all(tensors_finite(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return all(tensors_finite(v) for v in obj)
    return True


def build(state: dict):
    """The algorithm of the checkpoint's config, on the CPU, with the state loaded."""
    cfg = state["config"]
    algo_cls = get_class(cfg["algo"]["_target_"])
    algo_items = {k: v for k, v in cfg["algo"].items() if k != "_target_"}
    algo_items.update({k: v for k, v in CHECK_OVERRIDES.items() if k in algo_items})
    algo_cfg = algo_cls.parse_config(algo_items)
    env_cfg = env_config(cfg["env"])
    # At most 2 A3C workers: the checkpoint does not depend on how many wrote it, and a laptop has few cores.
    hw = Hardware(torch.device("cpu"), 1, "sync", min(cfg["hardware"]["workers"], 2))
    torch.set_num_threads(1)
    gamma = getattr(algo_cfg, "gamma", 0.99)
    env = VecEnv(env_cfg, getattr(algo_cfg, "num_envs", 1), cfg["seed"], "sync", gamma)
    # The horizon of learning-rate schedules: the run's own budget, extended so one more iteration fits.
    total_steps = max(cfg["total_steps"], state["global_step"]) + 10_000
    algo = algo_cls(algo_cfg, env, network_config(cfg["network"]), hw, cfg["seed"], total_steps)
    env.load_state_dict(state["env"])
    algo.load_state_dict(state["algo"])
    eval_env = VecEnv(env_cfg, 1, cfg["seed"] + 10_000, "sync", gamma, training=False)
    return algo, env, eval_env


def evaluate_one_episode(algo, env: VecEnv, eval_env: VecEnv) -> float:
    """The runner's own evaluation (normalisation statistics frozen from the training env)."""
    return evaluate(algo, eval_env, env, episodes=1, seed=12345).returns[0]


def check(path: Path, expect_cuda: bool = False) -> list[str]:
    """The problems found with one checkpoint (empty: it passed)."""
    start = time.perf_counter()
    state, saved_on = load_cpu(path)
    where = ", ".join(f"{loc} x{n}" for loc, n in sorted(saved_on.items()))
    cfg = state.get("config", {})
    print(f"{path.name}: {state.get('algo_name')} on {state.get('env_name')} ({state.get('env_id')}), "
          f"step {state.get('global_step'):,}, hardware.device={cfg.get('hardware', {}).get('device')}; "
          f"storages saved on: {where}", flush=True)
    problems = []
    if expect_cuda and not any(loc.startswith("cuda") for loc in saved_on):
        problems.append(f"no tensor was saved from a CUDA device (saved on: {where})")
    if not tensors_finite(state["algo"]):
        problems.append("non-finite values in the saved algorithm state")
    algo, env, eval_env = build(state)
    try:
        print(f"  loaded into {type(algo).__name__} on the CPU", flush=True)
        episode_return = evaluate_one_episode(algo, env, eval_env)
        print(f"  one evaluation episode: return {episode_return:.1f}", flush=True)
        if not math.isfinite(episode_return):
            problems.append(f"evaluation return {episode_return}")
        learning = algo.learn()
        try:
            # Up to three iterations: A3C's workers report on their own clock, and a window whose
            # reports have not reached the main process yet has no losses.
            for _ in range(3):
                metrics = next(learning)
                losses = {k: v for k, v in metrics.items() if "loss" in k}
                if losses:
                    break
        finally:
            learning.close()
        print(f"  one more iteration on the CPU: step {state['global_step']:,} -> {metrics['global_step']:,}; "
              + ", ".join(f"{k.split('/')[-1]} {v:.4g}" for k, v in losses.items()), flush=True)
        if metrics["global_step"] <= state["global_step"]:
            problems.append(f"global_step did not continue from {state['global_step']} (got {metrics['global_step']})")
        if not losses:
            problems.append("the iteration reported no loss (did it train?)")
        bad = {k: v for k, v in losses.items() if not math.isfinite(v)}
        if bad:
            problems.append(f"non-finite losses after loading: {bad}")
    finally:
        env.close()
        eval_env.close()
    print(f"  {'OK' if not problems else 'FAILED: ' + '; '.join(problems)} ({time.perf_counter() - start:.1f} s)",
          flush=True)
    return problems


def main(argv: list[str]) -> int:
    expect_cuda = "--expect-cuda" in argv
    argv = [arg for arg in argv if arg != "--expect-cuda"]
    if not argv:
        print(__doc__)
        return 2
    paths: list[Path] = []
    for arg in map(Path, argv):
        paths += sorted(arg.glob("*.pt")) if arg.is_dir() else [arg]
    if not paths:
        print(f"no checkpoints (*.pt) in {' '.join(argv)}")
        return 1
    print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}", flush=True)
    failed = []
    for path in paths:
        try:
            if check(path, expect_cuda):
                failed.append(path.name)
        except Exception as error:  # report every checkpoint, not only the first failure
            print(f"  FAILED: {type(error).__name__}: {error}", flush=True)
            failed.append(path.name)
    print("ALL LOADED" if not failed else f"FAILED: {', '.join(failed)}")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
