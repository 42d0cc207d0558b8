"""Hardware profiles: where the learner runs, how many torch threads, how envs are stepped, and how many
worker processes step them (A3C's actor-learners; the on-policy algorithms' sampler, rlrun.sampler)."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

import torch

from rlrun import openmp
from rlrun.config import POSITIVE, ConfigError, from_config, one_of, rule
from rlrun.processes import usable_cores


@dataclass
class HardwareConfig:
    device: str
    torch_threads: int = rule(POSITIVE)
    vector_backend: str = rule(one_of("sync", "async", "envpool"))
    # A count, or "auto": one per usable core (os.sched_getaffinity) on a CUDA learner, 1 on the CPU.
    workers: int | str = rule(("> 0 or auto", lambda v: v == "auto" if isinstance(v, str) else v > 0))


@dataclass
class Hardware:
    device: torch.device
    torch_threads: int
    vector_backend: str
    workers: int


def resolve(cfg) -> Hardware:
    """Check a hardware config and resolve `auto`; raises ConfigError when CUDA is asked for and absent."""
    hw = from_config(HardwareConfig, cfg, "hardware")
    name = hw.device
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"CUDA {torch.version.cuda}, no visible GPU"
        raise ConfigError(f"hardware.device={hw.device} needs CUDA, but torch {torch.__version__} has {build}; "
                          "use hardware=cpu or hardware=auto")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"hardware.device must be cpu, cuda, cuda:N or auto (got {hw.device!r})") from None
    return Hardware(device, hw.torch_threads, hw.vector_backend, resolve_workers(hw.workers, device))


def resolve_workers(workers: int | str, device: torch.device) -> int:
    """`auto`: with the learner on CUDA, one sampler worker per usable core (the envs are stepped on the
    CPU while the GPU learns); on the CPU, 1 (today's in-process path: on 2 cores, workers pay only
    with algo.overlap=true, which the user asks for; docs/sampler.md)."""
    if workers != "auto":
        return workers
    return usable_cores() if device.type == "cuda" else 1


def apply(hw: Hardware) -> None:
    """Set process-wide torch state for this run (again per job: multirun jobs share a process)."""
    torch.set_num_threads(hw.torch_threads)


def plan(hw: Hardware, algo_cls: type, algo_cfg) -> str:
    """The banner's words for how `algo_cls` uses this profile: processes, envs, threads."""
    num_envs = getattr(algo_cfg, "num_envs", 1)
    threads = f"{hw.torch_threads} torch thread{'s' * (hw.torch_threads > 1)}"
    overlap = getattr(algo_cfg, "overlap", False)
    if not getattr(algo_cls, "uses_workers", False):
        unused = f" (hardware.workers={hw.workers} unused: this algorithm steps its envs in this process)" \
            if hw.workers > 1 else ""
        return f"{num_envs} env{'s' * (num_envs > 1)} stepped in this process{unused}, {threads}"
    if not hasattr(algo_cfg, "overlap"):  # A3C: actor-learner processes, one env each
        return f"{hw.workers} actor-learner worker process{'es' * (hw.workers > 1)} (one torch thread each)"
    workers = min(hw.workers, num_envs)
    if workers == 1 and not overlap:
        unused = f" (hardware.workers={hw.workers} unused: one env)" if hw.workers > 1 else ""
        return f"{num_envs} env{'s' * (num_envs > 1)} stepped in this process{unused}, {threads}"
    capped = f" (hardware.workers={hw.workers} capped at algo.num_envs)" if workers < hw.workers else ""
    backend = f" (hardware.vector_backend={hw.vector_backend} unused: each worker steps its envs in turn)" \
        if hw.vector_backend != "sync" else ""
    wait = f" ({openmp.note})" if overlap and openmp.note else ""
    return (f"{num_envs} envs stepped by {workers} sampler worker process{'es' * (workers > 1)}{capped}{backend}, "
            f"{'overlapping' if overlap else 'then'} the learner's update, {threads}{wait}")


def describe(hw: Hardware) -> dict:
    info = {"device": str(hw.device), "torch_threads": hw.torch_threads, "vector_backend": hw.vector_backend,
            "workers": hw.workers, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}
    if hw.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(hw.device)
    return info
