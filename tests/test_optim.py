"""rlrun.optim against torch.optim: the same numbers to the last bit, the same state_dict format, and
no torch._dynamo import (the reason the module exists)."""

import subprocess
import sys

import pytest
import torch

from rlrun.optim import Adam, RMSprop


def random_gradients(n: int, steps: int, seed: int = 0) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(n, generator=generator) * 10 ** float(torch.randint(-3, 2, (), generator=generator))
            for _ in range(steps)]


def run(optimizer, param: torch.nn.Parameter, gradients: list[torch.Tensor], lr_at=None) -> None:
    for i, g in enumerate(gradients):
        param.grad = g.clone()
        if lr_at is not None:
            optimizer.param_groups[0]["lr"] = lr_at(i)  # a schedule, as PPO's annealing sets it
        optimizer.step()


@pytest.mark.parametrize("weight_decay", [0.0, 1e-2])
def test_adam_equals_torch_fused_adam_bit_for_bit(weight_decay):
    start = torch.randn(300, generator=torch.Generator().manual_seed(1))
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    gradients = random_gradients(300, 40)
    schedule = lambda i: 3e-4 * (1 - i / 40)  # noqa: E731
    run(Adam(ours, lr=3e-4, eps=1e-5, weight_decay=weight_decay), ours, gradients, schedule)
    run(torch.optim.Adam([theirs], lr=3e-4, eps=1e-5, weight_decay=weight_decay, fused=True), theirs, gradients,
        schedule)
    assert torch.equal(ours, theirs)


def test_rmsprop_equals_torch_rmsprop_bit_for_bit():
    start = torch.randn(300, generator=torch.Generator().manual_seed(2))
    ours, theirs = torch.nn.Parameter(start.clone()), torch.nn.Parameter(start.clone())
    gradients = random_gradients(300, 40, seed=3)
    run(RMSprop(ours, lr=7e-4, alpha=0.99, eps=1e-5), ours, gradients)
    run(torch.optim.RMSprop([theirs], lr=7e-4, alpha=0.99, eps=1e-5), theirs, gradients)
    assert torch.equal(ours, theirs)


def test_adam_after_one_step_is_the_hand_computed_update():
    # Step 1: m_hat = g, v_hat = g^2, so theta moves by lr * g / (|g| + eps).
    param = torch.nn.Parameter(torch.tensor([1.0, -2.0]))
    param.grad = torch.tensor([0.5, -4.0])
    Adam(param, lr=0.1, eps=1e-8).step()
    torch.testing.assert_close(param.detach(), torch.tensor([1.0 - 0.1 * 0.5 / (0.5 + 1e-8),
                                                             -2.0 + 0.1 * 4.0 / (4.0 + 1e-8)]))


@pytest.mark.parametrize("ours_first", [True, False])
def test_state_dicts_move_between_rlrun_and_torch_optimizers(ours_first):
    start = torch.randn(50, generator=torch.Generator().manual_seed(4))
    gradients = random_gradients(50, 20, seed=5)
    reference = torch.nn.Parameter(start.clone())
    run(torch.optim.Adam([reference], lr=1e-3, fused=True), reference, gradients)

    param = torch.nn.Parameter(start.clone())
    make = [lambda: Adam(param, lr=1e-3), lambda: torch.optim.Adam([param], lr=1e-3, fused=True)]
    first, second = (make if ours_first else make[::-1])
    optimizer = first()
    run(optimizer, param, gradients[:10])
    saved = optimizer.state_dict()
    resumed = second()
    resumed.load_state_dict(saved)
    run(resumed, param, gradients[10:])
    assert torch.equal(param, reference)


def test_loading_a_state_dict_keeps_a_shared_state_shared():
    # A3C's workers hold one optimiser state in shared memory; loading a checkpoint must write into it.
    param = torch.nn.Parameter(torch.zeros(4))
    shared = Adam.initial_state(param)
    optimizer = Adam(param, lr=1e-3, state=shared)
    saved = {"state": {0: {"step": torch.tensor(7.0), "exp_avg": torch.ones(4), "exp_avg_sq": torch.full((4,), 2.0)}},
             "param_groups": [{"lr": 5e-4, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0, "params": [0]}]}
    optimizer.load_state_dict(saved)
    assert shared["step"].item() == 7.0 and torch.equal(shared["exp_avg_sq"], torch.full((4,), 2.0))
    assert optimizer.param_groups[0]["lr"] == 5e-4


def test_building_and_stepping_does_not_import_torch_dynamo():
    # torch.optim imports torch._dynamo on the first optimiser built (0.8-2 s); rlrun.optim must not.
    code = ("import sys, torch\n"
            "from rlrun.optim import Adam, RMSprop\n"
            "p = torch.nn.Parameter(torch.zeros(3)); p.grad = torch.ones(3)\n"
            "for cls in (Adam, RMSprop):\n"
            "    o = cls(p, lr=0.1); o.step(); o.load_state_dict(o.state_dict())\n"
            "print('torch._dynamo' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
