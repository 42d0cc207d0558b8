"""PPO (and A2C) from pixels: the CNN actor-critic of the PPO paper's Atari experiments, uint8 rollouts,
reward clipping, a real run on Pong that resumes exactly, and the network/observation refusals.

A learning test on Pong (10M steps) is far beyond CI; conf/tuned/ppo_Pong.yaml holds the settings.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import CPU, compose_config, load_conf
from test_resume_exact import split_equals_whole

from rlrun.algos.a2c import A2C
from rlrun.algos.ppo import PPO
from rlrun.config import ConfigError
from rlrun.data import RolloutBuffer
from rlrun.envs import VecEnv, env_config
from rlrun.evaluate import load_policy
from rlrun.hardware import Hardware
from rlrun.nets import CNNConfig, NatureCNN, network_config
from rlrun.nets.cnn_actor_critic import CNNActorCritic, TorchActorCritic

pytest.importorskip("ale_py")


def build(algo_cls, algo: str, env: str, network: str, seed: int = 0, hardware: Hardware = CPU,
          env_overrides: dict | None = None, **algo_overrides):
    cfg = algo_cls.parse_config({k: v for k, v in load_conf("algo", algo, **algo_overrides).items() if k != "_target_"})
    vec_env = VecEnv(env_config(load_conf("env", env, **(env_overrides or {}))), cfg.num_envs, seed, "sync", cfg.gamma)
    return algo_cls(cfg, vec_env, network_config(load_conf("network", network)), hardware, seed, 100_000)


def pong_ppo(hardware: Hardware = CPU, **overrides) -> PPO:
    """PPO with the tuned Atari loss settings on a small rollout (2 envs x 32 steps, one minibatch)."""
    settings = dict(num_envs=2, num_steps=32, num_minibatches=1, update_epochs=1, clip_coef=0.1, ent_coef=0.01,
                    vf_coef=0.5, learning_rate=2.5e-4, clip_reward=True)
    return build(PPO, "ppo", "Pong", "cnn", hardware=hardware, **{**settings, **overrides})


# --- the network --------------------------------------------------------------------------------------


def reference_forward(p: dict[str, torch.Tensor], obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The Nature CNN and both heads written out op by op (Mnih et al. 2015's strides; pixels / 255)."""
    x = obs.float() / 255.0
    x = F.relu(F.conv2d(x, p["actor.0.convs.0.weight"], p["actor.0.convs.0.bias"], stride=4))
    x = F.relu(F.conv2d(x, p["actor.0.convs.2.weight"], p["actor.0.convs.2.bias"], stride=2))
    x = F.relu(F.conv2d(x, p["actor.0.convs.4.weight"], p["actor.0.convs.4.bias"], stride=1))
    x = F.relu(F.linear(x.flatten(1), p["actor.0.fc.0.weight"], p["actor.0.fc.0.bias"]))
    logits = F.linear(x, p["actor.1.weight"], p["actor.1.bias"])
    return logits, F.linear(x, p["critic.1.weight"], p["critic.1.bias"])[:, 0]


def reference_ppo_loss(p: dict[str, torch.Tensor], b: dict[str, torch.Tensor], clip: float, ent_coef: float,
                       vf_coef: float) -> torch.Tensor:
    """CleanRL ppo_atari.py's loss, with torch.distributions and plain autograd."""
    logits, values = reference_forward(p, b["obs"])
    dist = torch.distributions.Categorical(logits=logits)
    ratio = (dist.log_prob(b["actions"]) - b["log_probs"]).exp()
    adv = (b["advantages"] - b["advantages"].mean()) / (b["advantages"].std() + 1e-8)
    pg_loss = torch.max(-adv * ratio, -adv * torch.clamp(ratio, 1 - clip, 1 + clip)).mean()
    v_clipped = b["values"] + torch.clamp(values - b["values"], -clip, clip)
    v_loss = 0.5 * torch.max((values - b["returns"]) ** 2, (v_clipped - b["returns"]) ** 2).mean()
    return pg_loss - ent_coef * dist.entropy().mean() + vf_coef * v_loss


def test_cnn_ppo_acts_and_learns_with_the_loss_and_gradient_of_a_plain_autograd_reference_on_pong():
    ppo = pong_ppo()
    assert isinstance(ppo.net, CNNActorCritic) and isinstance(ppo.acting_net, TorchActorCritic)
    ppo.rollouts.start()
    ppo.collect_rollout()
    batch = ppo.buffer.flat_tensors(torch.device("cpu"))
    params = {name: p.detach().clone().requires_grad_() for name, p in ppo.net.named_parameters()}
    # Acting (torch, uint8 in, numpy out) computed the learner's function on the stored observations.
    with torch.no_grad():
        logits, values = reference_forward(params, batch["obs"])
    torch.testing.assert_close(batch["dist_params"], logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(batch["values"], values, rtol=1e-5, atol=1e-6)
    # One update moves the policy off the rollout's: ratios != 1, some clipped. Then the same batch again.
    ppo.update()
    params = {name: p.detach().clone().requires_grad_() for name, p in ppo.net.named_parameters()}
    loss, _ = ppo.loss(batch)
    ppo.flat_params.grad.zero_()
    loss.backward()
    reference = reference_ppo_loss(params, batch, 0.1, 0.01, 0.5)
    reference.backward()
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-7)
    for name, p in ppo.net.named_parameters():
        torch.testing.assert_close(p.grad, params[name].grad, rtol=1e-4, atol=1e-7, msg=name)
    assert ppo.flat_params.grad.abs().sum() > 0


def test_cnn_heads_are_orthogonal_with_gain_001_for_the_policy_and_1_for_the_value():
    ppo = pong_ppo()
    net = ppo.net
    for head, gain in ((net.actor[1], 0.01), (net.critic[1], 1.0)):
        w = head.weight.detach()  # (outputs, 512): orthogonal rows of norm `gain`
        torch.testing.assert_close(w @ w.T, gain**2 * torch.eye(len(w)), rtol=0, atol=1e-5 * gain**2)
        assert not head.bias.detach().any()
    assert net.actor[0] is net.critic[0]  # one torso: the flat buffer holds it once
    assert sum(p.numel() for p in net.parameters()) == ppo.flat_params.numel()


def test_rollout_keeps_uint8_pixels_up_to_the_network():
    ppo = pong_ppo()
    ppo.rollouts.start()
    first_obs = ppo.rollouts.next_obs
    assert first_obs.dtype == np.uint8
    ppo.collect_rollout()
    assert ppo.buffer.obs.dtype == np.uint8
    np.testing.assert_array_equal(ppo.buffer.obs[0], first_obs)
    assert ppo.buffer.flat_tensors(torch.device("cpu"))["obs"].dtype == torch.uint8
    # The tuned settings' rollout: 8 envs x 128 steps of 4 x 84 x 84 bytes.
    atari = RolloutBuffer(128, 8, (4, 84, 84), (), np.int64, 6, obs_dtype=np.uint8)
    assert atari.obs.nbytes == 8 * 128 * 4 * 84 * 84 == 28_901_376


@pytest.mark.parametrize("algo_cls, algo", [(PPO, "ppo"), (A2C, "a2c")])
def test_clip_reward_learns_from_the_sign_and_still_logs_the_game_score(algo_cls, algo):
    # Pendulum pays rewards in about [-16, 0]: their signs differ from them, unlike Pong's +-1.
    def first_iteration(clip: bool) -> tuple[np.ndarray, dict]:
        per_algo = {"num_minibatches": 1} if algo == "ppo" else {"log_interval": 1}
        agent = build(algo_cls, algo, "Pendulum", "mlp", env_overrides={"normalize_reward": False},
                      num_envs=1, num_steps=256, clip_reward=clip, **per_algo)
        metrics = next(agent.learn())  # one rollout (one episode of 200 steps ends in it), one update
        return agent.buffer.rewards.copy(), metrics

    raw, raw_metrics = first_iteration(False)
    clipped, clipped_metrics = first_iteration(True)
    assert not np.isin(raw, (-1.0, 0.0, 1.0)).all()
    np.testing.assert_array_equal(clipped, np.sign(raw))  # what the update learned from
    # The same actions (the first rollout's policy and noise), the same score, counted unclipped.
    assert clipped_metrics["episodic_returns"] == raw_metrics["episodic_returns"]
    (score,) = raw_metrics["episodic_returns"]
    assert score == pytest.approx(raw[:200].sum(), rel=1e-5) and score < -200


def test_a2c_takes_the_cnn_and_learns_from_pong_pixels():
    a2c = build(A2C, "a2c", "Pong", "cnn", num_envs=2, num_steps=5, log_interval=2, clip_reward=True)
    assert isinstance(a2c.net, CNNActorCritic)
    before = a2c.flat_params.detach().clone()
    metrics = next(a2c.learn())
    assert metrics["global_step"] == 20 and math.isfinite(metrics["train/policy_loss"])
    assert a2c.buffer.obs.dtype == np.uint8
    assert not torch.equal(before, a2c.flat_params.detach())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cnn_acting_on_the_gpu_learner_matches_the_cpu():
    gpu = Hardware(device=torch.device("cuda"), torch_threads=1, vector_backend="sync", workers=1)
    on_gpu, on_cpu = pong_ppo(gpu), pong_ppo()
    assert on_gpu.flat_params.is_cuda
    obs = on_cpu.env.reset()
    for on_gpu_out, on_cpu_out in zip(on_gpu.acting_net.dist_params_and_value(obs),
                                      on_cpu.acting_net.dist_params_and_value(obs), strict=True):
        np.testing.assert_allclose(on_gpu_out, on_cpu_out, rtol=1e-3, atol=1e-4)
    on_gpu.rollouts.start()
    on_gpu.collect_rollout()
    metrics = on_gpu.update()
    assert math.isfinite(metrics["train/value_loss"])


# --- through the command line ---------------------------------------------------------------------------


def test_ppo_on_pong_with_the_cnn_trains_evaluates_and_resumes_exactly(rlrun, tmp_path):
    # The tuned file's settings on 2 envs x 32 steps; games cut at 50 agent steps, so that episodes end
    # (truncation bootstraps from V(final frame stack)) and evaluations are short.
    split_equals_whole(rlrun, tmp_path, 128, "algo=ppo", "env=Pong", "network=cnn", "hardware=cpu",
                       "algo.num_envs=2", "algo.num_steps=32", "algo.num_minibatches=2", "algo.update_epochs=2",
                       "env.max_episode_steps=50")
    summary = json.loads((tmp_path / "whole" / "summary.json").read_text())
    assert summary["total_steps"] == 256
    assert math.isfinite(summary["final_eval_mean_return"])
    # rlrun-eval's policy and its TorchScript export act alike on raw uint8 frame stacks.
    policy = load_policy(tmp_path / "whole")
    exported = torch.jit.load(str(policy.export(tmp_path / "policy.pt")))
    obs = np.stack([policy.observation_space.sample() for _ in range(4)])
    np.testing.assert_array_equal(exported(torch.as_tensor(obs)).numpy(), policy.act(obs))


def test_the_nature_cnn_on_vector_observations_is_a_config_error():
    # (For any algorithm that builds it: reported as one line, not a traceback.)
    with pytest.raises(ConfigError, match="network=cnn needs image observations"):
        NatureCNN((4,), CNNConfig(features_dim=512, ortho_init=True))


REFUSALS = [
    (("algo=ppo", "env=CartPole", "network=cnn"), "network=cnn takes image observations"),
    (("algo=ppo", "env=Pong"), "need network=cnn"),
    (("algo=trpo", "env=Pong", "network=cnn"), "the CNN actor-critic is PPO's and A2C's"),
    (("algo=a3c", "env=Pong", "network=cnn"), "the CNN actor-critic is PPO's and A2C's"),
]


def test_networks_that_do_not_fit_the_observations_are_refused_in_one_line_before_training(rlrun, tmp_path):
    started = []
    for i, (overrides, _) in enumerate(REFUSALS):
        cwd = tmp_path / str(i)
        cwd.mkdir()
        started.append((*rlrun.start(*overrides, "logger=csv", cwd=cwd, run_dir=cwd / "run"), cwd))
    for (overrides, message), (proc, args, cwd) in zip(REFUSALS, started, strict=True):
        result = rlrun.finish(proc, args, cwd, timeout=120)
        assert result.returncode == 1, result.describe()
        lines = result.stderr_lines()
        assert lines[-1].startswith("rlrun: error: ") and message in lines[-1], result.describe()
        assert sum(line.startswith("rlrun: error:") for line in lines) == 1, result.describe()
        assert "Traceback" not in result.stderr, result.describe()
        assert not (cwd / "run" / "checkpoints").exists()


def test_the_fast_atari_file_composes_rl_games_recipe_and_refuses_annealing_with_the_adaptive_rate():
    # `rlrun algo=ppo env=Pong network=cnn tuned=ppo_Pong_fast`: rl_games' ppo_pong_envpool settings.
    cfg = compose_config("algo=ppo", "env=Pong", "network=cnn", "tuned=ppo_Pong_fast")
    annealed = compose_config("algo=ppo", "env=Pong", "network=cnn", "tuned=ppo_Pong_fast", "algo.anneal_lr=true")
    algo = PPO.parse_config({k: v for k, v in cfg.algo.items() if k != "_target_"})
    assert (algo.num_envs, algo.num_steps, algo.num_envs * algo.num_steps // algo.num_minibatches) == (64, 128, 2048)
    assert (algo.adaptive_lr_kl, algo.anneal_lr, algo.clip_coef, algo.clip_vloss, algo.vf_coef) == (0.01, False, 0.2,
                                                                                                   False, 2.0)
    with pytest.raises(ConfigError, match="algo.anneal_lr=false"):
        PPO.parse_config({k: v for k, v in annealed.algo.items() if k != "_target_"})
