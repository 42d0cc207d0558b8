"""REINFORCE, A2C, A3C and TRPO learn: the tuned settings of conf/tuned/<algo>_<env>.yaml, through the real CLI.

Every bar holds on every seed measured, with a margin: another CPU or BLAS rounds differently and moves a
run as much as a change of seed does, so a bar that only one seed clears fails on someone else's machine.
Each case's comment quotes `python scripts/seed_table.py --cases <case> --seeds 0-4` (measured 2026-12-07
on the 2-core AMD EPYC with AVX-512 kernels). Where an algorithm's last evaluation swings by nature
(REINFORCE's Monte-Carlo gradient at a constant step size), the test asserts what is robust: the best
evaluation reaches the bar, and the last one stays far above a broken learner's. A random policy scores
about 20 on CartPole-v1 and -1200 on Pendulum-v1; a swing-up that holds the pendulum scores about -150.
"""

from __future__ import annotations

import json
import math

import pytest

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("algo, env, final_bar, best_bar", [
    # Seeds 0-4 final 500/435/500/446/500, best 500 each: the final bar keeps a margin of 135 below the
    # lowest; the best evaluation of every seed is 500.
    ("reinforce", "CartPole", 300.0, 475.0),
    # Seeds 0-4 final 500 each (and seeds 0-19 in conf/tuned/a2c_CartPole.yaml's measurement): every seed
    # evaluates at 500 from 150k steps on, 50k steps before the budget ends.
    ("a2c", "CartPole", 475.0, 475.0),
    # Seeds 0-4 final 500 each.
    ("trpo", "CartPole", 475.0, 475.0),
    # A3C with one worker process (reproducible; with several, the OS interleaves their updates): seeds 0-4
    # all reach 500, first at 60k/160k/40k/100k/40k of 200k steps, and all end at 500, but seed 1 was at 142 one
    # evaluation before the end: the best evaluation is what holds (docs/benchmarks/value-methods.md).
    ("a3c", "CartPole", -math.inf, 475.0),
    # gSDE at RL Zoo's settings: seeds 100-104 final -154/-165/-153/-154/-180, seeds 0 and 2 -105/-127 (docs/gsde.md):
    # a margin of 220 below the lowest.
    ("trpo", "Pendulum", -400.0, -400.0),
    # gSDE, 16 envs (docs/gsde.md): seeds 100-109 final -160/-190/-173/-204/-183/-191/-161/-184/-231/-177, seeds 0
    # and 2 -137/-148: a margin of 169 below the lowest of 12 seeds. (Without gSDE one seed in three cleared -400.)
    ("a2c", "Pendulum", -400.0, -400.0),
])
def test_onpolicy_algorithm_reaches_the_bar(rlrun, tmp_path, algo, env, final_bar, best_bar):
    run_dir = tmp_path / "run"
    workers = ["hardware.workers=1"] if algo == "a3c" else []
    result = rlrun(f"algo={algo}", f"env={env}", "seed=0", "logger=csv", "hardware=cpu", *workers, cwd=tmp_path,
                   run_dir=run_dir, timeout=900)
    assert result.returncode == 0, result.describe()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["final_eval_mean_return"] >= final_bar, summary
    assert summary["best_eval_mean_return"] >= best_bar, summary
