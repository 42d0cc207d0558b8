"""Using what was trained: rlrun-eval, load_policy, export, and videos (rlrun-eval's and training's).

Runs are short real trainings through the `rlrun` command; rlrun-eval runs as a real subprocess too,
with MUJOCO_GL removed from its environment, as on a fresh server.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rlrun import load_policy
from rlrun.evaluate import find_checkpoint
from tests.conftest import FAST, RLRun


def rlrun_eval(*args, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    env = {k: v for k, v in env.items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    return subprocess.run([sys.executable, "-c", "from rlrun.cli import eval_main; eval_main()", *map(str, args)],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def eval_rows(run_dir: Path) -> dict[int, list[tuple[float, int]]]:
    with open(run_dir / "eval_episodes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    by_step: dict[int, list[tuple[float, int]]] = {}
    for row in rows:
        by_step.setdefault(int(row["global_step"]), []).append((float(row["episodic_return"]),
                                                                 int(row["episodic_length"])))
    return by_step


@pytest.fixture(scope="module")
def cartpole_run(rlrun: RLRun, tmp_path_factory) -> Path:
    """PPO on CartPole, 2 evaluations of 3 episodes; best.pt is one of them."""
    cwd = tmp_path_factory.mktemp("cartpole")
    result = rlrun(*FAST, "total_steps=2048", "eval.every_steps=1024", "eval.episodes=3", cwd=cwd,
                   run_dir=cwd / "run")
    assert result.returncode == 0, result.describe()
    return cwd / "run"


@pytest.fixture(scope="module")
def cheetah_run(rlrun: RLRun, tmp_path_factory) -> Path:
    """PPO on HalfCheetah (observations normalised), one rollout of 2048 steps, 100-step episodes."""
    cwd = tmp_path_factory.mktemp("cheetah")
    result = rlrun("env=HalfCheetah", "logger=csv", "total_steps=2048", "eval.episodes=2", "hardware=cpu",
                   "env.max_episode_steps=100", cwd=cwd, run_dir=cwd / "run")
    assert result.returncode == 0, result.describe()
    return cwd / "run"


@pytest.mark.parametrize("run", ["cartpole_run", "cheetah_run"])
def test_rlrun_eval_replays_the_runs_own_evaluation_of_best_pt(run, request, rlrun: RLRun, tmp_path):
    """With the run's evaluation seed, best.pt's episodes are those of the evaluation that saved it:
    same returns and lengths (HalfCheetah: only with the training normalisation frozen as it was)."""
    run_dir = request.getfixturevalue(run)
    episodes = len(next(iter(eval_rows(run_dir).values())))
    proc = rlrun_eval(run_dir, f"episodes={episodes}", f"json={tmp_path / 'e.json'}", cwd=tmp_path,
                      env=rlrun.env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "+-" in proc.stdout
    result = json.loads((tmp_path / "e.json").read_text())
    step = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)["global_step"]
    expected = eval_rows(run_dir)[step]
    assert result["global_step"] == step
    assert result["lengths"] == [length for _, length in expected]
    assert result["returns"] == pytest.approx([r for r, _ in expected], abs=1e-3)  # the CSV's precision
    assert result["mean_return"] == pytest.approx(np.mean([r for r, _ in expected]), abs=1e-3)


def test_rlrun_eval_takes_last_pt_or_a_named_file_and_refuses_a_missing_path(cartpole_run: Path, tmp_path, rlrun):
    assert find_checkpoint(cartpole_run) == cartpole_run / "checkpoints" / "best.pt"
    assert find_checkpoint(cartpole_run / "checkpoints" / "last.pt") == cartpole_run / "checkpoints" / "last.pt"
    proc = rlrun_eval(tmp_path / "nowhere", cwd=tmp_path, env=rlrun.env(tmp_path))
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [f"rlrun-eval: error: {tmp_path / 'nowhere'}: no such run directory "
                                                "or checkpoint file"]
    proc = rlrun_eval(cartpole_run, "episodes=0", cwd=tmp_path, env=rlrun.env(tmp_path))
    assert proc.stderr.strip().splitlines() == ["rlrun-eval: error: rlrun-eval.episodes must be > 0 (got 0)"]


def test_load_policy_acts_on_single_and_batched_raw_observations_with_frozen_normalisation(cheetah_run: Path):
    policy = load_policy(cheetah_run)
    assert policy.obs_rms is not None and policy.obs_rms.count > 1000  # the training statistics, not a fresh start
    env = policy.make_env()
    obs, _ = env.reset(seed=3)
    batch = np.stack([obs, env.observation_space.sample(), obs * 2])
    actions = policy.act(batch)
    assert actions.shape == (3, 6)
    np.testing.assert_allclose(policy.act(obs), actions[0], rtol=0, atol=1e-6)
    # Normalisation included: the algorithm sees (obs - mean) / std, clipped, not the raw observation.
    normalized = np.clip((batch - policy.obs_rms.mean) / np.sqrt(policy.obs_rms.var + 1e-8), -10, 10)
    np.testing.assert_allclose(actions, np.clip(policy.algo.act(normalized.astype(np.float32)), -1, 1), atol=1e-6)
    assert not np.allclose(actions, np.clip(policy.algo.act(batch.astype(np.float32)), -1, 1), atol=1e-3)
    env.close()


@pytest.fixture(scope="module")
def dqn_run(rlrun: RLRun, tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("dqn")
    result = rlrun("algo=dqn", *FAST, "total_steps=2000", cwd=cwd, run_dir=cwd / "run")
    assert result.returncode == 0, result.describe()
    return cwd / "run"


@pytest.mark.parametrize("run", ["cheetah_run", "dqn_run"])
def test_exported_torchscript_network_acts_as_load_policy(run, request, rlrun: RLRun, tmp_path):
    """rlrun-eval export=policy.pt: the TorchScript module alone (normalisation and clipping inside)
    gives load_policy's deterministic actions, for any batch size."""
    run_dir = request.getfixturevalue(run)
    proc = rlrun_eval(run_dir, "episodes=1", "export=policy.pt", cwd=tmp_path, env=rlrun.env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    exported = torch.jit.load(str(tmp_path / "policy.pt"))
    policy = load_policy(run_dir)
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    observations = [obs]
    for _ in range(63):
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
        observations.append(obs)
    batch = np.stack(observations)
    with torch.no_grad():
        actions = exported(torch.as_tensor(batch)).numpy()
        single = exported(torch.as_tensor(batch[:1])).numpy()
    np.testing.assert_allclose(actions, policy.act(batch), rtol=0, atol=1e-5)
    np.testing.assert_allclose(single, actions[:1], rtol=0, atol=1e-6)
    env.close()


def mp4_frames(path: Path) -> tuple[int, tuple[int, int]]:
    import imageio.v2 as imageio

    reader = imageio.get_reader(path)
    try:
        frames = [frame.shape for frame in reader]
    finally:
        reader.close()
    return len(frames), frames[0][:2]


def test_rlrun_eval_video_renders_mujoco_headless_with_mujoco_gl_unset(cheetah_run: Path, rlrun: RLRun, tmp_path):
    """MuJoCo fails to render with MUJOCO_GL unset on a server; rlrun-eval picks EGL or OSMesa itself.
    video_frames and video_size cap the cost; the episode still plays to its end."""
    proc = rlrun_eval(cheetah_run, "episodes=1", "video=true", "video_frames=8", "video_size=[64,48]",
                      f"json={tmp_path / 'e.json'}", cwd=tmp_path, env=rlrun.env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    result = json.loads((tmp_path / "e.json").read_text())
    assert result["lengths"] == [100]
    (video,) = result["videos"]
    assert Path(video["path"]).parent == cheetah_run / "videos"
    assert mp4_frames(Path(video["path"])) == (8, (48, 64))


def test_training_video_every_steps_writes_mp4_and_logs_it_to_tensorboard(rlrun: RLRun, tmp_path):
    """eval.video_every_steps on MuJoCo (MUJOCO_GL unset: the runner picks a headless backend too)."""
    env = {k: v for k, v in rlrun.env(tmp_path).items() if k not in ("MUJOCO_GL", "PYOPENGL_PLATFORM")}
    proc = subprocess.run(rlrun.command(["env=HalfCheetah", "logger=tensorboard", "eval.episodes=1", "hardware=cpu",
                                         "env.max_episode_steps=50", "total_steps=4096", "eval.every_steps=2048",
                                         "eval.video_every_steps=2048", "eval.video_frames=10", "eval.video_size=[64,48]",
                                         f"hydra.run.dir={tmp_path / 'run'}"]),
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    videos = sorted((tmp_path / "run" / "videos").glob("*.mp4"))
    assert [v.name for v in videos] == ["step2048.mp4", "step4096.mp4"]
    assert mp4_frames(videos[0]) == (10, (48, 64))
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tb"), size_guidance={"images": 0})
    events.Reload()
    images = events.Images("eval/video")
    assert [image.step for image in images] == [2048, 4096]
    assert images[0].encoded_image_string[:6] == b"GIF89a"


def test_video_extra_is_what_the_writer_needs():
    """imageio-ffmpeg (the `video` extra) ships the ffmpeg binary the MP4 writer runs."""
    import imageio_ffmpeg

    assert os.access(imageio_ffmpeg.get_ffmpeg_exe(), os.X_OK)
