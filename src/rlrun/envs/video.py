"""Episodes rendered headless and written as MP4: shared by `rlrun-eval video=true` and the runner's
training videos (`eval.video_every_steps`).

MuJoCo renders through OpenGL, and with MUJOCO_GL unset it looks for a window system and fails on a
server ("an OpenGL platform library has not been loaded"). `choose_gl_backend` picks a headless one
before the first render context is made: EGL (Debian libegl1 + libegl-mesa0, software llvmpipe without
a GPU), else OSMesa (libosmesa6). Measured here: ~4-10 frames/s at 240x240 to 480x480 in software, so a
1000-step episode takes minutes to render: videos can be capped in length and frame size.

MP4 is written by imageio's ffmpeg plugin (the `video` extra: imageio-ffmpeg ships its own ffmpeg).
"""

from __future__ import annotations

import ctypes.util
import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np

from rlrun.config import ConfigError
from rlrun.envs.mujoco_models import is_mujoco

Act = Callable[[np.ndarray], np.ndarray]  # one raw observation -> the action the env takes


def choose_gl_backend() -> str | None:
    """Set MUJOCO_GL to a headless OpenGL backend unless the user chose one; returns the backend.
    Call it before mujoco's rendering is imported (mujoco reads MUJOCO_GL when it loads its GL context)."""
    if os.environ.get("MUJOCO_GL"):
        return os.environ["MUJOCO_GL"]
    for backend, library in (("egl", "EGL"), ("osmesa", "OSMesa")):
        if ctypes.util.find_library(library):
            os.environ["MUJOCO_GL"] = backend
            return backend
    return None  # a desktop with a display: gymnasium tries glfw itself


def make_render_env(env_cfg, size: tuple[int, int] | None = None) -> gym.Env:
    """The env of `env_cfg` rendering rgb_array frames. `size` (width, height) makes MuJoCo render at that
    size (its cost grows with the pixels); other envs' frames are resized after rendering."""
    from rlrun.envs.vector import make_env

    choose_gl_backend()
    if size is not None and is_mujoco(env_cfg.id):
        env_cfg = dataclasses.replace(env_cfg, kwargs={**env_cfg.kwargs, "width": size[0], "height": size[1]})
    return make_env(env_cfg, render_mode="rgb_array")


def render(env: gym.Env, size: tuple[int, int] | None) -> np.ndarray:
    try:
        frame = env.render()
    except gym.error.DependencyNotInstalled as error:  # classic control draws with pygame
        raise ConfigError(f"rendering {env.spec.id if env.spec else 'the env'} needs a package: {error}") from None
    except Exception as error:  # mujoco.FatalError, AttributeError from PyOpenGL: no usable GL context
        backend = os.environ.get("MUJOCO_GL", "unset")
        raise ConfigError(f"rendering {env.spec.id if env.spec else 'the env'} failed with MUJOCO_GL={backend} "
                          f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
                          "headless rendering needs EGL (apt-get install libegl1 libegl-mesa0) or OSMesa "
                          "(apt-get install libosmesa6, then MUJOCO_GL=osmesa)") from None
    if size is not None and frame.shape[1::-1] != tuple(size):
        from PIL import Image

        frame = np.asarray(Image.fromarray(frame).resize(size, Image.BILINEAR))
    return frame


class VideoWriter:
    """Frames appended one by one to an MP4 (H.264, yuv420p: plays in browsers, W&B and TensorBoard)."""

    def __init__(self, path: Path, fps: float, keep_width: int | None = None):
        try:
            import imageio.v2 as imageio
            import imageio_ffmpeg  # noqa: F401 -- the plugin imageio needs for MP4
        except ImportError:
            raise ConfigError("writing videos needs imageio and imageio-ffmpeg: pip install 'rlrun[video]'") from None
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fps = fps
        # macro_block_size=1: keep the frame size (imageio would otherwise resize to multiples of 16);
        # yuv420p needs even sides, which `append` pads to.
        self.writer = imageio.get_writer(self.path, fps=fps, codec="libx264", macro_block_size=1,
                                         pixelformat="yuv420p", ffmpeg_log_level="error")
        self.frames = 0
        # Small copies of the frames, for TensorBoard (which shows GIFs, not MP4): `keep_width` pixels wide.
        self.keep_width = keep_width
        self.kept: list[np.ndarray] = []

    def append(self, frame: np.ndarray) -> None:
        pad = ((0, frame.shape[0] % 2), (0, frame.shape[1] % 2), (0, 0))
        self.writer.append_data(np.pad(frame, pad) if any(p[1] for p in pad) else frame)
        self.frames += 1
        if self.keep_width is not None:
            step = max(1, frame.shape[1] // self.keep_width)
            self.kept.append(frame[::step, ::step].copy())

    def close(self) -> None:
        self.writer.close()

    @property
    def seconds(self) -> float:
        return self.frames / self.fps


def video_fps(env: gym.Env) -> float:
    return float(env.metadata.get("render_fps") or 30)


def play_episode(env: gym.Env, act: Act, seed: int | None, video: VideoWriter | None = None,
                 size: tuple[int, int] | None = None, max_frames: int | None = None) -> tuple[float, int]:
    """One episode (a whole game where an Atari env ends the learner's episode at each lost life), its
    return and length; its first `max_frames` frames (all if None) go to `video`. The episode always
    plays to its end, so that a capped video does not change the return. Continuous actions are clipped
    to the bounds, as the training env does."""
    box = isinstance(env.action_space, gym.spaces.Box)
    obs, _ = env.reset(seed=seed)
    total, length = 0.0, 0
    def record() -> None:
        if video is not None and (max_frames is None or video.frames < max_frames):
            video.append(render(env, size))

    record()
    while True:
        action = act(obs)
        if box:
            action = np.minimum(np.maximum(action, env.action_space.low), env.action_space.high)
        obs, reward, terminated, truncated, info = env.step(action)
        total += float(reward)
        length += 1
        record()
        if terminated or truncated:
            if info.get("game_over", True):
                break
            obs, _ = env.reset()  # a life lost, the game goes on (rlrun.envs.atari.Game)
    return total, length


def record_episode(env_cfg, act: Act, path: Path, seed: int | None, max_frames: int | None = None,
                   size: tuple[int, int] | None = None, keep_width: int | None = None) -> dict:
    """Render one episode of `act` into an MP4 at `path`; returns what was recorded (with `keep_width`,
    also "kept": the frames downscaled to about that width)."""
    size = tuple(size) if size else None
    env = make_render_env(env_cfg, size)
    try:
        video = VideoWriter(path, video_fps(env), keep_width)
        try:
            episode_return, length = play_episode(env, act, seed, video, size, max_frames)
        finally:
            video.close()
    finally:
        env.close()
    return {"path": str(path), "return": episode_return, "length": length, "frames": video.frames,
            "seconds": video.seconds, "fps": video.fps, "kept": video.kept}


def record_training_video(algo, train_env, env_cfg, run_dir: Path, step: int, seed: int, logger,
                          max_frames: int | None, size: tuple[int, int] | None) -> dict:
    """The runner's `eval.video_every_steps`: one evaluation episode (deterministic policy, the training
    env's normalisation frozen, the evaluation seed) as videos/step<N>.mp4, logged to W&B and TensorBoard."""
    def act(obs: np.ndarray) -> np.ndarray:
        return algo.act(train_env.normalize_obs(obs[None], update=False), deterministic=True)[0]

    recorded = record_episode(env_cfg, act, run_dir / "videos" / f"step{step}.mp4", seed, max_frames, size,
                              keep_width=160 if logger.tensorboard is not None else None)
    if logger.wandb_run is not None:
        import wandb

        logger.wandb_run.log({"global_step": step, "eval/video": wandb.Video(recorded["path"], format="mp4")})
    if logger.tensorboard is not None and recorded["kept"]:
        logger.tensorboard._get_file_writer().add_summary(gif_summary("eval/video", recorded["kept"],
                                                                      recorded["fps"]), step)
    return recorded


def gif_summary(tag: str, frames: list[np.ndarray], fps: float):
    """A TensorBoard image summary holding an animated GIF: what SummaryWriter.add_video writes, encoded
    with Pillow instead of moviepy (which add_video needs, and which would downgrade Pillow)."""
    import io

    from PIL import Image
    from tensorboard.compat.proto.summary_pb2 import Summary

    images = [Image.fromarray(frame) for frame in frames]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:], duration=1000 / fps, loop=0)
    height, width = frames[0].shape[:2]
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=buffer.getvalue())
    return Summary(value=[Summary.Value(tag=tag, image=image)])
