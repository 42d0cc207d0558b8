"""A trained run as a policy: `load_policy`, evaluation episodes (`rlrun-eval`), videos, export.

A checkpoint holds the run's resolved config, the algorithm's state and the training env's
normalisation statistics. `load_policy` rebuilds the algorithm from that config, loads its state and
wraps its evaluation policy (`algo.act`, the one the runner evaluates) with the normalisation frozen:
raw observations in, the actions the env takes out. With the run's evaluation seed the episodes are
those of the run's own evaluations, so `rlrun-eval` reproduces the returns in eval_episodes.csv.

`export` writes the deterministic acting network, normalisation and action clipping included, as
TorchScript (.pt) or ONNX (.onnx): a deployed policy needs neither rlrun nor gymnasium.
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from hydra.utils import get_class
from omegaconf import OmegaConf
from torch import nn

from rlrun import checkpoint
from rlrun.config import NON_NEGATIVE, POSITIVE, ConfigError, from_config
from rlrun.envs import EnvConfig, RunningMeanStd, VecEnv, env_config, make_env, spaces_of
from rlrun.envs.normalize import obs_statistics
from rlrun.envs.spaces import ObservationTransform
from rlrun.envs.vector import as_network_input
from rlrun.envs.video import VideoWriter, make_render_env, play_episode, render, video_fps
from rlrun.hardware import Hardware
from rlrun.nets import ActorCritic, DeterministicActor, DiagGaussian, QNetwork, SquashedGaussianActor, network_config
from rlrun.nets.observation import observation_input

CHECKPOINTS = ("best.pt", "last.pt")  # what a run directory is evaluated with, in this order


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file as given, or a run directory's checkpoints/best.pt, else its last.pt."""
    path = Path(path)
    if path.is_file():
        return path
    for folder in (path / "checkpoints", path):
        for name in CHECKPOINTS:
            if (folder / name).is_file():
                return folder / name
    if not path.exists():
        raise ConfigError(f"{path}: no such run directory or checkpoint file")
    raise ConfigError(f"{path}: no checkpoints/best.pt or checkpoints/last.pt there; pass a run directory "
                      "made by rlrun or a checkpoint file")


def run_dir_of(ckpt: Path) -> Path:
    return ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent


class Policy:
    """A trained agent: `act(obs)` for one observation or a batch (raw, as the env returns them)."""

    def __init__(self, algo, algo_name: str, env_cfg: EnvConfig, train_env_cfg: EnvConfig,
                 obs_rms: RunningMeanStd | None, config: dict, path: Path, global_step: int):
        self.algo = algo
        self.algo_name = algo_name
        self.env_cfg = env_cfg  # the env to evaluate in (the run's, with any overrides); see make_env
        self.train_env_cfg = train_env_cfg
        self.obs_rms = obs_rms
        self.config = config  # the run's resolved config
        self.path = path
        self.global_step = global_step
        self.observation_space, self.action_space = spaces_of(env_cfg)
        # The env's observations as the networks read them (rlrun.envs.spaces), as the training env did.
        self.transform = ObservationTransform(self.observation_space)

    def normalize(self, obs):
        """As the training env did (rlrun.envs.VecEnv.normalize_obs), with its statistics frozen."""
        if self.obs_rms is None:
            return as_network_input(obs)
        return self.obs_rms.normalize(obs, self.train_env_cfg.clip_obs)

    def act(self, obs, deterministic: bool = True) -> np.ndarray:
        """The action(s) for raw observation(s) (a dict of them for Dict spaces); continuous actions
        clipped to the env's bounds; Discrete and MultiDiscrete actions as the env numbers them."""
        single = self.transform.is_single(obs)
        batch = self.transform.single(obs) if single else self.transform(obs)
        actions = self.algo.act(self.normalize(batch), deterministic)
        if isinstance(self.action_space, gym.spaces.Box):
            actions = np.clip(actions, self.action_space.low, self.action_space.high)
        elif np.any(getattr(self.action_space, "start", 0) != 0):
            actions = actions + self.action_space.start
        return actions[0] if single else actions

    def make_env(self, render_mode: str | None = None) -> gym.Env:
        """The env the policy acts in (a gymnasium env, unseeded: pass reset(seed=...))."""
        return make_env(self.env_cfg, render_mode=render_mode)

    def network(self, check_shapes: bool = False) -> nn.Module:
        """The deterministic policy as one torch module: raw observations (a batch) -> actions.
        `check_shapes`: refuse, in one message, an input that is not [batch, *observation shape] (the
        TorchScript export does, so that it accepts the shapes its ONNX export accepts, whatever the network)."""
        return ActingNetwork(deterministic_head(self.algo), observation_input(self.transform, self.obs_rms,
                             self.train_env_cfg.clip_obs), self.action_space,
                             input_shapes(self.observation_space) if check_shapes else None)

    def export(self, path: str | Path) -> Path:
        """Write `network()` as TorchScript (.pt, .ts) or ONNX (.onnx): one input per observation (per key of a
        Dict space, in the Dict's key order), of shape [batch, *observation shape] with a dynamic batch axis;
        float observations as float32 (the graph casts what it is given to float32 inside; ONNX declares
        float32), integer ones (images, discrete) in the space's own dtype. Output: the actions, [batch, ...]."""
        path = Path(path)
        check_export_name(path, "export")
        module = self.network(check_shapes=path.suffix != ".onnx")
        samples = [self.observation_space.sample() for _ in range(2)]
        if isinstance(self.observation_space, gym.spaces.Dict):
            # One input per key, in the Dict's key order, named by the keys.
            keys = list(self.observation_space.spaces)
            example = tuple(export_input(np.stack([sample[key] for sample in samples])) for key in keys)
        else:
            keys = ["obs"]
            example = (export_input(np.stack(samples)),)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".onnx":
            torch.onnx.export(module, example, str(path), input_names=keys, output_names=["action"],
                              dynamic_axes={**{key: {0: "batch"} for key in keys}, "action": {0: "batch"}},
                              dynamo=False)
        else:
            # Tracing records the ops for this input; none of them branches on values or the batch size (the
            # shape check is a scripted function, kept as a call).
            torch.jit.trace(module, example).save(str(path))
        return path


# --- export: file names, inputs ----------------------------------------------------------------------

EXPORT_FORMATS = {".onnx": "ONNX", ".pt": "TorchScript", ".ts": "TorchScript"}


def check_export_name(path: Path, key: str) -> None:
    """A file name whose suffix names a format rlrun exports, with the packages that format needs installed."""
    if path.suffix not in EXPORT_FORMATS:
        raise ConfigError(f"{key}={path}: the file name must end in .onnx (ONNX) or .pt / .ts (TorchScript), "
                          f"not '{path.suffix or 'no suffix'}'")
    if path.suffix == ".onnx":
        try:
            import onnx  # noqa: F401 -- torch's ONNX exporter writes the file through it
        except ImportError:
            raise ConfigError(f"{key}={path}: ONNX export needs the onnx package: pip install 'rlrun[export]' "
                              "(onnx, and onnxruntime to run the file); or export TorchScript (a .pt file name)") from None


def export_input(batch: np.ndarray) -> torch.Tensor:
    """An example input of the exported graph: float observations as float32 (float64 MuJoCo observations
    included: deployment runtimes such as TensorRT expect float32), others in their own dtype."""
    tensor = torch.as_tensor(batch)
    return tensor.float() if tensor.is_floating_point() else tensor


def input_shapes(space: gym.Space) -> list[tuple[str, list[int]]]:
    """(name, shape of one observation) per input of the exported graph: "obs", or one per key of a Dict."""
    if isinstance(space, gym.spaces.Dict):
        return [(key, list(sub.shape)) for key, sub in space.spaces.items()]
    return [("obs", list(space.shape))]


def batch_of(obs: torch.Tensor, shape: list[int], name: str) -> torch.Tensor:
    """`obs` if it is a batch of observations of `shape`, else a ValueError saying the shape wanted. Compiled
    with torch.jit.script, so that the traced TorchScript export keeps the check (tracing keeps no `if`)."""
    if obs.dim() != len(shape) + 1 or obs.shape[1:] != shape:
        wanted = "[batch" + "".join([", " + str(size) for size in shape]) + "]"
        raise ValueError("input " + name + ": expected observations of shape " + wanted + " (a batch: add a "
                         "leading axis for one observation, obs[None]), got " + str(obs.shape))
    return obs


# --- the acting network, for export ------------------------------------------------------------------


class ActorCriticMode(nn.Module):
    """The mode of an on-policy actor: the Gaussian's mean, or the most likely discrete action."""

    def __init__(self, net: ActorCritic):
        super().__init__()
        self.actor = net.actor
        # Categorical, MultiCategorical, Bernoulli: their mode (argmax per dimension, bits of positive logit).
        self.discrete_mode = None if isinstance(net.dist, DiagGaussian) else net.dist.mode

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.actor(obs)
        return out if self.discrete_mode is None else self.discrete_mode(out)


class SquashedMode(nn.Module):
    """SAC's evaluation action: the squashed mean."""

    def __init__(self, actor: SquashedGaussianActor):
        super().__init__()
        self.actor = actor

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.mode(obs)


class Greedy(nn.Module):
    """argmax_a Q(s, a). (A DQN with algo.eval_epsilon > 0 evaluates epsilon-greedily; its export is greedy.)"""

    def __init__(self, q: QNetwork):
        super().__init__()
        self.q = q

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.q(obs).argmax(-1)


def deterministic_head(algo) -> nn.Module:
    """The network that maps a normalised observation to the algorithm's deterministic action."""
    actor, net = getattr(algo, "actor", None), getattr(algo, "net", None)
    if isinstance(actor, SquashedGaussianActor):
        head = SquashedMode(actor)
    elif isinstance(actor, DeterministicActor):  # DDPG, TD3
        head = actor
    elif isinstance(net, ActorCritic):  # PPO, A2C, A3C, TRPO, REINFORCE
        head = ActorCriticMode(net)
    elif isinstance(net, QNetwork):  # DQN and its variants
        head = Greedy(net)
    else:
        raise ConfigError(f"export does not know the acting network of {type(algo).__name__}")
    # A copy on the CPU in eval mode (DDPG's batch norm then uses its running statistics, as acting does).
    return copy.deepcopy(head).cpu().eval().requires_grad_(False)


class ActingNetwork(nn.Module):
    """Raw observation (Dict: one tensor per key, in key order) -> action: the observation transform and
    frozen normalisation (rlrun.nets.observation), the policy's deterministic head, bounds. With
    `shapes` ((name, one observation's shape) per input), inputs not batches of those shapes are refused."""

    def __init__(self, head: nn.Module, observation: nn.Module, action_space: gym.Space,
                 shapes: list[tuple[str, list[int]]] | None = None):
        super().__init__()
        self.head = head
        self.observation = observation
        self.shapes = shapes
        self.batch_of = torch.jit.script(batch_of) if shapes is not None else None
        start = getattr(action_space, "start", None)
        self.offset = start is not None and bool(np.any(start != 0))
        if self.offset:
            self.register_buffer("start", torch.as_tensor(start, dtype=torch.int64))
        self.bounded = isinstance(action_space, gym.spaces.Box)
        if self.bounded:
            self.register_buffer("low", torch.as_tensor(action_space.low, dtype=torch.float32))
            self.register_buffer("high", torch.as_tensor(action_space.high, dtype=torch.float32))

    def forward(self, *obs: torch.Tensor) -> torch.Tensor:
        if self.shapes is not None:
            obs = tuple(self.batch_of(x, shape, name) for x, (name, shape) in zip(obs, self.shapes))
        action = self.head(self.observation(*obs))
        if self.offset:
            action = action + self.start
        if self.bounded:
            action = torch.maximum(torch.minimum(action, self.high), self.low)
        return action


# --- loading ------------------------------------------------------------------------------------------

# Modules a checkpoint's config may name without the caller's leave: rlrun's own and gymnasium's (an env id
# without a `module:` prefix is one of gymnasium's registered ids, made without importing anything new).
TRUSTED_PACKAGES = ("rlrun", "gymnasium")


def modules_named(config: dict) -> list[tuple[str, str]]:
    """(config key, module) for each module outside rlrun and gymnasium that rebuilding the policy of this
    config would import: the env's `module:id`, the wrappers' classes, the algorithm's class."""
    env = config.get("env") if isinstance(config.get("env"), dict) else {}
    algo = config.get("algo") if isinstance(config.get("algo"), dict) else {}
    named = []
    if isinstance(env.get("id"), str) and ":" in env["id"]:
        named.append(("env.id", env["id"].split(":", 1)[0]))
    for i, entry in enumerate(env.get("wrappers") if isinstance(env.get("wrappers"), list) else []):
        path = entry.get("_target_") if isinstance(entry, dict) else entry
        named.append((f"env.wrappers[{i}]", str(path).rpartition(".")[0]))
    named.append(("algo._target_", str(algo.get("_target_")).rpartition(".")[0]))
    return [(key, module) for key, module in named
            if not any(module == package or module.startswith(package + ".") for package in TRUSTED_PACKAGES)]


def load_policy(path: str | Path, env_overrides: list[str] | tuple[str, ...] = (), device: str = "cpu",
                trust_code: bool = False) -> Policy:
    """The policy of a run directory (its checkpoints/best.pt, else last.pt) or of a checkpoint file.
    `env_overrides` ("max_episode_steps=200", "kwargs.reset_noise_scale=0.2") change the env it is
    evaluated in, not the network it was trained with.

    A run directory is data: its config may name modules to import (an env `module:id`, wrapper or
    algorithm classes), which run their code when imported. Those outside rlrun and gymnasium are imported
    only with `trust_code=True` (for runs of your own envs, or directories you trust); else a ConfigError."""
    ckpt = find_checkpoint(path)
    try:
        state = checkpoint.load(ckpt)
    except Exception as error:  # a truncated or foreign file: torch raises many kinds
        raise ConfigError(f"{ckpt} cannot be read as an rlrun checkpoint ({type(error).__name__}: "
                          f"{str(error).splitlines()[0] if str(error) else 'empty'})") from None
    if not (isinstance(state, dict) and {"config", "algo", "env"} <= state.keys()):
        raise ConfigError(f"{ckpt} is not an rlrun checkpoint (no config, algo and env state in it)")
    config = state["config"]
    foreign = modules_named(config) if isinstance(config, dict) else []
    if foreign and not trust_code:
        named = ", ".join(f"{module} ({key})" for key, module in foreign)
        raise ConfigError(f"{ckpt}: its config names code to import: {named}; a run directory is data, so "
                          "nothing it names is imported unless you trust it: pass trust_code=true "
                          "(load_policy(..., trust_code=True))")
    cfg = OmegaConf.create(config)
    try:
        # A `${oc.env:NAME}` the run kept as written (rlrun.secrets.recordable_config) is read from this environment.
        OmegaConf.resolve(cfg)
    except Exception as error:  # noqa: BLE001 -- OmegaConf's resolution errors have many types
        raise ConfigError(f"{ckpt}: its config cannot be resolved here ({str(error).splitlines()[0]}); set the "
                          "environment variables it reads (${oc.env:...})") from None
    train_env_cfg = env_config(cfg.env)
    try:
        overrides = OmegaConf.from_dotlist([o.removeprefix("env.") for o in env_overrides])
    except Exception as error:
        raise ConfigError(f"env overrides {list(env_overrides)}: {str(error).splitlines()[0]}") from None
    env_cfg = env_config(OmegaConf.merge(cfg.env, overrides))
    algo_cls = get_class(cfg.algo._target_)
    algo_cfg = algo_cls.parse_config({k: v for k, v in cfg.algo.items() if k != "_target_"})
    hw = Hardware(device=torch.device(device), torch_threads=torch.get_num_threads(), vector_backend="sync",
                  workers=1)
    seed = int(cfg.seed)
    # The algorithm is built as the runner built it (its constructor wants the training env, for the
    # spaces and the number of copies), then that env is closed: acting never steps it.
    env = VecEnv(train_env_cfg, getattr(algo_cfg, "num_envs", 1), seed, "sync", getattr(algo_cfg, "gamma", 0.99),
                 training=False)
    try:
        algo = algo_cls(algo_cfg, env, network_config(cfg.network), hw, seed, int(cfg.total_steps))
        try:
            algo.load_state_dict({k: v for k, v in state["algo"].items() if k != "replay"})
        except (RuntimeError, KeyError, ValueError, TypeError) as error:
            raise ConfigError(f"{ckpt}: its state does not fit the config saved with it "
                              f"({str(error).splitlines()[0]})") from None
        observation_space, action_space = env.observation_space, env.action_space
    finally:
        env.close()
    obs_rms = None
    if train_env_cfg.normalize_obs and state["env"].get("obs_rms") is not None:
        obs_rms = obs_statistics(observation_space)
        obs_rms.load_state_dict(state["env"]["obs_rms"])
    policy = Policy(algo, state.get("algo_name", cfg.algo._target_), env_cfg, train_env_cfg, obs_rms, config, ckpt,
                    int(state.get("global_step", 0)))
    if (shapes(policy.transform.space), policy.action_space) != (shapes(observation_space), action_space):
        raise ConfigError(f"the env overrides change the spaces the policy was trained on ({shapes(observation_space)}, "
                          f"{action_space} -> {shapes(policy.transform.space)}, {policy.action_space})")
    return policy


def shapes(space: gym.Space):
    """A space's shape; a Dict's shape per key."""
    if isinstance(space, gym.spaces.Dict):
        return {key: sub.shape for key, sub in space.spaces.items()}
    return space.shape


# --- rlrun-eval ---------------------------------------------------------------------------------------


@dataclass
class EvalArgs:
    """The keys of `rlrun-eval <run dir | checkpoint> [key=value ...]`."""

    episodes: int = field(default=10, metadata={"rule": POSITIVE})
    deterministic: bool = True  # the policy's mode (false: sample actions)
    seed: int | None = field(default=None, metadata={"rule": NON_NEGATIVE})  # default: the run's evaluation seed
    video: bool = False  # MP4 of each episode under <run dir>/videos/
    video_frames: int | None = field(default=None, metadata={"rule": POSITIVE})  # frames per video (None: all)
    video_size: list[int] | None = None  # [width, height] of the frames (None: the env's own)
    json: str | None = None  # where to write returns and lengths (default <run dir>/eval/<time>_<checkpoint>.json)
    export: str | None = None  # also write the acting network: policy.onnx or policy.pt (TorchScript)
    device: str = "cpu"
    trust_code: bool = False  # import the modules the run's config names (its env package, wrappers, algorithm)


def parse_eval_args(argv: list[str]) -> tuple[str, EvalArgs, list[str]]:
    """(checkpoint or run dir, the keys, the env overrides) of rlrun-eval's command line, each key checked."""
    positional = [a for a in argv if "=" not in a]
    if len(positional) != 1:
        raise ConfigError("name one run directory or checkpoint file: rlrun-eval outputs/<date>/<run> [episodes=10 ...]")
    pairs = [a for a in argv if "=" in a]
    env_overrides = [a for a in pairs if a.startswith("env.")]
    keys = OmegaConf.to_container(OmegaConf.from_dotlist([a for a in pairs if not a.startswith("env.")]))
    args = from_config(EvalArgs, keys, "rlrun-eval")
    if args.video_size is not None and (len(args.video_size) != 2 or min(args.video_size) <= 0):
        raise ConfigError(f"video_size must be [width,height] in pixels (got {args.video_size})")
    if args.export is not None:
        check_export_name(Path(args.export), "export")
    if args.video:
        try:
            import imageio.v2  # noqa: F401
            import imageio_ffmpeg  # noqa: F401 -- the plugin imageio needs for MP4
        except ImportError:
            raise ConfigError("video=true needs imageio and imageio-ffmpeg: pip install 'rlrun[video]'") from None
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise ConfigError(f"device={args.device}: not a torch device; use device=cpu or device=cuda") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device={args.device}: torch sees no CUDA device here; use device=cpu")
    return positional[0], args, env_overrides


def check_writable(path: Path, key: str, folder: bool = False) -> None:
    """That `path` (a file, or a folder with folder=True) can be written, creating the folders it needs,
    without writing anything: checked before the first episode, so that a bad path costs no evaluation."""
    if not folder and path.is_dir():
        raise ConfigError(f"{key}: {path} is a folder; name a file in it")
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{key}: {path} cannot be written (permission denied); name another path")
    existing = path if folder else path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}: {existing} is a file, so {path} cannot be made; name another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: {path} cannot be written: the folder {existing} is not writable (permission "
                          "denied or a read-only file system); name another path")


def evaluate_policy(policy: Policy, episodes: int, seed: int | None, deterministic: bool = True,
                    video_dir: Path | None = None, video_frames: int | None = None,
                    video_size: tuple[int, int] | None = None) -> dict:
    """`episodes` episodes in one env seeded once with `seed` (as the runner's evaluation env): their
    returns and lengths, and the videos written."""
    size = tuple(video_size) if video_size else None
    env = make_render_env(policy.env_cfg, size) if video_dir is not None else policy.make_env()
    returns, lengths, videos = [], [], []
    try:
        for episode in range(episodes):
            video = None
            if video_dir is not None:
                video = VideoWriter(video_dir / f"{policy.path.stem}_step{policy.global_step}_episode{episode}.mp4",
                                    video_fps(env))
            try:
                episode_return, length = play_episode(env, lambda obs: policy.act(obs, deterministic),
                                                      seed if episode == 0 else None, video, size, video_frames)
            finally:
                if video is not None:
                    video.close()
                    videos.append({"path": str(video.path), "frames": video.frames, "seconds": video.seconds})
            returns.append(episode_return)
            lengths.append(length)
    finally:
        env.close()
    return {"returns": returns, "lengths": lengths, "videos": videos}


def check_rendering(policy: Policy, size: list[int] | None) -> None:
    """Render one frame, so that a missing renderer (pygame, a GL backend) is reported before any file is written."""
    env = make_render_env(policy.env_cfg, tuple(size) if size else None)
    try:
        env.reset(seed=0)
        render(env, tuple(size) if size else None)
    finally:
        env.close()


def evaluation_seed(policy: Policy) -> int:
    """The seed of the run's own evaluations (seed + eval.seed_offset)."""
    return int(policy.config["seed"]) + int(policy.config.get("eval", {}).get("seed_offset", 0))


def run_eval(argv: list[str]) -> dict:
    """rlrun-eval: evaluate, print mean +- std, write the JSON (and videos, and the export)."""
    from rlrun.run import write_json

    target, args, env_overrides = parse_eval_args(argv)
    ckpt = find_checkpoint(target)
    run_dir = run_dir_of(ckpt)
    # Every output path is checked before anything is loaded or played: a bad one costs no episodes.
    out = Path(args.json) if args.json else run_dir / "eval" / f"{datetime.now():%Y-%m-%d_%H-%M-%S}_{ckpt.stem}.json"
    check_writable(out, "json" if args.json else "the evaluation record (or name another file with json=PATH)")
    if args.export:
        check_writable(Path(args.export), "export")
    if args.video:
        check_writable(run_dir / "videos", "video=true", folder=True)
    policy = load_policy(ckpt, env_overrides, args.device, args.trust_code)
    seed = evaluation_seed(policy) if args.seed is None else args.seed
    if args.video:
        check_rendering(policy, args.video_size)
    exported = policy.export(args.export) if args.export else None  # before the episodes: it takes a second
    result = evaluate_policy(policy, args.episodes, seed, args.deterministic,
                             run_dir / "videos" if args.video else None, args.video_frames, args.video_size)
    returns = result["returns"]
    summary = {"checkpoint": str(policy.path), "global_step": policy.global_step, "algo": policy.algo_name,
               "env_id": policy.env_cfg.id, "env_overrides": env_overrides, "episodes": args.episodes,
               "deterministic": args.deterministic, "seed": seed, "mean_return": float(np.mean(returns)),
               "std_return": float(np.std(returns)), **result}
    if exported is not None:
        summary["export"] = str(exported)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, summary)
    mode = "deterministic" if args.deterministic else "stochastic"
    print(f"{policy.path} (step {policy.global_step:,}), {policy.env_cfg.id}: return "
          f"{summary['mean_return']:.2f} +- {summary['std_return']:.2f} over {args.episodes} episodes ({mode}, "
          f"seed {seed}); lengths {min(result['lengths'])}-{max(result['lengths'])}", flush=True)
    print(f"returns and lengths: {out}")
    for video in result["videos"]:
        print(f"video: {video['path']} ({video['frames']} frames, {video['seconds']:.1f} s)")
    if args.export:
        print(f"exported the acting network: {summary['export']}")
    return summary


__all__ = ["Policy", "evaluate_policy", "find_checkpoint", "load_policy", "run_eval"]
