"""The GPU profile, proven (issue 11, item 6): PPO, SAC, A3C and PPO from pixels (Pong, network=cnn)
trained with `hardware=gpu` and with `hardware=cpu` on the same machine, SAC also with
algo.compile=true on the GPU, the sampler's worker processes with overlap (issue 17: PPO on Pong,
PPO with 64 MuJoCo envs), a table of their steps/s, and the GPU runs' checkpoints kept.

Run it through scripts/gpu_check.sh, which installs the carried wheels where the machine lacks
gymnasium, MuJoCo or Hydra and sets PYTHONPATH. Each run is the real command
(`python -m rlrun.cli algo=... hardware=gpu logger=csv ...`) in a subprocess, with its run directory
under a temporary folder; this script only reads what the runs wrote:

- summary.json: steps_per_second (environment steps over the time spent inside the algorithm, eval
  and checkpoints excluded) and the final evaluation return, which must be finite;
- manifest.json: the device the runner resolved, which must be cuda for a gpu run;
- metrics.csv: every loss of every row must be finite;
- checkpoints/last.pt: copied to OUT as <run>_gpu_last.pt (at most 8 files come back from a lent
  machine, so the run directories stay behind), for scripts/gpu_check_load.py to load on a CPU-only
  machine; with --load-check it is also loaded here, in a subprocess that sees no GPU.

`--cpu-only` replaces hardware=gpu by hardware=cpu (the same runs twice), so the whole check can be
rehearsed on a machine without CUDA: only CUDA itself is then untested. `--budget-seconds` bounds
the whole check (a lent machine's time is short): runs that would start after it are skipped and
reported, and each run gets at most what is left.
"""

from __future__ import annotations

import argparse
import csv
import importlib.util
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Spec:
    """One algorithm of the check: its budget and the overrides both profiles share."""

    label: str
    algo: str
    total_steps: int
    overrides: list[str]
    gpu_only: bool = False  # run in the gpu slot only (compared with another gpu run, or too slow on the CPU)
    env: str | None = None  # its own env (default: the check's MuJoCo env)
    keep_checkpoint: bool = True  # copy its gpu last.pt to OUT (at most 8 files come back from a lent machine)


@dataclass
class Result:
    label: str
    profile: str           # gpu or cpu (in --cpu-only mode "gpu" names the slot, which ran on cpu)
    hardware: str          # the hardware= choice given to rlrun
    status: str = "not run"
    seconds: float = math.nan
    device: str | None = None
    steps: int | None = None
    steps_per_second: float = math.nan
    steady_sps: float = math.nan
    final_return: float = math.nan
    checkpoint: str | None = None
    problems: list[str] = field(default_factory=list)


def specs(a3c_workers: int, sampler_workers: int, scale: float, fallback_env: bool) -> tuple[str, list[Spec]]:
    """The runs: the brief's budgets on HalfCheetah (PPO 20k, SAC 3k with 1k random steps first,
    A3C 20k); Pendulum when MuJoCo cannot run here. `scale` shrinks budgets for a quick rehearsal.
    sac_compiled is SAC with algo.compile=true (torch.compile, CUDA graphs on a GPU), compared with
    the eager SAC on the GPU; its CPU slot is not run (compiling on a CPU is slower than eager, and
    that is measured by tests/test_offpolicy_continuous_compile.py and the README)."""
    env = "Pendulum" if fallback_env else "HalfCheetah"

    def steps(n: int) -> int:
        return max(int(n * scale), 1)

    # learning_starts as a config key: an algo file under `# @package _global_` keeps it under algo.
    sac = [f"algo.learning_starts={steps(1_000)}", f"algo.steps_per_iteration={max(steps(1_000) // 2, 1)}"]
    return env, [
        Spec("ppo", "ppo", steps(20_000), []),
        Spec("sac", "sac", steps(3_000), sac),
        Spec("sac_compiled", "sac", steps(3_000), [*sac, "algo.compile=true"], gpu_only=True),
        # PPO from pixels with conf/tuned/ppo_Pong.yaml (8 envs x 128 steps, 4 epochs of 4 minibatches of
        # 256 stacks): the Nature CNN's update is where a GPU learner is meant to pay.
        Spec("ppo_atari", "ppo", steps(10_240), ["network=cnn"], env="Pong"),
        # The sampler (issue 17, docs/sampler.md): the same Pong run with its 8 envs stepped by worker
        # processes (at most one env each) that collect rollout k+1 while the learner updates on rollout k;
        # and PPO on the MuJoCo env with 64 envs (rl_games' HalfCheetah setting) stepped by the workers.
        Spec("ppo_atari_sampler", "ppo", steps(10_240), ["network=cnn", f"hardware.workers={sampler_workers}",
                                                          "algo.overlap=true"], env="Pong", keep_checkpoint=False),
        # The fast Atari file (tuned/ppo_Pong_fast.yaml, rl_games' recipe: 64 envs x 128 steps, minibatches of
        # 2,048, the adaptive step size) with the workers and overlap: what a GPU box is for; 3 updates. Its cpu
        # slot is not run: 24k steps of a CNN learner on the CPU would take the check's whole budget.
        Spec("ppo_atari_fast", "ppo", steps(3 * 8_192), ["network=cnn", "tuned=ppo_Pong_fast",
                                                        f"hardware.workers={sampler_workers}", "algo.overlap=true"],
             env="Pong", keep_checkpoint=False, gpu_only=True),
        Spec("ppo_64envs_sampler", "ppo", steps(65_536), ["algo.num_envs=64", "algo.num_steps=64",
                                                           "algo.num_minibatches=4",
                                                           # (plain Gaussian noise: the workers do not act with gSDE,
                                                           # which the CPU rehearsal's Pendulum tuned file turns on)
                                                           "algo.use_sde=false",
                                                           f"hardware.workers={sampler_workers}",
                                                           "algo.overlap=true"], keep_checkpoint=False),
        # K actor-learner processes on K cores; rows every 5k steps, so that the steady rate is the
        # mean of a few rows after the workers' start-up.
        Spec("a3c", "a3c", steps(20_000), [f"hardware.workers={a3c_workers}",
                                          f"algo.report_every={max(steps(5_000), 1)}"]),
    ]


COMMON = ["logger=csv", "seed=0",
          "eval.every_steps=0",       # one evaluation, at the end: its return is the one checked
          "eval.episodes=2",
          "checkpoint.every_steps=0"]  # last.pt at the end only


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "missing"


def describe_machine(cpu_only: bool) -> tuple[dict, bool]:
    """Print what the machine is: nvidia-smi, torch's view of CUDA, CPUs, package versions. Returns
    the description and whether CUDA works (a small matrix product on it gave the right answer)."""
    info: dict = {"python": sys.version.split()[0], "executable": sys.executable, "platform": platform.platform(),
                  "cpu_count": os.cpu_count(),
                  "packages": {n: package_version(n) for n in ("torch", "numpy", "gymnasium", "mujoco",
                                                               "hydra-core", "omegaconf")}}
    print("== machine", flush=True)
    info["nvidia_smi"] = None
    if shutil.which("nvidia-smi"):
        try:
            smi = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30)
            print(smi.stdout.rstrip() or smi.stderr.rstrip())
            query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                                    "--format=csv,noheader"], capture_output=True, text=True, timeout=30)
            info["nvidia_smi"] = query.stdout.strip()
        except (OSError, subprocess.SubprocessError) as error:  # the check goes on: torch says what it sees
            print(f"nvidia-smi failed: {error}")
    else:
        print("nvidia-smi: not found")
    import torch

    cuda_ok = False
    info["torch_cuda_build"] = torch.version.cuda
    info["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                       "memory_gib": round(props.total_memory / 2**30, 1),
                       "multiprocessors": props.multi_processor_count, "device_count": torch.cuda.device_count(),
                       "cudnn": torch.backends.cudnn.version()}
        a = torch.arange(12.0, device="cuda").reshape(3, 4)
        cuda_ok = bool(torch.equal((a @ a.T).cpu(), torch.arange(12.0).reshape(3, 4) @ torch.arange(12.0).reshape(3, 4).T))
        info["gpu"]["matmul_ok"] = cuda_ok
    for key, value in info.items():
        print(f"{key}: {value}")
    if not cuda_ok and not cpu_only:
        print("CUDA does not work here; run with --cpu-only to rehearse the check on the CPU", flush=True)
    sys.stdout.flush()
    return info, cuda_ok


def mujoco_works() -> bool:
    """HalfCheetah-v5 can be made and stepped (MuJoCo and its gymnasium env import and load)."""
    try:
        import gymnasium as gym

        env = gym.make("HalfCheetah-v5")
        env.reset(seed=0)
        env.step(env.action_space.sample())
        env.close()
        return True
    except Exception as error:  # any failure means: use the fallback env, and say why
        print(f"HalfCheetah-v5 cannot run here ({type(error).__name__}: {error}); using Pendulum", flush=True)
        return False


def finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def read_metrics(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_run(result: Result, run_dir: Path, total_steps: int, expect_cuda: bool, learn_from: int) -> None:
    """Fill `result` from the run directory; every failed expectation becomes a problem."""
    summary_path = run_dir / "summary.json"
    if not summary_path.exists():
        result.problems.append("no summary.json")
        return
    summary = json.loads(summary_path.read_text())
    result.steps = summary.get("total_steps")
    result.steps_per_second = summary.get("steps_per_second") or math.nan
    result.final_return = math.nan if summary.get("final_eval_mean_return") is None else summary["final_eval_mean_return"]
    if not finite(summary.get("final_eval_mean_return")):
        result.problems.append(f"final eval return not finite: {summary.get('final_eval_mean_return')!r}")
    if not finite(summary.get("steps_per_second")) or summary["steps_per_second"] <= 0:
        result.problems.append(f"steps_per_second not a positive number: {summary.get('steps_per_second')!r}")
    if (result.steps or 0) < total_steps:
        result.problems.append(f"stopped at {result.steps} steps, before the budget of {total_steps}")
    manifest_path = run_dir / "manifest.json"
    if manifest_path.exists():
        result.device = json.loads(manifest_path.read_text()).get("hardware", {}).get("device")
    if expect_cuda and not (result.device or "").startswith("cuda"):
        result.problems.append(f"hardware=gpu ran on {result.device!r}, not cuda")
    rows = read_metrics(run_dir / "metrics.csv")
    if not rows:
        result.problems.append("metrics.csv has no rows")
    for row in rows:
        bad = {k: v for k, v in row.items() if "loss" in k and v not in ("", None) and not math.isfinite(float(v))}
        if bad:
            result.problems.append(f"non-finite losses at step {row['global_step']}: {bad}")
            break
    # Steady rate: the mean of the rows' own rates after the first row (start-up, compilation of
    # kernels, A3C's worker processes) and, for SAC, after its random-action phase.
    rates = [float(r["sps"]) for r in rows[1:] if r.get("sps") and int(r["global_step"]) > learn_from]
    if rates:
        result.steady_sps = sum(rates) / len(rates)
    if not (run_dir / "checkpoints" / "last.pt").exists():
        result.problems.append("no checkpoints/last.pt")


def run_one(spec: Spec, env: str, result: Result, work: Path, timeout: float) -> Path:
    run_dir = work / f"{spec.label}_{result.profile}"
    command = [sys.executable, "-m", "rlrun.cli", f"algo={spec.algo}", f"env={spec.env or env}", f"hardware={result.hardware}",
               f"total_steps={spec.total_steps}", *COMMON, *spec.overrides, f"hydra.run.dir={run_dir}"]
    print(f"\n== {spec.label} {result.profile}: {' '.join(command[1:])}", flush=True)
    log_path = work / f"{spec.label}_{result.profile}.log"
    start = time.perf_counter()
    environ = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    with open(log_path, "w") as log_file:
        # A new session: a timed-out run is killed with its worker processes (A3C, async envs).
        process = subprocess.Popen(command, cwd=work, stdout=log_file, stderr=subprocess.STDOUT, env=environ,
                                   start_new_session=True)
        try:
            code = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()
            code = None
    result.seconds = time.perf_counter() - start
    log_text = log_path.read_text(errors="replace")
    if code is None:
        result.status = f"timed out after {timeout:.0f} s"
    elif code != 0:
        result.status = f"failed (exit {code})"
    else:
        result.status = "ran"
    if code != 0:
        print(f"-- last lines of its output:\n{log_text[-3000:]}", flush=True)
    else:
        print("\n".join(log_text.rstrip().splitlines()[-3:]), flush=True)
    return run_dir


def fmt(value: float, digits: int = 0) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def table(results: dict[tuple[str, str], Result], labels: list[str], slots: tuple[str, str]) -> str:
    gpu, cpu = slots
    width = max(len(label) for label in labels)
    lines = [f"{'run':{width}} | {gpu + ' steps/s':>13} | {cpu + ' steps/s':>13} | {'ratio':>5} | "
             f"{gpu + ' steady':>11} | {cpu + ' steady':>11} | {gpu + ' return':>11} | {cpu + ' return':>11} | "
             f"{gpu + ' s':>6} | {cpu + ' s':>6}",
             "-" * (118 + width)]
    for label in labels:
        g, c = results[(label, gpu)], results[(label, cpu)]
        ratio = g.steps_per_second / c.steps_per_second if finite(g.steps_per_second) and finite(c.steps_per_second) else math.nan
        lines.append(f"{label:{width}} | {fmt(g.steps_per_second):>13} | {fmt(c.steps_per_second):>13} | {fmt(ratio, 2):>5} | "
                     f"{fmt(g.steady_sps):>11} | {fmt(c.steady_sps):>11} | {fmt(g.final_return, 1):>11} | "
                     f"{fmt(c.final_return, 1):>11} | {fmt(g.seconds, 1):>6} | {fmt(c.seconds, 1):>6}")
    return "\n".join(lines)


def load_check(out: Path, timeout: float, expect_cuda: bool) -> tuple[bool, str]:
    """scripts/gpu_check_load.py on the kept checkpoints, in a process that sees no GPU (as on a
    CPU-only machine)."""
    environ = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(REPO / "scripts" / "gpu_check_load.py"), *(["--expect-cuda"] if expect_cuda else []),
               str(out)]
    print(f"\n== load check without a GPU: CUDA_VISIBLE_DEVICES= {' '.join(command[1:])}", flush=True)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=environ)
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s"
    print(done.stdout.rstrip())
    if done.returncode != 0:
        print(done.stderr[-3000:])
    return done.returncode == 0, f"exit {done.returncode}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the table, results and checkpoints")
    parser.add_argument("--cpu-only", action="store_true", help="hardware=cpu in place of hardware=gpu (a rehearsal)")
    parser.add_argument("--only", default=None,
                        help="comma-separated subset of ppo,sac,sac_compiled,ppo_atari,ppo_atari_sampler,"
                             "ppo_atari_fast,ppo_64envs_sampler,a3c (default: all of them; "
                             "with --cpu-only all but sac_compiled)")
    parser.add_argument("--a3c-workers", type=int, default=8, help="A3C actor-learner processes (hardware.workers)")
    parser.add_argument("--sampler-workers", type=int, default=None,
                        help="the *_sampler runs' hardware.workers, in both slots (default: the usable cores, as "
                             "hardware=gpu's workers=auto; capped at the run's num_envs)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply every budget (e.g. 0.1 for a smoke test)")
    parser.add_argument("--budget-seconds", type=float, default=300.0, help="stop starting runs after this long")
    parser.add_argument("--run-timeout", type=float, default=120.0, help="kill one run after this long")
    parser.add_argument("--load-check", action="store_true",
                        help="also load the kept checkpoints here in a process that sees no GPU")
    parser.add_argument("--env", choices=("auto", "HalfCheetah", "Pendulum"), default="auto")
    args = parser.parse_args()
    started = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)

    machine, cuda_ok = describe_machine(args.cpu_only)
    if not args.cpu_only and not cuda_ok:
        return 2
    fallback = args.env == "Pendulum" or (args.env == "auto" and not mujoco_works())
    sampler_workers = args.sampler_workers or len(os.sched_getaffinity(0))
    env, runs = specs(args.a3c_workers, sampler_workers, args.scale, fallback)
    # A --cpu-only rehearsal leaves out what compiles (slower than eager on a CPU, and measured by the tests).
    wanted = args.only.split(",") if args.only else [s.label for s in runs
                                                     if not (args.cpu_only and "algo.compile=true" in s.overrides)]
    unknown = sorted(set(wanted) - {spec.label for spec in runs})
    if unknown:
        print(f"gpu_check: --only names unknown runs {unknown}; choose from {[s.label for s in runs]}", file=sys.stderr)
        return 2
    runs = [spec for spec in runs if spec.label in wanted]
    if any(spec.env == "Pong" for spec in runs) and importlib.util.find_spec("ale_py") is None:
        print("ale-py does not import here: the ppo_atari run is skipped (carry its wheel in the wheel folder)",
              flush=True)
        runs = [spec for spec in runs if spec.env != "Pong"]
    slots = ("gpu", "cpu")
    hardware = {"gpu": "cpu" if args.cpu_only else "gpu", "cpu": "cpu"}
    print(f"\nenv={env}; runs: {', '.join(f'{s.label} {s.total_steps:,} steps' for s in runs)}; "
          f"{'--cpu-only: both slots use hardware=cpu' if args.cpu_only else 'hardware=gpu against hardware=cpu'}",
          flush=True)

    results: dict[tuple[str, str], Result] = {}
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as tmp:
        work = Path(tmp)
        for spec in runs:
            for slot in slots:
                result = results[(spec.label, slot)] = Result(spec.label, slot, hardware[slot])
                if slot == "cpu" and spec.gpu_only:
                    result.status = "not run (compared on the gpu)"
                    continue
                left = args.budget_seconds - (time.perf_counter() - started)
                if left < 20:
                    result.status = "skipped (time budget spent)"
                    continue
                run_dir = run_one(spec, env, result, work, min(args.run_timeout, left))
                learn_from = int(next((o.split("=")[1] for o in spec.overrides if "learning_starts" in o), 0))
                check_run(result, run_dir, spec.total_steps, slot == "gpu" and not args.cpu_only, learn_from)
                last = run_dir / "checkpoints" / "last.pt"
                if slot == "gpu" and last.exists() and spec.keep_checkpoint:
                    kept = args.out / f"{spec.label}_gpu_last.pt"
                    shutil.copyfile(last, kept)
                    result.checkpoint = kept.name
                ok = result.status == "ran" and not result.problems
                print(f"-- {spec.label} {slot}: {'OK' if ok else 'FAILED'}; {result.status}; "
                      f"device {result.device}; {fmt(result.steps_per_second)} steps/s; "
                      f"final return {fmt(result.final_return, 1)}"
                      + "".join(f"\n   problem: {p}" for p in result.problems), flush=True)

    labels = [spec.label for spec in runs]
    print("\n== steps/s (summary.json's steps_per_second: env steps over time inside the algorithm; "
          "steady: mean of metrics.csv's per-row rates after the first row" + (" and SAC's random phase)" if "sac" in labels else ")"))
    print(table(results, labels, slots))
    if ("sac", "gpu") in results and ("sac_compiled", "gpu") in results:
        eager, compiled_run = results[("sac", "gpu")], results[("sac_compiled", "gpu")]
        print(f"sac_compiled against eager sac, both in the gpu slot: {fmt(compiled_run.steady_sps / eager.steady_sps, 2)}x "
              f"steady ({fmt(compiled_run.steady_sps)} vs {fmt(eager.steady_sps)} steps/s), "
              f"{fmt(compiled_run.steps_per_second / eager.steps_per_second, 2)}x overall (compilation included)")
    failed = [f"{r.label} {r.profile}: {r.status}" + "".join(f"; {p}" for p in r.problems)
              for r in results.values() if not (r.status == "ran" or r.status.startswith("not run (")) or r.problems]
    load_ok, load_note = None, "not asked for"
    if args.load_check and any(r.checkpoint for r in results.values()):
        left = args.budget_seconds + 60 - (time.perf_counter() - started)
        load_ok, load_note = load_check(args.out, max(left, 30), expect_cuda=not args.cpu_only)
        if not load_ok:
            failed.append(f"load check without a GPU: {load_note}")
    elapsed = time.perf_counter() - started
    (args.out / "gpu_check.json").write_text(json.dumps({
        "machine": machine, "env": env, "cpu_only": args.cpu_only, "seconds": round(elapsed, 1),
        "load_check": load_note, "failed": failed,
        "results": [r.__dict__ for r in results.values()]}, indent=2, default=str) + "\n")
    print(f"\n{'ALL OK' if not failed else 'FAILED: ' + ' | '.join(failed)} ({elapsed:.0f} s in all; "
          f"results in {args.out})", flush=True)
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
