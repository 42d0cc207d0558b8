"""An ActorCritic's two MLPs evaluated as one network, with the chain rule for the pair written out.

PPO and A2C evaluate pi(.|s) and V(s) on the same minibatch of states. Two separate 64x64 MLPs on a
CPU cost six small matmuls forward and about twelve backward, each paying more in dispatch (a few
microseconds) than in arithmetic, and an autograd node per op. Here the hidden layers of actor and
critic are stacked along a leading axis of size 2, so each hidden layer is one `torch.baddbmm` for
both networks, and the pair is one autograd node whose backward is textbook backpropagation through
y = f(x W^T + b):

    dL/dz = dL/dy * f'(z)   (f' read from y)     dL/dW = dL/dz^T x     dL/db = sum_batch dL/dz
    dL/dx = dL/dz W

The parameters stay those of the ActorCritic's nn.Linear layers, so checkpoints, the numpy acting
copy and ActorCritic.dist_params / .value see the same numbers; they become views of one flat buffer
laid out layer by layer as [actor, critic] stacks. That buffer and its gradient (also one buffer) are
what the optimiser, the gradient clip and this backward work on. tests/test_ppo.py checks the
function and its gradient against the plain modules, and gradcheck checks the backward.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

from rlrun.nets.actor_critic import ActorCritic

# Each activation with its derivative, written in terms of its output y = f(x) (saved by forward).
ACTIVATIONS = {
    nn.Tanh: (torch.tanh, lambda y: 1 - y * y),
    nn.ReLU: (torch.relu, lambda y: (y > 0).to(y.dtype)),
    nn.ELU: (F.elu, lambda y: torch.where(y > 0, 1.0, y + 1)),  # d/dx (e^x - 1) = e^x = y + 1 for x <= 0
}


class MergedActorCritic:
    """`merged(obs)` returns (ActorCritic.dist_params(obs), ActorCritic.value(obs)) in one pass.

    Construction re-seats `net`'s parameters (moved to their device beforehand) into `self.flat`, an
    nn.Parameter with its gradient allocated: give `flat` to the optimiser and zero its gradient with
    `flat.grad.zero_()` (never set it to None, which would detach the per-layer gradient views).
    """

    def __init__(self, net: ActorCritic):
        actor = [m for m in net.actor if isinstance(m, nn.Linear)]
        critic = [m for m in net.critic if isinstance(m, nn.Linear)]
        if {id(m) for m in actor} & {id(m) for m in critic}:
            raise ValueError("MergedActorCritic needs separate actor and critic torsos (no shared_torso)")
        self.net = net
        self.activation, self.derivative = ACTIVATIONS[type(net.actor[1])]
        # Layout: per hidden layer the actor's then the critic's weight, then both biases; the heads;
        # log std. Consecutive equal shapes make each hidden layer's pair a (2, ...) stack.
        ordered = [p for a, c in zip(actor[:-1], critic[:-1]) for p in (a.weight, c.weight, a.bias, c.bias)]
        ordered += [actor[-1].weight, actor[-1].bias, critic[-1].weight, critic[-1].bias]
        ordered += [] if net.log_std is None else [net.log_std]
        if len(ordered) != len(list(net.parameters())):
            raise ValueError("MergedActorCritic: the network has parameters outside its Linear layers and log std")
        self.flat = nn.Parameter(torch.cat([p.detach().reshape(-1) for p in ordered]))
        # Where each flat entry sits in a buffer laid out in net.parameters() order (nets/flat.py's).
        offsets, start = {}, 0
        for p in net.parameters():
            offsets[id(p)], start = start, start + p.numel()
        self.from_module_order = torch.cat([torch.arange(offsets[id(p)], offsets[id(p)] + p.numel()) for p in ordered])
        self.flat.grad = torch.zeros_like(self.flat)
        self._grad = torch.zeros_like(self.flat)  # what backward fills, layer by layer
        params, grads = self._views(self.flat.data), self._views(self._grad)
        # (weights (2, out, in), biases (2, 1, out)) per hidden layer, the heads' (weight, bias), log std.
        self.hidden, self.heads, self.log_std = params
        self.grad_hidden, self.grad_heads, self.grad_log_std = grads
        # The same weights transposed (views: they follow the optimiser's in-place steps), as matmuls read them.
        self.hidden_t = [(weight.transpose(1, 2), bias) for weight, bias in self.hidden]
        self.heads_t = [(weight.t(), bias) for weight, bias in self.heads]
        flat_grads = self._views(self.flat.grad)
        for (weight, bias), (grad_weight, grad_bias), a, c in zip(self.hidden, flat_grads[0], actor, critic):
            for k, layer in enumerate((a, c)):
                layer.weight.data, layer.weight.grad = weight[k], grad_weight[k]
                layer.bias.data, layer.bias.grad = bias[k, 0], grad_bias[k, 0]
        for (weight, bias), (grad_weight, grad_bias), layer in zip(self.heads, flat_grads[1], (actor[-1], critic[-1])):
            layer.weight.data, layer.weight.grad = weight, grad_weight
            layer.bias.data, layer.bias.grad = bias, grad_bias
        if net.log_std is not None:
            net.log_std.data, net.log_std.grad = self.log_std, flat_grads[2]

    def _views(self, buffer: torch.Tensor) -> tuple[list, list, torch.Tensor | None]:
        """`buffer` cut into the layout's tensors: hidden [(W (2, out, in), b (2, 1, out))], heads
        [(W, b)] for actor and critic, log std."""
        net, offset = self.net, 0

        def take(*shape: int) -> torch.Tensor:
            nonlocal offset
            n = torch.Size(shape).numel()
            offset += n
            return buffer[offset - n : offset].view(shape)

        linears = [[m for m in seq if isinstance(m, nn.Linear)] for seq in (net.actor, net.critic)]
        hidden = [(take(2, *layer.weight.shape), take(2, 1, layer.bias.shape[0])) for layer in linears[0][:-1]]
        heads = [(take(*seq[-1].weight.shape), take(seq[-1].bias.shape[0])) for seq in linears]
        log_std = None if net.log_std is None else take(*net.log_std.shape)
        return hidden, heads, log_std

    def optimizer_state_from_module_order(self, state_dict: dict) -> dict:
        """An optimiser state_dict of a flat buffer laid out in net.parameters() order (as checkpoints
        held before this layout) with its per-entry statistics moved to this layout."""
        state = {key: value[self.from_module_order] if torch.is_tensor(value) and value.dim() == 1 else value
                 for key, value in state_dict["state"].get(0, {}).items()}
        return {**state_dict, "state": {0: state} if state else {}}

    def __call__(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """pi's distribution parameters (B, num_params) and V(s) (B,) for a batch of states (B, obs_dim)."""
        return _ActorCriticFunction.apply(obs, self.flat, self)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """Distribution parameters, values and each hidden layer's output (2, B, width)."""
        x = obs.expand(2, *obs.shape)  # both stacks read the same states
        hidden = []
        for weight_t, bias in self.hidden_t:
            x = self.activation(torch.baddbmm(bias, x, weight_t))
            hidden.append(x)
        (actor_weight_t, actor_bias), (critic_weight_t, critic_bias) = self.heads_t
        out = torch.addmm(actor_bias, x[0], actor_weight_t)
        values = torch.addmm(critic_bias, x[1], critic_weight_t)[:, 0]
        if self.net.use_sde:  # gSDE: the log std of each state from its features (actor's last hidden layer)
            params = self.net.dist.params(out, x[0], self.log_std)
        else:
            params = out if self.log_std is None else torch.cat([out, self.log_std.expand_as(out)], -1)
        return params, values, hidden

    def backward(self, obs: torch.Tensor, hidden: list[torch.Tensor], grad_params: torch.Tensor,
                 grad_values: torch.Tensor) -> torch.Tensor:
        """dL/dflat from dL/d(params) and dL/d(values): backpropagation through both networks."""
        (actor_weight, _), (critic_weight, _) = self.heads
        (grad_actor_weight, grad_actor_bias), (grad_critic_weight, grad_critic_bias) = self.grad_heads
        grad_out = grad_params
        if self.net.use_sde:
            # gSDE's log sigma: through 1/2 log(phi^2 sigma^2 + eps) by autograd, with phi a constant
            # (detached, as in the forward). A few small ops; the layers' chain rule stays written out.
            action_dim = self.net.dist.action_dim
            grad_out = grad_params[:, :action_dim]
            with torch.enable_grad():
                log_sigma = self.log_std.detach().requires_grad_()
                log_std = self.net.dist.state_log_std(hidden[-1][0], log_sigma)
                (grad_log_sigma,) = torch.autograd.grad(log_std, log_sigma, grad_params[:, action_dim:])
            self.grad_log_std.copy_(grad_log_sigma)
        elif self.log_std is not None:
            # The state-independent log std is broadcast over the batch: its gradient sums over it.
            grad_out = grad_params[:, : self.log_std.shape[0]]
            torch.sum(grad_params[:, self.log_std.shape[0] :], 0, out=self.grad_log_std)
        grad_v = grad_values[:, None]
        top = hidden[-1]
        torch.mm(grad_out.t(), top[0], out=grad_actor_weight)
        torch.sum(grad_out, 0, out=grad_actor_bias)
        torch.mm(grad_v.t(), top[1], out=grad_critic_weight)
        torch.sum(grad_v, 0, out=grad_critic_bias)
        grad_h = torch.stack([grad_out @ actor_weight, grad_v @ critic_weight])
        for layer in reversed(range(len(self.hidden))):
            grad_z = grad_h * self.derivative(hidden[layer])
            inputs = hidden[layer - 1] if layer > 0 else obs.expand(2, *obs.shape)
            grad_weight, grad_bias = self.grad_hidden[layer]
            torch.bmm(grad_z.transpose(1, 2), inputs, out=grad_weight)
            torch.sum(grad_z, 1, keepdim=True, out=grad_bias)
            if layer > 0:
                grad_h = torch.bmm(grad_z, self.hidden[layer][0])
        return self._grad.clone()  # autograd adds it into flat.grad; the buffer is refilled next time


class _ActorCriticFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, obs: torch.Tensor, flat: torch.Tensor, merged: MergedActorCritic):
        params, values, hidden = merged.forward(obs)
        ctx.merged = merged
        # flat is saved so that an in-place change of the parameters before backward is an error.
        ctx.save_for_backward(obs, flat, *hidden)
        return params, values

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_params: torch.Tensor, grad_values: torch.Tensor):
        obs, _, *hidden = ctx.saved_tensors
        return None, ctx.merged.backward(obs, hidden, grad_params, grad_values), None
