"""algo.compile=true: TD3's and SAC's updates through torch.compile compute what the eager updates do
(on this CPU; the CUDA-graph mode a GPU gets is not exercised here). Compiling takes a while, hence slow."""

from __future__ import annotations

import functools

import pytest
import torch
from test_offpolicy_continuous_math import assert_same_modules, fill, make


@functools.cache
def compiler_missing() -> str | None:
    """Why torch.compile cannot run here (Inductor needs a working C++ compiler), or None."""
    try:
        torch.compile(lambda x: torch.relu(x) * 2)(torch.randn(4))
    except Exception as error:  # noqa: BLE001 - any failure of the toolchain means: skip
        return f"torch.compile unavailable: {type(error).__name__}: {str(error).splitlines()[0][:200]}"
    return None


@pytest.mark.slow
@pytest.mark.parametrize("name", ["td3", "sac"])
def test_a_compiled_update_gives_the_eager_update(name):
    if compiler_missing():
        pytest.skip(compiler_missing())
    eager, compiled = make(name), make(name, compile=True)
    for algo in (eager, compiled):
        fill(algo, 300)  # the same seed: the same transitions, then the same minibatches and noise
    for _ in range(4):  # TD3: two critic-only updates and two with the delayed actor and targets
        metrics = [algo.train_step(algo.replay.sample(64, algo.generator, algo.device)) for algo in (eager, compiled)]
        for algo in (eager, compiled):
            algo.gradient_updates += 1
        assert metrics[0].keys() == metrics[1].keys()
        for key, value in metrics[0].items():
            torch.testing.assert_close(metrics[1][key], value, rtol=1e-5, atol=1e-6, msg=key)
    names = ["actor", "critic", "critic_target"] + (["actor_target"] if name == "td3" else [])
    for module in names:
        assert_same_modules(getattr(compiled, module), getattr(eager, module))
    if name == "sac":
        torch.testing.assert_close(compiled.log_alpha, eager.log_alpha, rtol=1e-5, atol=1e-6)
