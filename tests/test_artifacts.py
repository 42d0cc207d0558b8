"""Artifacts and start-up: rlrun-eval's argument checks, best.pt without the replay buffer, ONNX and
TorchScript exports against load_policy (onnxruntime), `rlrun --help`, and HalfCheetah on MuJoCo 4 without
the settotalmass warning or a MUJOCO_LOG.TXT in the working directory.

Runs are short real trainings through the `rlrun` command; rlrun-eval runs as a real subprocess.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from rlrun import load_policy
from tests.conftest import FAST, RLRun

EVAL = "from rlrun.cli import eval_main; eval_main()"


def rlrun_eval(*args, cwd: Path, env: dict, before: str = "") -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", before + EVAL, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)


def files_under(folder: Path) -> dict[str, float]:
    return {str(p.relative_to(folder)): p.stat().st_mtime for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def cartpole_run(rlrun: RLRun, tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("cartpole")
    result = rlrun(*FAST, "total_steps=2048", cwd=cwd, run_dir=cwd / "run")
    assert result.returncode == 0, result.describe()
    return cwd / "run"


@pytest.fixture(scope="module")
def pendulum_sac_run(rlrun: RLRun, tmp_path_factory) -> Path:
    """SAC on Pendulum, 1000 steps, updates from step 200: a continuous policy off the initial weights."""
    cwd = tmp_path_factory.mktemp("sac")
    result = rlrun("algo=sac", "env=Pendulum", "logger=csv", "hardware=cpu", "total_steps=1000",
                   "algo.learning_starts=200", "eval.episodes=1", cwd=cwd, run_dir=cwd / "run")
    assert result.returncode == 0, result.describe()
    return cwd / "run"


@pytest.fixture(scope="module")
def cheetah(rlrun: RLRun, tmp_path_factory) -> tuple[Path, Path, str]:
    """PPO on HalfCheetah-v5 (float64 observations, normalised): (run dir, the working directory it ran in,
    its stdout and stderr)."""
    cwd = tmp_path_factory.mktemp("cheetah")
    result = rlrun("algo=ppo", "env=HalfCheetah", "logger=csv", "hardware=cpu", "total_steps=2048", "eval.episodes=1",
                   "env.max_episode_steps=100", cwd=cwd, run_dir=cwd / "run")
    assert result.returncode == 0, result.describe()
    return cwd / "run", cwd, result.stdout + result.stderr


# --- rlrun-eval checks every argument before the first episode -----------------------------------------


@pytest.mark.parametrize("args, expected", [
    (["export=policy.onnnx"], "export=policy.onnnx: the file name must end in .onnx (ONNX) or .pt / .ts (TorchScript)"),
    (["export=policy"], "export=policy: the file name must end in .onnx"),
    (["export=a_file/policy.onnx"], "export: a_file is a file, so a_file/policy.onnx cannot be made"),
    (["export=a_folder"], "export=a_folder: the file name must end in .onnx"),
    (["export=a_folder.pt"], "export: a_folder.pt is a folder; name a file in it"),
    (["json=a_file/eval.json"], "json: a_file is a file, so a_file/eval.json cannot be made"),
    (["json=a_folder"], "json: a_folder is a folder; name a file in it"),
    (["episodes=0"], "rlrun-eval.episodes must be > 0 (got 0)"),
    (["episodes=-3"], "rlrun-eval.episodes must be > 0 (got -3)"),
    (["device=tpu9"], "device=tpu9: not a torch device; use device=cpu or device=cuda"),
])
def test_rlrun_eval_refuses_a_bad_argument_in_one_line_and_writes_nothing(args, expected, cartpole_run: Path,
                                                                          rlrun: RLRun, tmp_path):
    (tmp_path / "a_file").write_text("")
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_folder.pt").mkdir()
    run_before, cwd_before = files_under(cartpole_run), files_under(tmp_path)
    proc = rlrun_eval(cartpole_run, "episodes=2", *args, cwd=tmp_path, env=rlrun.env(tmp_path))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"rlrun-eval: error: {expected}"), proc.stderr
    assert proc.stdout == ""  # no episode played
    assert files_under(cartpole_run) == run_before
    assert files_under(tmp_path) == cwd_before


def test_rlrun_eval_refuses_cuda_where_there_is_none(cartpole_run: Path, rlrun: RLRun, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: device=cuda is valid here")
    proc = rlrun_eval(cartpole_run, "device=cuda", cwd=tmp_path, env=rlrun.env(tmp_path))
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == ["rlrun-eval: error: device=cuda: torch sees no CUDA device here; "
                                                "use device=cpu"]


def test_rlrun_eval_export_onnx_without_the_onnx_package_is_refused_before_anything(cartpole_run: Path, rlrun: RLRun,
                                                                                   tmp_path):
    """With onnx not importable (sys.modules['onnx'] = None makes `import onnx` raise ImportError)."""
    run_before = files_under(cartpole_run)
    proc = rlrun_eval(cartpole_run, "export=policy.onnx", cwd=tmp_path, env=rlrun.env(tmp_path),
                      before="import sys; sys.modules['onnx'] = None; ")
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        "rlrun-eval: error: export=policy.onnx: ONNX export needs the onnx package: pip install 'rlrun[export]' "
        "(onnx, and onnxruntime to run the file); or export TorchScript (a .pt file name)"]
    assert files_under(cartpole_run) == run_before and not any(tmp_path.iterdir())


def test_rlrun_eval_video_of_an_env_that_cannot_render_is_refused_before_anything(cartpole_run: Path, rlrun: RLRun,
                                                                                   tmp_path):
    """CartPole draws with pygame (gymnasium's classic-control extra, which rlrun does not install): without it,
    video=true is refused after one trial frame, before the export, the episodes or the videos/ folder."""
    import importlib.util

    if importlib.util.find_spec("pygame") is not None:
        pytest.skip("pygame is installed here: CartPole renders")
    run_before = files_under(cartpole_run)
    proc = rlrun_eval(cartpole_run, "video=true", "export=policy.pt", cwd=tmp_path, env=rlrun.env(tmp_path))
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rlrun-eval: error: rendering CartPole-v1 needs a package: "), lines
    assert files_under(cartpole_run) == run_before and not any(tmp_path.iterdir())


# --- best.pt: what evaluation needs, no replay buffer ----------------------------------------------------


def test_best_pt_holds_no_replay_buffer_while_last_pt_keeps_it_for_resume(rlrun: RLRun, tmp_path):
    """checkpoint.replay=true keeps the replay in last.pt (an exact resume); best.pt never holds it, and
    rlrun-eval and load_policy act from best.pt alone."""
    run_dir = tmp_path / "run"
    result = rlrun("algo=dqn", *FAST, "total_steps=2000", "algo.learning_starts=500", "eval.every_steps=1000",
                   "checkpoint.replay=true", cwd=tmp_path, run_dir=run_dir)
    assert result.returncode == 0, result.describe()
    best_path, last_path = run_dir / "checkpoints" / "best.pt", run_dir / "checkpoints" / "last.pt"
    best = torch.load(best_path, weights_only=True)
    last = torch.load(last_path, weights_only=True)
    assert "replay" in last["algo"]  # 2000 CartPole transitions
    assert "replay" not in best["algo"]
    assert "replay" not in str(list(best["algo"].keys()))
    replay_bytes = sum(t.numel() * t.element_size() for t in last["algo"]["replay"].values()
                       if isinstance(t, torch.Tensor))
    assert replay_bytes > 2000 * 4 * 4  # at least the observations
    assert best_path.stat().st_size < last_path.stat().st_size - replay_bytes / 2
    proc = rlrun_eval(best_path, "episodes=2", f"json={tmp_path / 'e.json'}", cwd=tmp_path, env=rlrun.env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    policy = load_policy(best_path)
    assert policy.act(np.zeros((3, 4), dtype=np.float32)).shape == (3,)


# --- exports: float32 inputs with a batch axis, ONNX and TorchScript alike --------------------------------


def observations(policy, count: int) -> np.ndarray:
    """Observations of a real episode (random actions), in the env's own dtype."""
    env = policy.make_env()
    obs, _ = env.reset(seed=0)
    seen = [obs]
    while len(seen) < count:
        obs, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            obs, _ = env.reset()
        seen.append(obs)
    env.close()
    return np.stack(seen)


@pytest.mark.parametrize("run", ["cartpole_run", "pendulum_sac_run", "cheetah"])
def test_onnx_export_runs_in_onnxruntime_on_float32_batches_as_load_policy_acts(run, request, rlrun: RLRun, tmp_path):
    """rlrun-eval export=policy.onnx / policy.pt: the ONNX file declares float32 [batch, *obs shape] (HalfCheetah's
    float64 observations included) and gives load_policy's deterministic actions in onnxruntime, for a batch of
    several observations and for one; the TorchScript file takes the same shapes and refuses an unbatched one."""
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is the `export` extra: pip install 'rlrun[export]'")
    run_dir = request.getfixturevalue(run)
    run_dir = run_dir[0] if isinstance(run_dir, tuple) else run_dir
    proc = rlrun_eval(run_dir, "episodes=1", "export=onnx/policy.onnx", cwd=tmp_path, env=rlrun.env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    proc = rlrun_eval(run_dir, "episodes=1", "export=policy.pt", cwd=tmp_path, env=rlrun.env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    policy = load_policy(run_dir)
    batch = observations(policy, 9)
    expected = policy.act(batch)

    session = ort.InferenceSession(str(tmp_path / "onnx" / "policy.onnx"), providers=["CPUExecutionProvider"])
    (declared,) = session.get_inputs()
    assert (declared.name, declared.type) == ("obs", "tensor(float)")
    assert declared.shape == ["batch", *policy.observation_space.shape]
    (actions,) = session.run(None, {"obs": batch.astype(np.float32)})
    np.testing.assert_allclose(actions, expected, rtol=0, atol=1e-5)
    (one,) = session.run(None, {"obs": batch[:1].astype(np.float32)})
    np.testing.assert_allclose(one, expected[:1], rtol=0, atol=1e-5)
    with pytest.raises(Exception, match="rank"):
        session.run(None, {"obs": batch[0].astype(np.float32)})

    scripted = torch.jit.load(str(tmp_path / "policy.pt"))
    with torch.no_grad():
        for dtype in (torch.float32, torch.float64):  # the graph casts to float32 inside
            np.testing.assert_allclose(scripted(torch.as_tensor(batch).to(dtype)).numpy(), expected, rtol=0, atol=1e-5)
        np.testing.assert_allclose(scripted(torch.as_tensor(batch[:1])).numpy(), expected[:1], rtol=0, atol=1e-5)
        shape = ", ".join(map(str, policy.observation_space.shape))
        with pytest.raises(Exception, match=rf"expected observations of shape \[batch, {shape}\]"):
            scripted(torch.as_tensor(batch[0]))


# --- rlrun --help --------------------------------------------------------------------------------------


def help_groups(stdout: str) -> dict[str, list[str]]:
    lines = stdout.splitlines()
    start = lines.index("== Config groups: choose one of each (group=option) ==") + 1
    groups = {}
    for line in lines[start:]:
        if ": " not in line or line.startswith("Sweeps"):
            break
        group, options = line.split(": ", 1)
        groups[group] = options.split(", ")
    return groups


def test_help_lists_only_the_groups_a_run_chooses_and_the_composed_config(rlrun: RLRun, tmp_path):
    (tmp_path / "my_conf" / "env").mkdir(parents=True)
    (tmp_path / "my_conf" / "env" / "MyEnv.yaml").write_text("id: CartPole-v1\n")
    result = rlrun("--config-dir", tmp_path / "my_conf", "algo=sac", "--help", cwd=tmp_path)
    assert result.returncode == 0, result.describe()
    groups = help_groups(result.stdout)
    assert list(groups) == ["algo", "env", "network", "hardware", "logger"]
    assert {"ppo", "sac", "dqn"} <= set(groups["algo"])
    assert {"HalfCheetah", "CartPole", "MyEnv"} <= set(groups["env"]) and "generic" not in groups["env"]
    for internal in ("bench", "tune", "tuned", "hydra", "hydra/launcher", "hydra/job_logging"):
        assert not any(line.startswith(f"{internal}: ") for line in result.stdout.splitlines()), internal
    # The config this command line composes follows: SAC's keys, the run-level keys.
    config = result.stdout.split("== Config: what this command line composes", 1)[1]
    assert "_target_: rlrun.algos.sac.SAC" in config and "total_steps: " in config
    assert "hydra:" not in config
    assert not (tmp_path / "outputs").exists()  # nothing ran


def test_help_reads_each_algorithms_action_spaces_as_the_class_declares_them():
    """`rlrun --help` reads `action_spaces` from the algorithms' source (no torch import): the same as the classes."""
    from hydra.utils import get_class

    from rlrun.cli import action_spaces_of_algorithms
    from rlrun.resources import algo_target

    kinds = action_spaces_of_algorithms()
    assert len(kinds) == 12
    for name, spaces in kinds.items():
        assert spaces == tuple(get_class(algo_target(name)).action_spaces), name


def test_help_imports_neither_torch_nor_gymnasium(tmp_path):
    code = ("import sys; sys.argv = ['rlrun', '--help']\nfrom rlrun.cli import main\nmain()\n"
            "print('IMPORTED', 'torch' in sys.modules, 'gymnasium' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "IMPORTED False False"


# --- MuJoCo 4: HalfCheetah without settotalmass, the same dynamics, no MUJOCO_LOG.TXT ---------------------


def gymnasium_half_cheetah() -> Path:
    return Path(gym.__file__).parent / "envs" / "mujoco" / "assets" / "half_cheetah.xml"


def test_half_cheetah_model_has_gymnasiums_masses_inertias_and_trajectory(tmp_path, monkeypatch):
    """rlrun's half_cheetah.xml against gymnasium's own (compiled with its settotalmass, which warns: in a
    temporary directory, file logging off): the same masses and inertias to rounding, the same 300-step
    trajectory under random controls."""
    mujoco = pytest.importorskip("mujoco")
    from rlrun.envs.mujoco_models import ASSETS, no_log_file

    monkeypatch.chdir(tmp_path)
    no_log_file()
    original = mujoco.MjModel.from_xml_path(str(gymnasium_half_cheetah()))
    ours = mujoco.MjModel.from_xml_path(str(ASSETS / "half_cheetah.xml"))
    assert "settotalmass" in gymnasium_half_cheetah().read_text()
    assert "settotalmass" not in (ASSETS / "half_cheetah.xml").read_text().split("-->", 1)[1]
    assert original.body_mass.sum() == pytest.approx(14.0, rel=1e-12)
    np.testing.assert_allclose(ours.body_mass, original.body_mass, rtol=1e-14, atol=0)
    np.testing.assert_allclose(ours.body_inertia, original.body_inertia, rtol=1e-14, atol=0)
    for name in ("nq", "nv", "nu", "nbody", "ngeom"):
        assert getattr(ours, name) == getattr(original, name)
    np.testing.assert_array_equal(ours.opt.timestep, original.opt.timestep)
    data_ours, data_original = mujoco.MjData(ours), mujoco.MjData(original)
    controls = np.random.default_rng(0).uniform(-1, 1, (300, ours.nu))
    for control in controls:
        data_ours.ctrl[:], data_original.ctrl[:] = control, control
        mujoco.mj_step(ours, data_ours)
        mujoco.mj_step(original, data_original)
    assert np.abs(data_original.qpos - original.qpos0).max() > 0.1  # the cheetah moved
    np.testing.assert_allclose(data_ours.qpos, data_original.qpos, rtol=0, atol=1e-9)
    np.testing.assert_allclose(data_ours.qvel, data_original.qvel, rtol=0, atol=1e-9)
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()


def test_rlrun_makes_half_cheetah_from_its_model_unless_the_user_names_one():
    from rlrun.envs import env_config, make_env
    from rlrun.envs.mujoco_models import ASSETS

    env = make_env(env_config({"id": "HalfCheetah-v5"}))
    assert Path(env.unwrapped.fullpath) == ASSETS / "half_cheetah.xml"
    env.close()
    env = make_env(env_config({"id": "HalfCheetah-v5", "kwargs": {"xml_file": str(gymnasium_half_cheetah())}}))
    assert Path(env.unwrapped.fullpath) == gymnasium_half_cheetah()
    env.close()


def test_a_half_cheetah_run_prints_no_settotalmass_warning_and_leaves_no_mujoco_log(cheetah):
    run_dir, cwd, output = cheetah
    assert "settotalmass" not in output
    assert not (cwd / "MUJOCO_LOG.TXT").exists() and not (run_dir / "MUJOCO_LOG.TXT").exists()
