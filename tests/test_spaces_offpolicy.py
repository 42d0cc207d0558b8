"""Dict observations in the off-policy algorithms (SAC and the DQN family): the replay stores a dict of
arrays (uint8 images stay uint8), the networks read the Dict through per-key encoders
(rlrun.nets.dict_encoder), and a trained run checkpoints, resumes exactly, loads (load_policy,
rlrun-eval) and exports (TorchScript, ONNX) like any other. The learning tests are in
tests/test_spaces_offpolicy_learning.py."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import train_space_env_runs
from test_resume_exact import split_equals_whole

from rlrun.config import ConfigError
from rlrun.data import ReplayBuffer
from rlrun.envs.spaces import algorithms_class, check_spaces
from rlrun.nets import MLPConfig
from rlrun.run import algorithms_for

TESTS = Path(__file__).parent
sys.path.insert(0, str(TESTS))
import space_envs  # noqa: E402,F401 -- registers the ids

IMAGE_AND_VECTOR = gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (3, 36, 36), np.uint8),
                                    "pos": gym.spaces.Box(-1.0, 1.0, (2,), np.float64)})
MLP = MLPConfig(hidden_sizes=[8, 8], activation="relu", ortho_init=False, log_std_init=0.0, image_features_dim=16)


@pytest.fixture
def space_envs_importable(monkeypatch):
    """tests/ on the PYTHONPATH of the rlrun subprocesses, so that env=space_envs:<id> imports."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))


# --- the replay buffer --------------------------------------------------------------------------------


def dict_step(step: int, num_envs: int) -> dict[str, np.ndarray]:
    """Observations that name their step and env: image pixels 10 * step + env, pos (step, env)."""
    image = np.stack([np.full((3, 36, 36), 10 * step + env, np.uint8) for env in range(num_envs)])
    pos = np.array([[step, env] for env in range(num_envs)], np.float64)
    return {"image": image, "pos": pos}


def test_replay_stores_dict_observations_per_key_images_as_uint8():
    replay = ReplayBuffer(5, IMAGE_AND_VECTOR, gym.spaces.Discrete(3))
    assert replay.obs["image"].dtype == np.uint8 and replay.obs["pos"].dtype == np.float32
    # s and s' of each key (image 3*36*36 bytes, pos 2 float32), action int64, reward, terminated.
    assert ReplayBuffer.nbytes(5, IMAGE_AND_VECTOR, gym.spaces.Discrete(3)) == 5 * (2 * (3 * 36 * 36 + 8) + 8 + 4 + 4)
    for step in range(3):  # 2 envs a step: the third step wraps around the ring of 5
        replay.add(dict_step(step, 2), np.array([step, 2 - step]), np.array([step, -step], np.float32),
                   dict_step(step + 1, 2), np.array([0.0, 1.0]))
    assert replay.size == 5 and replay.pos == 1
    # slot 0 was overwritten by step 2's second env; slots 1-4: steps 0-1's envs, then step 2's first env
    np.testing.assert_array_equal(replay.obs["pos"][:, 0], [2, 0, 1, 1, 2])
    np.testing.assert_array_equal(replay.obs["image"][:, 0, 0, 0], [21, 1, 10, 11, 20])
    np.testing.assert_array_equal(replay.next_obs["image"][:, 0, 0, 0], [31, 11, 20, 21, 30])

    generator = torch.Generator().manual_seed(0)
    index = torch.randint(5, (6,), generator=torch.Generator().manual_seed(0)).numpy()
    batch = replay.sample(6, generator, torch.device("cpu"))
    assert batch["obs"]["image"].dtype == torch.uint8 and batch["obs"]["pos"].dtype == torch.float32
    np.testing.assert_array_equal(batch["obs"]["image"].numpy(), replay.obs["image"][index])
    np.testing.assert_array_equal(batch["next_obs"]["pos"].numpy(), replay.next_obs["pos"][index])
    np.testing.assert_array_equal(batch["actions"].numpy(), replay.actions[index])
    # sample_many: the same rows as one sample of 3 x 2, split
    many = replay.sample_many(3, 2, torch.Generator().manual_seed(0), torch.device("cpu"))
    for i, part in enumerate(many):
        for key in ("image", "pos"):
            torch.testing.assert_close(part["obs"][key], batch["obs"][key][2 * i : 2 * i + 2])
        torch.testing.assert_close(part["rewards"], batch["rewards"][2 * i : 2 * i + 2])

    # A checkpoint (torch.save, then torch.load with weights_only=True, as a resumed run reads it)
    buffer = io.BytesIO()
    torch.save(replay.state_dict(), buffer)
    buffer.seek(0)
    restored = ReplayBuffer(5, IMAGE_AND_VECTOR, gym.spaces.Discrete(3))
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert (restored.pos, restored.size) == (1, 5)
    for name in ("obs", "next_obs"):
        for key in ("image", "pos"):
            np.testing.assert_array_equal(getattr(restored, name)[key], getattr(replay, name)[key])
    np.testing.assert_array_equal(restored.rewards, replay.rewards)


# --- the networks ---------------------------------------------------------------------------------------


def test_sac_networks_read_a_dict_through_their_own_encoders():
    from rlrun.nets.continuous import SquashedGaussianActor, TwinQ
    from rlrun.nets.dict_continuous import DictSquashedGaussianActor, DictTwinQ

    vectors = gym.spaces.Dict({"position": gym.spaces.Box(-1, 1, (2,)), "goal": gym.spaces.Box(-1, 1, (3,))})
    action_space = gym.spaces.Box(-2.0, 2.0, (2,), np.float32)
    actor, critic = DictSquashedGaussianActor(vectors, action_space, MLP), DictTwinQ(vectors, 2, MLP)
    # Vector keys: the encoder concatenates them in the Dict's key order (gymnasium sorts the keys), so
    # the networks are the plain ones on [goal, position].
    assert list(vectors.spaces) == ["goal", "position"]
    plain_actor, plain_critic = SquashedGaussianActor(5, action_space, MLP), TwinQ(5, 2, MLP)
    plain_actor.load_state_dict(actor.state_dict())  # the encoder of vector keys has no parameters
    plain_critic.load_state_dict({k.removeprefix("twin."): v for k, v in critic.state_dict().items()})
    obs = {"position": torch.randn(4, 2), "goal": torch.randn(4, 3)}
    flat = torch.cat([obs["goal"], obs["position"]], -1)
    action = torch.rand(4, 2) * 4 - 2
    torch.testing.assert_close(actor.mode(obs), plain_actor.mode(flat))
    noise = torch.randn(4, 2)
    for mine, theirs in zip(actor.sample_with(obs, noise), plain_actor.sample_with(flat, noise), strict=True):
        torch.testing.assert_close(mine, theirs)
    torch.testing.assert_close(critic(obs, action), plain_critic(flat, action))
    # TwinQ's checkpoint layout after the encoder's (which has no parameters here)
    torch.testing.assert_close(critic.checkpoint_order(), plain_critic.checkpoint_order())

    # An image key: a Nature CNN in each network, its own parameters (SB3's share_features_extractor=False)
    actor, critic = DictSquashedGaussianActor(IMAGE_AND_VECTOR, action_space, MLP), DictTwinQ(IMAGE_AND_VECTOR, 2, MLP)
    assert actor.encoder.features_dim == critic.encoder.features_dim == 16 + 2
    assert {id(p) for p in actor.encoder.parameters()}.isdisjoint(id(p) for p in critic.parameters())
    encoder_size = sum(p.numel() for p in critic.encoder.parameters())
    order = critic.checkpoint_order()
    assert sorted(order.tolist()) == list(range(sum(p.numel() for p in critic.parameters())))
    torch.testing.assert_close(order[:encoder_size], torch.arange(encoder_size))
    images = {"image": torch.randint(0, 256, (4, 3, 36, 36), dtype=torch.uint8), "pos": torch.randn(4, 2)}
    assert actor.mode(images).shape == (4, 2) and critic(images, action).shape == (2, 4)


@pytest.mark.parametrize("dueling", [False, True])
def test_q_network_reads_a_dict_through_the_encoder_then_its_heads(dueling):
    from rlrun.nets import QNetwork
    from rlrun.nets.dict_encoder import DictEncoder
    from rlrun.nets.q import dueling_combine

    net = QNetwork(IMAGE_AND_VECTOR, gym.spaces.Discrete(3), MLP, dueling)
    assert isinstance(net.torso[0], DictEncoder) and net.torso[0].features_dim == 16 + 2
    assert not net.has_manual_backward  # the encoder's CNN: autograd
    obs = {"image": torch.randint(0, 256, (5, 3, 36, 36), dtype=torch.uint8), "pos": torch.randn(5, 2)}
    features = net.torso(obs)
    assert features.shape == (5, 8)
    expected = (dueling_combine(net.value_head(features), net.advantage_head(features)) if dueling
                else net.q_head(features))
    torch.testing.assert_close(net(obs), expected)
    net(obs).sum().backward()
    assert all(p.grad is not None for p in net.torso[0].parameters())


# --- refusals -------------------------------------------------------------------------------------------


def test_dict_observations_are_read_by_sac_and_dqn_and_refused_by_td3_naming_them():
    env = gym.make("DictPointReach-v0")
    check_spaces(algorithms_class("sac"), "sac", "DictPointReach-v0", env.observation_space, env.action_space,
                 algorithms_for)  # accepted
    with pytest.raises(ConfigError) as error:
        check_spaces(algorithms_class("td3"), "td3", "DictPointReach-v0", env.observation_space, env.action_space,
                     algorithms_for)
    message = str(error.value)
    assert "\n" not in message and "algo=td3 does not read Dict observations" in message
    assert message.split("algorithms that do: ")[1].startswith("a2c, ppo, ppo_kl, sac (")
    grid = gym.make("DictReach-v0")
    check_spaces(algorithms_class("dueling_dqn"), "dueling_dqn", "DictReach-v0", grid.observation_space,
                 grid.action_space, algorithms_for)  # accepted


def test_dqn_on_a_dict_with_network_cnn_is_refused_in_one_line(rlrun, tmp_path, space_envs_importable):
    result = rlrun("algo=dqn", "env=space_envs:DictImageTarget-v0", "network=cnn", "logger=csv", cwd=tmp_path,
                   run_dir=tmp_path / "run")
    assert result.returncode != 0
    assert result.stderr_lines() == [
        "rlrun: error: Dict observations take network=mlp (without batch_norm): its MLPs read the concatenated "
        "features of every key, a Nature CNN encoding each image key"], result.describe()
    assert not (tmp_path / "run").exists()


# --- trained runs: checkpoints, load_policy, rlrun-eval, export -------------------------------------------

COMMON = ("logger=csv", "eval.episodes=2", "checkpoint.every_steps=100000", "network.hidden_sizes=[16,16]")
RUNS = {
    "sac": ("algo=sac", "env=space_envs:DictPointReach-v0", *COMMON, "total_steps=300", "eval.every_steps=150",
            "algo.learning_starts=100", "algo.batch_size=16", "algo.steps_per_iteration=150"),
    "dueling_dqn_image": ("algo=dueling_dqn", "env=space_envs:DictImageTarget-v0", *COMMON, "total_steps=200",
                          "eval.every_steps=100", "algo.learning_starts=100", "algo.batch_size=8",
                          "algo.steps_per_iteration=100", "network.image_features_dim=32"),
}


@pytest.fixture(scope="module")
def trained(rlrun, tmp_path_factory) -> dict[str, Path]:
    """One short run of each, made by the CLI (two evaluations: best.pt is one of them)."""
    cwd = tmp_path_factory.mktemp("dict_offpolicy")
    return train_space_env_runs(rlrun, cwd, RUNS)


@pytest.mark.parametrize("name", list(RUNS))
def test_load_policy_torchscript_and_onnx_act_alike_on_dict_observations(name, trained, tmp_path):
    from rlrun.evaluate import load_policy

    # These runs' envs are this test suite's own package (tests/space_envs): code we trust.
    policy = load_policy(trained[name], trust_code=True)
    keys = list(policy.observation_space.spaces)
    scripted = torch.jit.load(str(policy.export(tmp_path / "policy.pt")))
    try:
        import onnxruntime

        onnx = onnxruntime.InferenceSession(str(policy.export(tmp_path / "policy.onnx")))
        assert [i.name for i in onnx.get_inputs()] == keys
    except ImportError:  # onnx / onnxruntime not installed: the export extra
        onnx = None
    env = policy.make_env()
    obs, _ = env.reset(seed=3)
    for _ in range(5):
        action = policy.act(obs)
        assert policy.action_space.contains(np.asarray(action, policy.action_space.dtype)), action
        inputs = [np.asarray(obs[key])[None] for key in keys]
        np.testing.assert_allclose(scripted(*[torch.as_tensor(x) for x in inputs]).numpy()[0], action, atol=1e-6)
        if onnx is not None:
            np.testing.assert_allclose(onnx.run(None, dict(zip(keys, inputs, strict=True)))[0][0], action, atol=1e-5)
        batch = {key: np.stack([obs[key]] * 2) for key in keys}  # a batch of two acts as each alone
        np.testing.assert_allclose(policy.act(batch)[1], action, atol=1e-6)
        obs, *_ = env.step(action)
    env.close()


@pytest.mark.parametrize("name", list(RUNS))
def test_rlrun_eval_replays_the_evaluation_of_best_pt_on_dict_observations(name, trained, rlrun, tmp_path):
    run_dir = trained[name]
    env = {**rlrun.env(tmp_path), "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", "from rlrun.cli import eval_main; eval_main()", str(run_dir),
                           "episodes=2", "trust_code=true", f"json={tmp_path / 'e.json'}"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "e.json").read_text())
    step = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["global_step"]
    with open(run_dir / "eval_episodes.csv") as f:
        expected = [float(row["episodic_return"]) for row in csv.DictReader(f) if int(row["global_step"]) == step]
    assert result["global_step"] == step and len(expected) == 2
    assert result["returns"] == pytest.approx(expected, abs=1e-3)  # the CSV's precision


# --- exact resume with the replay in last.pt --------------------------------------------------------------


def test_sac_on_dict_observations_split_run_equals_one_run(rlrun, tmp_path, space_envs_importable):
    split_equals_whole(rlrun, tmp_path, 500, "algo=sac", "env=space_envs:DictPointReach-v0", "checkpoint.replay=true",
                       "algo.learning_starts=250", "algo.steps_per_iteration=125", "algo.batch_size=32",
                       "network.hidden_sizes=[16,16]")


def test_dqn_on_dict_observations_with_an_image_split_run_equals_one_run(rlrun, tmp_path, space_envs_importable):
    split_equals_whole(rlrun, tmp_path, 400, "algo=double_dqn", "env=space_envs:DictImageTarget-v0",
                       "checkpoint.replay=true", "algo.learning_starts=100", "algo.batch_size=8",
                       "algo.steps_per_iteration=100", "algo.target_update_interval=100",
                       "network.hidden_sizes=[16,16]", "network.image_features_dim=32")
