"""One contiguous buffer for all parameters of a module and one for all their gradients.

Small networks spend most of an update in per-tensor overhead: a gradient-norm clip and an Adam step
are a few ops per parameter tensor. With every parameter (and gradient) a view into one flat tensor,
clipping is one norm and one multiply, and fused Adam updates one tensor. The mathematics is
unchanged: autograd still accumulates each gradient into its own (viewed) slot.
"""

from __future__ import annotations

import torch
from torch import nn


def flatten_parameters(module: nn.Module) -> nn.Parameter:
    """Re-seat `module`'s parameters and gradients as views of one flat parameter; return it.

    Give the returned parameter to the optimiser, zero gradients with `flat.grad.zero_()` (never
    set them to None, which would detach the views) and move the module to its device beforehand.
    """
    params = list(module.parameters())
    flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in params]))
    flat.grad = torch.zeros_like(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.data = flat.data[offset : offset + n].view_as(p)
        p.grad = flat.grad[offset : offset + n].view_as(p)
        offset += n
    return flat


def clip_grad_norm_(flat: nn.Parameter, max_norm: float) -> torch.Tensor:
    """Scale the gradient so its global L2 norm is at most `max_norm` (torch.nn.utils.clip_grad_norm_'s
    formula, on one tensor); returns the norm before clipping, as a tensor (no host sync)."""
    norm = torch.linalg.vector_norm(flat.grad)
    flat.grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))
    return norm
