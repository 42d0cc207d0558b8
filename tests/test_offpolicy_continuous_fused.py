"""The speed-ups of TD3 and SAC compute the same function as the plain networks: the twin critics
stacked into one batched network, the critics' optimiser state saved in the plain layout, and acting
in numpy on views of the actor's parameters. (The updates against plain reference updates are in
test_offpolicy_continuous_math.py.)"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from test_offpolicy_continuous_math import fill, make

from rlrun.algos.ddpg import load_optimizer_state_in_order, optimizer_state_in_order
from rlrun.nets.continuous import QCritic, TwinQ
from rlrun.nets.mlp import MLPConfig


@pytest.mark.parametrize("batch_norm", [False, True])
def test_twin_q_is_two_qcritics_with_their_initial_weights_keys_and_function(batch_norm):
    cfg = MLPConfig([16, 8], "relu", False, 0.0, batch_norm)
    torch.manual_seed(0)
    twin = TwinQ(5, 2, cfg)
    torch.manual_seed(0)
    q1, q2 = QCritic(5, 2, cfg), QCritic(5, 2, cfg)  # what TwinQ was before its layers were stacked
    plain = {**{f"q1.{k}": v for k, v in q1.state_dict().items()}, **{f"q2.{k}": v for k, v in q2.state_dict().items()}}
    state = twin.state_dict()
    assert list(state) == list(plain)  # a checkpoint's keys, in the same order
    for key, value in plain.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)
    obs, action = torch.randn(32, 5), torch.randn(32, 2)
    q = twin(obs, action)  # train mode: with batch norm, each critic normalises by the batch's statistics
    torch.testing.assert_close(q[0], q1(obs, action))
    torch.testing.assert_close(q[1], q2(obs, action))
    torch.testing.assert_close(twin.q1(obs, action), q1(obs, action))
    # A state saved by two QCritics (an older checkpoint) loads into the stacked layers.
    with torch.no_grad():
        for p in [*q1.parameters(), *q2.parameters()]:
            p.add_(torch.randn_like(p))
    plain = {**{f"q1.{k}": v for k, v in q1.state_dict().items()}, **{f"q2.{k}": v for k, v in q2.state_dict().items()}}
    twin.load_state_dict(plain)
    q1.eval(), q2.eval(), twin.eval()
    torch.testing.assert_close(twin(obs, action), torch.stack([q1(obs, action), q2(obs, action)]))


@pytest.mark.parametrize("name", ["td3", "sac"])
def test_critic_optimizer_state_is_saved_in_the_layout_of_two_qcritics(name):
    """Adam's moments of the stacked critics' flat parameter are saved element for element where two
    QCritics' flat parameter (q1's tensors, then q2's) holds them, so checkpoints keep one format."""
    algo = make(name)
    fill(algo, 300)
    for _ in range(2):
        algo.train_step(algo.replay.sample(32, algo.generator, algo.device))
        algo.gradient_updates += 1
    saved = algo.state_dict()["critic_optimizer"]["state"][0]
    # The moments read through a copy of the critic whose parameters hold them: its state_dict gives
    # each plain QCritic tensor's moments, in the plain order.
    for moment in ("exp_avg", "exp_avg_sq"):
        holder = copy.deepcopy(algo.critic)
        flat = algo.critic_optimizer.state[moment]
        with torch.no_grad():
            torch.nn.utils.vector_to_parameters(flat, holder.parameters())
        plain = torch.cat([v.reshape(-1) for v in holder.state_dict().values()])  # no batch norm: parameters only
        torch.testing.assert_close(saved[moment], plain, rtol=0, atol=0)
        assert not torch.equal(saved[moment], flat)  # the stacked layout differs from the saved one
    # And it loads back to the same state.
    restored = make(name, seed=1)
    saved_state = algo.state_dict()["critic_optimizer"]
    load_optimizer_state_in_order(restored.critic_optimizer, saved_state, restored.critic_order)
    for moment in ("exp_avg", "exp_avg_sq"):
        torch.testing.assert_close(restored.critic_optimizer.state[moment],
                                   algo.critic_optimizer.state[moment], rtol=0, atol=0)
    assert optimizer_state_in_order(restored.critic_optimizer, restored.critic_order)["param_groups"] == \
        algo.state_dict()["critic_optimizer"]["param_groups"]


@pytest.mark.parametrize("name", ["ddpg", "td3", "sac"])
def test_numpy_acting_reads_the_current_actor_and_matches_torch(name):
    algo = make(name)
    assert algo.numpy_actor is not None
    fill(algo, 300)
    obs = np.stack([algo.env.reset()[0], algo.env.observation_space.sample()]).astype(np.float32)
    for _ in range(2):  # after updates too: the numpy views follow the parameters updated in place
        torch.testing.assert_close(torch.as_tensor(algo.act(obs)), torch.as_tensor(torch_act(algo, obs)))
        algo.train_step(algo.replay.sample(32, algo.generator, algo.device))
        algo.gradient_updates += 1
    if name == "sac":  # the stochastic policy draws the same noise from the run's generator
        state = algo.generator.get_state()
        sampled = algo.act(obs, deterministic=False)
        algo.generator.set_state(state)
        torch.testing.assert_close(torch.as_tensor(sampled), torch.as_tensor(algo.act_in_torch(obs, False)))


def torch_act(algo, obs: np.ndarray) -> np.ndarray:
    if hasattr(algo, "act_in_torch"):
        return algo.act_in_torch(obs)
    with torch.no_grad():
        return algo.actor(torch.as_tensor(obs)).numpy()
