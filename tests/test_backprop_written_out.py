"""The backward passes written out (rlrun.nets.backprop, TwinQ.backward, TwinQ.q1_action_grad,
DeterministicActor.backward, TD3's updates) against autograd's gradients of the same functions."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import load_conf
from test_offpolicy_continuous_math import fill, make
from torch import nn

from rlrun.algos.td3 import TD3
from rlrun.hardware import Hardware
from rlrun.nets import network_config
from rlrun.nets.backprop import SequentialMLP, activation_backward_
from rlrun.nets.continuous import DeterministicActor, TwinQ
from rlrun.nets.flat import flatten_parameters

ACTIVATIONS = ["relu", "tanh", "elu"]


def mlp_config(activation: str, **overrides):
    settings = {"hidden_sizes": [16, 8], "activation": activation, **overrides}
    return network_config(load_conf("network", "mlp", **settings))


def autograd_grads(module: nn.Module, loss: torch.Tensor) -> list[torch.Tensor]:
    return [g.clone() for g in torch.autograd.grad(loss, list(module.parameters()))]


@pytest.mark.parametrize("activation", [nn.ReLU, nn.Tanh, nn.ELU])
def test_activation_derivative_from_the_output_is_autograds(activation):
    z = torch.randn(64, 8, dtype=torch.float64, requires_grad=True)
    out = activation()(z)
    grad = torch.randn(64, 8, dtype=torch.float64)
    (expected,) = torch.autograd.grad(out, z, grad)
    torch.testing.assert_close(activation_backward_(activation, grad.clone(), out.detach()), expected)


def test_sequential_mlp_refuses_batch_norm_and_takes_plain_layers():
    assert SequentialMLP.supports(nn.Sequential(nn.Flatten(), nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)))
    assert not SequentialMLP.supports(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2)))
    assert not SequentialMLP.supports(nn.Sequential(nn.Linear(3, 4), nn.ELU(alpha=0.5), nn.Linear(4, 2)))


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_twin_q_backward_gives_autograds_gradients_of_both_critics(activation):
    torch.manual_seed(0)
    twin = TwinQ(5, 3, mlp_config(activation))
    flat = flatten_parameters(twin)
    obs, action, grad_q = torch.randn(32, 5), torch.randn(32, 3), torch.randn(2, 32)
    expected = autograd_grads(twin, (twin(obs, action) * grad_q).sum())
    with torch.no_grad():
        flat.grad.fill_(7.0)  # overwritten, not added to
        q, saved = twin.forward_saving(obs, action)
        twin.backward(saved, grad_q.clone())
    torch.testing.assert_close(q, twin(obs, action))
    for name, p, g in zip(dict(twin.named_parameters()), twin.parameters(), expected, strict=True):
        torch.testing.assert_close(p.grad, g, rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_q1_action_gradient_is_autograds_with_the_critic_weights_constant(activation):
    torch.manual_seed(1)
    twin = TwinQ(5, 3, mlp_config(activation))
    obs, grad_q1 = torch.randn(32, 5), torch.randn(32)
    action = torch.randn(32, 3, requires_grad=True)
    (expected,) = torch.autograd.grad((twin.q1(obs, action) * grad_q1).sum(), action)
    with torch.no_grad():
        q1, saved = twin.q1_saving(obs, action)
        grad_action = twin.q1_action_grad(saved, grad_q1)
    torch.testing.assert_close(q1, twin(obs, action)[0])
    torch.testing.assert_close(grad_action, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_deterministic_actor_backward_is_autograds_through_tanh_and_the_bounds(activation):
    torch.manual_seed(2)
    space = gym.spaces.Box(np.array([-2.0, 0.0], np.float32), np.array([2.0, 1.0], np.float32))
    actor = DeterministicActor(5, space, mlp_config(activation))
    flat = flatten_parameters(actor)
    obs, grad_action = torch.randn(32, 5), torch.randn(32, 2)
    expected = autograd_grads(actor, (actor(obs) * grad_action).sum())
    with torch.no_grad():
        action, saved = actor.forward_saving(obs)
        actor.backward(saved, grad_action.clone())
    torch.testing.assert_close(action, actor(obs))
    torch.testing.assert_close(flat.grad, torch.cat([g.reshape(-1) for g in expected]), rtol=1e-5, atol=1e-6)


def test_written_out_backward_is_used_only_without_batch_norm_or_compile():
    assert make("td3").manual_backward
    assert not make("td3", network={"hidden_sizes": [16, 16], "batch_norm": True}).manual_backward
    assert not make("td3", compile=True).manual_backward


CUDA = pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA"))


@pytest.mark.parametrize("device", ["cpu", CUDA])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_td3_written_out_updates_equal_autograds(activation, device):
    def build():
        algo = make("td3", policy_delay=2, network={"hidden_sizes": [16, 16], "activation": activation})
        if device == "cpu":
            return algo
        hardware = Hardware(torch.device(device), 1, "sync", 1)
        return TD3(algo.cfg, algo.env, mlp_config(activation, hidden_sizes=[16, 16]), hardware, 0, 10_000)

    by_hand, by_autograd = build(), build()
    by_autograd.manual_backward = False
    assert by_hand.manual_backward
    assert_updates_agree(by_hand, by_autograd, 4)  # critic and actor updates, then a critic-only one, twice


@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_sac_written_out_critic_update_equals_autograds(activation):
    # SAC's critics (eq. 5, with its 1/2) through rlrun.nets.backprop, against the same update through
    # autograd: losses, parameters, gradients and targets agree over a few updates.
    by_hand, by_autograd = (make("sac", network={"hidden_sizes": [16, 16], "activation": activation})
                            for _ in range(2))
    by_autograd.manual_critic_backward = False
    assert by_hand.manual_critic_backward
    assert_updates_agree(by_hand, by_autograd, 3)


def assert_updates_agree(by_hand, by_autograd, updates: int) -> None:
    """Fill both algorithms' replays alike, then take `updates` train steps on the same minibatches:
    metrics, parameters, gradients and target networks agree to rounding after each."""
    for algo in (by_hand, by_autograd):
        fill(algo, 300)  # the same transitions, and the same generator state after them
    for _ in range(updates):
        batch = by_hand.replay.sample(64, by_hand.generator, by_hand.device)
        batch_autograd = by_autograd.replay.sample(64, by_autograd.generator, by_autograd.device)
        assert all(torch.equal(value, batch_autograd[key]) for key, value in batch.items())
        # Each draws its update noise from its own generator, in the same state.
        hand, auto = by_hand.train_step(batch), by_autograd.train_step(batch_autograd)
        for algo in (by_hand, by_autograd):
            algo.gradient_updates += 1
        assert hand.keys() == auto.keys()
        for key in auto:
            torch.testing.assert_close(hand[key], auto[key], rtol=1e-5, atol=1e-6, msg=key)
        for name in ("actor_flat", "critic_flat"):
            torch.testing.assert_close(getattr(by_hand, name), getattr(by_autograd, name), rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(getattr(by_hand, name).grad, getattr(by_autograd, name).grad, rtol=1e-5,
                                       atol=1e-6)
        for fast, reference in zip(by_hand.targets, by_autograd.targets, strict=True):
            torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-6)
