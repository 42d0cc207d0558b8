"""Backpropagation written out for the plain MLPs of the off-policy updates (DQN's Q network, TD3's
critics and actor): the chain rule, layer by layer, into the flat gradient.

On these small networks on a CPU, autograd's graph (its nodes, the gradient buffers it allocates and
then adds into the flat gradient, the transposed copies of a stacked weight's gradient) costs a fifth
of an update or more; the products themselves are the same. The derivatives here are computed by the
kernels autograd itself calls (threshold_backward for ReLU, tanh_backward, elu_backward), in place on
the incoming gradient, so the gradients are autograd's to rounding (the tests compare them).

A layer is y = x W^T + b; its backward writes dW = grad_y^T x, db = sum over the batch of grad_y and
returns dx = grad_y W. A stacked layer (TwinQ's two critics, weights [2, out, in]) is the same per
critic, as batched products.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# Each activation in place on a fresh tensor (the product before it keeps nothing its backward needs).
IN_PLACE = {nn.ReLU: torch.relu_, nn.Tanh: torch.tanh_, nn.ELU: F.elu_}
ACTIVATION_TYPES = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU}


def activation_backward_(activation: type[nn.Module], grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """grad * activation'(z), in place on `grad`, from the activation's output `out` (what autograd's
    backward of the in-place activations computes, with its kernels)."""
    if activation is nn.ReLU:
        return torch.ops.aten.threshold_backward.grad_input(grad, out, 0, grad_input=grad)
    if activation is nn.Tanh:
        return torch.ops.aten.tanh_backward.grad_input(grad, out, grad_input=grad)
    if activation is nn.ELU:  # nn.ELU's alpha 1, from the output (elu(z) = e^z - 1 for z <= 0)
        return torch.ops.aten.elu_backward.grad_input(grad, 1.0, 1, 1, True, out, grad_input=grad)
    raise ValueError(f"no written-out derivative for {activation.__name__}")


def affine_backward(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, grad_out: torch.Tensor,
                    need_input_grad: bool = True) -> torch.Tensor | None:
    """y = x W^T + b: write dW = grad_out^T x into weight.grad and db = sum_batch grad_out into
    bias.grad (overwriting them); return dx = grad_out W."""
    weight_grad(weight, x, grad_out)
    torch.sum(grad_out, 0, out=bias.grad)
    return input_grad(grad_out, weight) if need_input_grad else None


def stacked_affine_backward(weight: torch.Tensor, bias: torch.Tensor, x: torch.Tensor, grad_out: torch.Tensor,
                            need_input_grad: bool = True) -> torch.Tensor | None:
    """affine_backward for K stacked layers: weight [K, out, in], bias [K, 1, out], x [K, batch, in]
    (an expanded input shared by the K layers too), grad_out [K, batch, out]."""
    weight_grad(weight, x, grad_out)
    torch.sum(grad_out, -2, keepdim=True, out=bias.grad)
    return input_grad(grad_out, weight) if need_input_grad else None


def weight_grad(weight: torch.Tensor, x: torch.Tensor, grad_out: torch.Tensor) -> None:
    """weight.grad = grad_out^T x (per stacked layer)."""
    if x.shape[-1] < grad_out.shape[-1]:
        # A layer narrower at its input (the first, on the observation): MKL computes the transposed
        # product x^T grad_out, whose rows are the long side, about twice as fast (measured on the 2-core
        # EPYC: 64x4 -> 256, 20 -> 8 us; TD3's critics, 2 x 23 -> 256, 177 -> 93 us); copied transposed.
        weight.grad.copy_(torch.matmul(x.transpose(-1, -2), grad_out).transpose(-1, -2))
    else:
        torch.matmul(grad_out.transpose(-1, -2), x, out=weight.grad)


def input_grad(grad_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """dx = grad_out W (per stacked layer). For a layer with one output (a critic's Q) this is an outer
    product: a broadcast multiply, the same numbers as the matrix product, 3x faster here."""
    if weight.shape[-2] == 1:
        return grad_out * weight
    return torch.matmul(grad_out, weight)


class SequentialMLP:
    """An nn.Sequential of Linear layers, each optionally followed by an activation (nn.Flatten allowed
    first), computed through torch's functions with each layer's input kept, and differentiated by hand.
    `supports(net)` says whether a network has that form (batch norm, for one, is left to autograd)."""

    def __init__(self, net: nn.Sequential):
        if not self.supports(net):
            raise ValueError("SequentialMLP takes Linear layers and ReLU/Tanh/ELU activations only")
        self.flatten = isinstance(net[0], nn.Flatten)
        self.layers: list[tuple[nn.Linear, type[nn.Module] | None]] = []
        for module in net:
            if isinstance(module, nn.Linear):
                self.layers.append((module, None))
            elif type(module) in IN_PLACE:
                self.layers[-1] = (self.layers[-1][0], type(module))

    @staticmethod
    def supports(net: nn.Module) -> bool:
        if not isinstance(net, nn.Sequential):
            return False
        modules = list(net)[1:] if len(net) and isinstance(net[0], nn.Flatten) else list(net)
        if not modules or not isinstance(modules[0], nn.Linear):
            return False
        for before, module in zip(modules[:-1], modules[1:]):
            if not (isinstance(module, nn.Linear) or (type(module) in IN_PLACE and isinstance(before, nn.Linear))):
                return False
        return all(not isinstance(m, nn.ELU) or m.alpha == 1.0 for m in modules)

    def forward_saving(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The output and each layer's input, then the last output (what `backward` needs); under
        torch.no_grad."""
        if self.flatten:
            x = x.flatten(1)  # not reshape(len(x), -1): a traced export would fix the batch size
        inputs = []
        for linear, activation in self.layers:
            inputs.append(x)
            x = F.linear(x, linear.weight, linear.bias)
            if activation is not None:
                x = IN_PLACE[activation](x)
        inputs.append(x)
        return x, inputs

    def backward(self, inputs: list[torch.Tensor], grad: torch.Tensor, need_input_grad: bool = False
                 ) -> torch.Tensor | None:
        """Write every layer's weight and bias gradients given grad = d loss / d output (consumed: it is
        overwritten); return d loss / d input if asked."""
        for k in range(len(self.layers) - 1, -1, -1):
            linear, activation = self.layers[k]
            if activation is not None:
                grad = activation_backward_(activation, grad, inputs[k + 1])
            grad = affine_backward(linear.weight, linear.bias, inputs[k], grad, need_input_grad or k > 0)
        return grad
