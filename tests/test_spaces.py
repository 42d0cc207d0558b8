"""Every gymnasium space: what the networks read (rlrun.envs.spaces), Dict observations through the
vector env, its normalisation and checkpointed state, refusals in one line naming the space, and
load_policy / TorchScript / ONNX for the new spaces (the small envs of tests/space_envs)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from helpers import train_space_env_runs

from rlrun.config import ConfigError
from rlrun.envs import VecEnv, env_config
from rlrun.envs.spaces import ObservationTransform, check_spaces
from rlrun.run import algorithms_for

sys.path.insert(0, str(Path(__file__).parent))
import space_envs  # noqa: E402,F401 -- registers the ids

TESTS = Path(__file__).parent


def make(env_id: str, num_envs: int = 2, seed: int = 0, **overrides) -> VecEnv:
    return VecEnv(env_config({"id": env_id, **overrides}), num_envs, seed)


def test_observation_transform_of_each_space():
    image = ObservationTransform(gym.spaces.Box(0, 255, (48, 40, 3), np.uint8))  # channels last
    assert image.space.shape == (3, 48, 40) and image.space.dtype == np.uint8
    frames = np.random.default_rng(0).integers(0, 256, (2, 48, 40, 3)).astype(np.uint8)
    np.testing.assert_array_equal(image(frames), frames.transpose(0, 3, 1, 2))
    assert ObservationTransform(gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)).kind == "identity"  # channels first
    stacked = ObservationTransform(gym.spaces.Box(-1, 1, (3, 4)))  # FrameStackObservation of 4-vectors
    assert stacked.space.shape == (12,)
    np.testing.assert_array_equal(stacked(np.arange(24.0).reshape(2, 3, 4)), np.arange(24.0).reshape(2, 12))
    one_hot = ObservationTransform(gym.spaces.Discrete(3, start=1))
    np.testing.assert_array_equal(one_hot(np.array([1, 3])), [[1, 0, 0], [0, 0, 1]])
    both = ObservationTransform(gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (40, 40, 3), np.uint8),
                                                 "pos": gym.spaces.Box(-1, 1, (2, 2))}))
    assert {k: s.shape for k, s in both.space.spaces.items()} == {"image": (3, 40, 40), "pos": (4,)}
    with pytest.raises(ConfigError, match="Tuple"):
        ObservationTransform(gym.spaces.Tuple([gym.spaces.Discrete(2)]))


def test_vector_env_steps_dict_observations_normalises_vectors_and_leaves_images():
    env = make("DictImageTarget-v0", normalize_obs=True)
    obs = env.reset()
    assert obs["image"].dtype == np.uint8 and obs["image"].shape == (2, 3, 48, 48)  # transposed, not normalised
    assert obs["flip"].dtype == np.float32 and obs["flip"].shape == (2, 1)
    assert set(env.obs_rms.stats) == {"flip"}
    for _ in range(12):  # past the 10-step time limit: final observations of ended episodes
        obs, reward, terminated, truncated, final_obs = env.step(np.zeros(2, np.int64))
    assert truncated.any() or final_obs is None
    assert abs(env.obs_rms.stats["flip"].mean[0] - 0.5) < 0.3
    env.close()


def test_dict_episodes_in_flight_continue_after_a_checkpoint():
    env = make("DictReach-v0", normalize_obs=True)
    env.reset()
    actions = np.array([[1, 3], [2, 4], [0, 1], [3, 3], [1, 1]])
    for a in actions[:2]:
        env.step(a)
    state = env.state_dict()
    assert state["episodes"] is not None
    expected = [env.step(a)[0] for a in actions[2:]]
    resumed = make("DictReach-v0", normalize_obs=True)
    resumed.load_state_dict(state)
    resumed.reset()
    for a, want in zip(actions[2:], expected):
        got = resumed.step(a)[0]
        for key in want:
            np.testing.assert_array_equal(got[key], want[key])


@pytest.mark.parametrize("algo, env_id, words", [
    ("dqn", "MultiReach-v0", "DQN's MultiDiscrete"),
    ("sac", "BitCopy-v0", "MultiBinary"),
    ("trpo", "DictReach-v0", "Dict observations"),
])
def test_an_algorithm_refuses_a_space_naming_it(algo, env_id, words):
    from rlrun.envs.spaces import algorithms_class

    env = gym.make(env_id)
    with pytest.raises(ConfigError) as error:
        check_spaces(algorithms_class(algo), algo, env_id, env.observation_space, env.action_space, algorithms_for)
    message = str(error.value)
    assert "\n" not in message and "continuous" not in message
    if words.startswith("DQN"):
        assert "MultiDiscrete action space" in message and "ppo" in message and "dqn" not in message.split(";")[1]
    else:
        assert words in message


def test_dqn_on_multidiscrete_refused_in_one_line_before_a_run_directory(rlrun, tmp_path, space_envs_importable):
    result = rlrun("algo=dqn", "env=space_envs:MultiReach-v0", "logger=csv", cwd=tmp_path, run_dir=tmp_path / "run")
    assert result.returncode != 0
    assert result.stderr_lines() == [
        "rlrun: error: algo=dqn cannot act in space_envs:MultiReach-v0's MultiDiscrete action space MultiDiscrete([3 3]); "
        "algorithms for MultiDiscrete actions: a2c, a3c, ppo, ppo_kl, reinforce, trpo"], result.describe()
    assert not (tmp_path / "run").exists()


@pytest.fixture
def space_envs_importable(monkeypatch):
    """tests/ on the PYTHONPATH of the rlrun subprocesses, so that env=space_envs:<id> imports."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]))


# --- trained policies of each space: load_policy, TorchScript, ONNX ---------------------------------

COMMON = ("logger=csv", "total_steps=64", "eval.episodes=1", "eval.every_steps=64", "checkpoint.every_steps=64")
TINY = (*COMMON, "algo.num_steps=64", "algo.num_minibatches=2")
FRAME_STACK = "env.wrappers=[{_target_:gymnasium.wrappers.FrameStackObservation,stack_size:3}]"
RUNS = {
    "multi_discrete": ("algo=ppo", "env=space_envs:MultiReach-v0", *TINY),
    "multi_binary": ("algo=ppo_kl", "env=space_envs:BitCopy-v0", *TINY),
    "dict_with_image": ("algo=a2c", "env=space_envs:DictImageTarget-v0", "env.normalize_obs=true", *COMMON),
    "channels_last_cnn": ("algo=ppo", "env=space_envs:ImageTarget-v0", "network=cnn", *TINY),
    "frame_stack_ppo": ("algo=ppo", "env=CartPole", FRAME_STACK, "env.normalize_obs=true", *TINY),
}


@pytest.fixture(scope="module")
def trained(rlrun, tmp_path_factory) -> dict[str, Path]:
    """One tiny run of each kind (one update each), made by the CLI."""
    cwd = tmp_path_factory.mktemp("spaces")
    return train_space_env_runs(rlrun, cwd, RUNS)


@pytest.mark.parametrize("name", list(RUNS))
def test_load_policy_and_torchscript_act_alike_in_each_space(name, trained, tmp_path):
    from rlrun.evaluate import load_policy

    # These runs' envs are this test suite's own package (tests/space_envs): code we trust.
    policy = load_policy(trained[name], trust_code=True)
    env = policy.make_env()
    obs, _ = env.reset(seed=3)
    scripted = torch.jit.load(str(policy.export(tmp_path / "policy.pt")))
    onnx = None
    if name != "frame_stack_ppo":  # (one ONNX export of the plain Box path is enough; it is the old one)
        try:
            import onnxruntime

            onnx = onnxruntime.InferenceSession(str(policy.export(tmp_path / "policy.onnx")))
        except (ImportError, ConfigError):  # onnx / onnxruntime not installed: the export extra
            pass
    keys = list(policy.observation_space.spaces) if isinstance(policy.observation_space, gym.spaces.Dict) else None
    for _ in range(5):
        action = policy.act(obs)
        assert policy.action_space.contains(np.asarray(action, policy.action_space.dtype)), action
        inputs = [np.asarray(obs[key])[None] for key in keys] if keys else [np.asarray(obs)[None]]
        np.testing.assert_array_equal(scripted(*[torch.as_tensor(x) for x in inputs]).numpy()[0], action)
        if onnx is not None:
            feeds = dict(zip(keys or ["obs"], inputs))
            np.testing.assert_array_equal(onnx.run(None, feeds)[0][0], action)
        # a batch of two acts as each alone
        batch = {key: np.stack([obs[key]] * 2) for key in keys} if keys else np.stack([obs] * 2)
        np.testing.assert_array_equal(policy.act(batch)[1], action)
        obs, *_ = env.step(action)
    env.close()


@pytest.mark.parametrize("algo, env, extra", [
    ("sac", "Pendulum", ("algo.learning_starts=32", "algo.batch_size=16", "total_steps=64")),
    ("dqn", "CartPole", ("algo.learning_starts=32", "algo.batch_size=16", "total_steps=64")),
])  # (and PPO: RUNS["frame_stack_ppo"]; the flattening is the vector env's, the same for every algorithm)
def test_a_frame_stacked_box_is_flattened_for_every_algorithm(algo, env, extra, rlrun, tmp_path):
    """FrameStackObservation gives (3, obs_dim) observations: every algorithm reads them flattened."""
    result = rlrun(f"algo={algo}", f"env={env}", FRAME_STACK, "logger=csv", "eval.episodes=1", *extra,
                   cwd=tmp_path, run_dir=tmp_path / "run")
    assert result.returncode == 0, result.describe()
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()


def test_dict_actor_critic_encodes_each_key_once_for_both_heads():
    from omegaconf import OmegaConf

    from rlrun.nets import network_config
    from rlrun.nets.dict_actor_critic import DictActorCritic
    from rlrun.resources import CONF_DIR

    cfg = network_config(OmegaConf.load(CONF_DIR / "network" / "mlp.yaml"))
    space = gym.spaces.Dict({"pos": gym.spaces.Box(-1, 1, (3,)), "image": gym.spaces.Box(0, 255, (3, 40, 40), np.uint8)})
    net = DictActorCritic(space, gym.spaces.Box(-1, 1, (2,)), cfg)
    # SB3's CombinedExtractor: the image key through a Nature CNN of 256 features, the vector flattened.
    assert net.encoder.features_dim == 256 + 3 and list(net.encoder.cnns) == ["image"]
    # One encoder held by both heads: its parameters count once (one set in the flat buffer and the optimiser).
    parts = (net.encoder, net.actor[1], net.critic[1])
    assert sum(p.numel() for p in net.parameters()) == sum(p.numel() for m in parts for p in m.parameters()) + 2
    obs = {"pos": torch.randn(5, 3), "image": torch.randint(0, 256, (5, 3, 40, 40), dtype=torch.uint8)}
    params, values = net(obs)
    assert params.shape == (5, 4) and values.shape == (5,)  # Gaussian: mean and log std
    torch.testing.assert_close(params, net.dist_params(obs))
    torch.testing.assert_close(values, net.value(obs))
    with pytest.raises(ConfigError, match="at least 36x36"):
        DictActorCritic(gym.spaces.Dict({"image": gym.spaces.Box(0, 255, (3, 32, 32), np.uint8)}),
                        gym.spaces.Discrete(2), cfg)


@pytest.mark.parametrize("algo, env_id, extra", [
    ("trpo", "MultiReach-v0", ("algo.num_steps=64", "algo.vf_minibatch_size=16")),
    ("reinforce", "BitCopy-v0", ()),
    ("a3c", "MultiReach-v0", ("algo.report_every=64", "hardware.workers=1")),
    ("a2c", "BitCopy-v0", ()),
])
def test_every_algorithm_claiming_multi_actions_trains_and_evaluates_in_them(algo, env_id, extra, rlrun, tmp_path,
                                                                             space_envs_importable):
    result = rlrun(f"algo={algo}", f"env=space_envs:{env_id}", *COMMON, *extra, cwd=tmp_path, run_dir=tmp_path / "run")
    assert result.returncode == 0, result.describe()
    assert (tmp_path / "run" / "checkpoints" / "last.pt").is_file()
