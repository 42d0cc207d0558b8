"""Hardware profiles: where the learner runs, how many torch threads, how envs are stepped."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass

import torch

from rlrun.config import POSITIVE, ConfigError, from_config, one_of, rule


@dataclass
class HardwareConfig:
    device: str
    torch_threads: int = rule(POSITIVE)
    vector_backend: str = rule(one_of("sync", "async", "envpool"))
    workers: int = rule(POSITIVE)


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
    return Hardware(device, hw.torch_threads, hw.vector_backend, hw.workers)


def apply(hw: Hardware) -> None:
    """Set process-wide torch state for this run (again per job: multirun jobs share a process)."""
    torch.set_num_threads(hw.torch_threads)


def describe(hw: Hardware) -> dict:
    info = {"device": str(hw.device), "torch_threads": hw.torch_threads, "vector_backend": hw.vector_backend,
            "workers": hw.workers, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine()}
    if hw.device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(hw.device)
    return info
