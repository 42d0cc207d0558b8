"""Adam and RMSprop for one flat parameter, computing exactly what torch.optim computes.

Every rlrun algorithm keeps its parameters as views of one flat tensor (nets/flat.py), so an optimiser
step is a few tensor operations. torch.optim wraps those operations in machinery rlrun does not use
(hooks, param groups, differentiable and compiled modes), and that machinery imports torch._dynamo the
first time an optimiser is built or stepped: 0.8-2 s per process on a 2-core machine, which every run
of a sweep pays before its first step. These two classes run the same kernels (torch's fused Adam
kernel; RMSprop's single-tensor formula, op for op), so the numbers are torch's to the last bit, and
they read and write torch.optim's state_dict format, so checkpoints move between the two.

`param_groups[0]["lr"]` is the learning rate, as in torch.optim, for schedules.
"""

from __future__ import annotations

import torch


class _FlatOptimizer:
    defaults: dict[str, object]
    state_keys: tuple[str, ...]
    # The rest of the group torch.optim writes, describing what these classes compute, so that a torch
    # optimiser loading our state_dict runs the same implementation (e.g. Adam's fused kernel).
    torch_group: dict[str, object] = {"maximize": False, "foreach": None, "capturable": False,
                                      "differentiable": False}

    def __init__(self, param: torch.Tensor, state: dict[str, torch.Tensor] | None = None, **hyperparameters):
        self.param = param
        self.param_groups = [{**self.defaults, **hyperparameters}]
        # `state` may be given: A3C's workers share one state in shared memory (Hogwild).
        self.state = state if state is not None else self.initial_state(param)

    @classmethod
    def initial_state(cls, param: torch.Tensor) -> dict[str, torch.Tensor]:
        # torch.optim's layout: a float32 step count (beside the parameter for fused Adam) and
        # one zero buffer per statistic.
        state = {"step": torch.zeros((), dtype=torch.float32, device=cls.step_device(param))}
        for key in cls.state_keys:
            state[key] = torch.zeros_like(param, memory_format=torch.preserve_format)
        return state

    @staticmethod
    def step_device(param: torch.Tensor) -> torch.device:
        return torch.device("cpu")

    def zero_grad(self, set_to_none: bool = False) -> None:
        """Zero the gradient in place (the flat gradient's views must stay its views: never None)."""
        if self.param.grad is not None:
            self.param.grad.zero_()

    def state_dict(self) -> dict:
        """torch.optim.Optimizer.state_dict()'s format for one group holding one parameter."""
        return {"state": {0: dict(self.state)},
                "param_groups": [{**self.torch_group, **self.param_groups[0], "params": [0]}]}

    def load_state_dict(self, state_dict: dict) -> None:
        group = {k: v for k, v in state_dict["param_groups"][0].items() if k != "params"}
        saved = state_dict["state"].get(0, {})
        with torch.no_grad():
            for key, value in self.initial_state(self.param).items():
                # Copy into the existing tensors: a shared state (A3C) stays shared.
                self.state.setdefault(key, value).copy_(saved.get(key, value))
        self.param_groups[0].update({k: group[k] for k in self.defaults if k in group})


class Adam(_FlatOptimizer):
    """torch.optim.Adam(fused=True) for one parameter: m <- b1 m + (1 - b1) g, v <- b2 v + (1 - b2) g^2,
    theta <- theta - lr m_hat / (sqrt(v_hat) + eps), with weight decay added to g (L2, coupled)."""

    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    state_keys = ("exp_avg", "exp_avg_sq")
    torch_group = {**_FlatOptimizer.torch_group, "amsgrad": False, "fused": True, "decoupled_weight_decay": False}

    @staticmethod
    def step_device(param: torch.Tensor) -> torch.device:
        return param.device  # the fused kernel reads the step count beside the parameter

    @torch.no_grad()
    def step(self) -> None:
        group, state = self.param_groups[0], self.state
        beta1, beta2 = group["betas"]
        state["step"] += 1
        torch._fused_adam_([self.param], [self.param.grad], [state["exp_avg"]], [state["exp_avg_sq"]], [],
                           [state["step"]], lr=group["lr"], beta1=beta1, beta2=beta2,
                           weight_decay=group["weight_decay"], eps=group["eps"], amsgrad=False, maximize=False)


class RMSprop(_FlatOptimizer):
    """torch.optim.RMSprop (not centred, no momentum): v <- alpha v + (1 - alpha) g^2 from v = 0,
    theta <- theta - lr g / (sqrt(v) + eps); torch's single-tensor implementation op for op."""

    defaults = {"lr": 1e-2, "alpha": 0.99, "eps": 1e-8}
    state_keys = ("square_avg",)
    torch_group = {**_FlatOptimizer.torch_group, "momentum": 0, "centered": False}

    @torch.no_grad()
    def step(self) -> None:
        group, state, grad = self.param_groups[0], self.state, self.param.grad
        state["step"] += 1
        square_avg = state["square_avg"]
        square_avg.mul_(group["alpha"]).addcmul_(grad, grad, value=1 - group["alpha"])
        self.param.addcdiv_(grad, square_avg.sqrt().add_(group["eps"]), value=-group["lr"])
