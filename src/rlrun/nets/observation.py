"""rlrun.envs.spaces' observation transform and the frozen observation normalisation as one torch
module, for exported policies: raw observations of the env's space in, what the networks read out."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rlrun.envs.normalize import DictRunningMeanStd, RunningMeanStd
from rlrun.envs.spaces import ObservationTransform


class ObservationInput(nn.Module):
    """One Box/Discrete/MultiBinary observation (a batch): transform, then (x - mean) / std clipped."""

    def __init__(self, transform: ObservationTransform, obs_rms: RunningMeanStd | None, clip_obs: float):
        super().__init__()
        self.kind = transform.kind
        self.num_classes = int(transform.space.shape[0]) if self.kind == "one_hot" else 0
        self.start = int(getattr(transform.source, "start", 0)) if self.kind == "one_hot" else 0
        self.normalize = obs_rms is not None
        if obs_rms is not None:
            self.register_buffer("mean", torch.as_tensor(obs_rms.mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(np.sqrt(obs_rms.var + 1e-8), dtype=torch.float32))
        self.clip_obs = float(clip_obs)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.kind == "channels_first":
            obs = obs.permute(0, 3, 1, 2)
        elif self.kind == "flatten":
            obs = obs.flatten(1)
        elif self.kind == "one_hot":
            obs = F.one_hot(obs.long() - self.start, self.num_classes)
        elif self.kind == "bits":
            obs = obs.flatten(1)
        x = obs.float()
        if self.normalize:
            x = ((x - self.mean) / self.std).clamp(-self.clip_obs, self.clip_obs)
        return x


class DictObservationInput(nn.Module):
    """Dict observations, given as one tensor per key in the Dict's key order (ONNX inputs are positional):
    each key transformed; vector keys normalised with their frozen statistics, image keys left as they are."""

    def __init__(self, transform: ObservationTransform, obs_rms: DictRunningMeanStd | None, clip_obs: float):
        super().__init__()
        self.keys = list(transform.keys)
        stats = obs_rms.stats if obs_rms is not None else {}
        self.inputs = nn.ModuleList([ObservationInput(transform.keys[key], stats.get(key), clip_obs)
                                     for key in self.keys])

    def forward(self, *obs: torch.Tensor) -> dict[str, torch.Tensor]:
        return {key: module(x) for key, module, x in zip(self.keys, self.inputs, obs)}


def observation_input(transform: ObservationTransform, obs_rms, clip_obs: float) -> nn.Module:
    if transform.keys is not None:
        return DictObservationInput(transform, obs_rms, clip_obs)
    return ObservationInput(transform, obs_rms, clip_obs)
