"""Frozen numpy copies of MLP parameters, for acting one environment step at a time.

A torch forward on a batch of one costs tens of microseconds of dispatch for microseconds of
arithmetic; the same layers in numpy cost a few microseconds each. An on-policy rollout acts with
fixed parameters, so a copy taken after each update computes exactly the learner's function.
"""

from __future__ import annotations

import numpy as np
from torch import nn

ACTIVATIONS = {
    nn.Tanh: np.tanh,
    nn.ReLU: lambda x: np.maximum(x, 0),
    nn.ELU: lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0))),
}

Layer = tuple[np.ndarray, np.ndarray]  # (W^T as (in, out), b): y = x W^T + b


def numpy_layers(module: nn.Sequential) -> tuple[list[Layer], object]:
    """The current parameters of an nn.Sequential of Linear layers and one kind of activation, as
    numpy copies, and that activation."""
    layers = [(m.weight.detach().cpu().numpy().T.copy(), m.bias.detach().cpu().numpy().copy())
              for m in module if isinstance(m, nn.Linear)]
    activations = {type(m) for m in module if not isinstance(m, nn.Linear)}
    if len(activations) > 1:
        raise ValueError(f"numpy_layers takes one kind of activation (got {activations})")
    return layers, ACTIVATIONS[activations.pop()] if activations else None
