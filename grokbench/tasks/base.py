"""What a task is: its data, its model, its grokking threshold and its default training settings."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from grokbench.config import TrialConfig


class DataError(RuntimeError):
    """The task's data cannot be found or fetched; the message says where to put it."""


def data_root(cfg: TrialConfig) -> Path:
    """--data-dir, else $GROKBENCH_DATA, else a per-user cache directory."""
    if cfg.data_dir:
        return Path(cfg.data_dir).expanduser().resolve()
    if os.environ.get("GROKBENCH_DATA"):
        return Path(os.environ["GROKBENCH_DATA"]).expanduser().resolve()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "grokbench" / "data"


@dataclass(frozen=True)
class TaskDefaults:
    """Training settings a task brings; `TrialConfig` fields left as None take these values."""

    loss: str
    init_scale: float
    lr: float
    optimizer: str
    weight_decay: float
    batch_size: int
    max_epochs: int
    eval_every: int
    dtype: str
    noise_std: float


@dataclass(frozen=True)
class TaskData:
    """Train and test tensors (on the CPU, in the trial's dtype); targets are class indices or ±1 scalars."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    defaults: TaskDefaults
    losses: tuple[str, ...]
    train_size: int
    grok_threshold: float  # grokked at the first evaluation with test accuracy strictly above this
    load_data: Callable[[TrialConfig], TaskData]
    build_model: Callable[[TrialConfig], nn.Module]
    # robustness probe: the perturbation of size `noise_std` under which test accuracy is measured
    perturb: Callable[[torch.Tensor, float, torch.Generator], torch.Tensor] = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.perturb is None:
            object.__setattr__(self, "perturb", gaussian_noise)


def gaussian_noise(x: torch.Tensor, std: float, generator: torch.Generator) -> torch.Tensor:
    """x + std·N(0, I), drawn in float32 (several times cheaper than float64) and cast."""
    noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=torch.float32)
    return x + noise.to(x.dtype).mul_(std)


def scale_weights(model: nn.Module, init_scale: float) -> nn.Module:
    """Multiply every parameter by the initialisation scale α (after PyTorch's default initialisation)."""
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(init_scale)
    return model


def mlp(widths: list[int], dtype: torch.dtype) -> nn.Sequential:
    """A bias-free ReLU MLP with the given layer widths, PyTorch's default initialisation, on the CPU."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        if i:
            layers.append(nn.ReLU())
        layers.append(nn.Linear(n_in, n_out, bias=False, dtype=dtype))
    return nn.Sequential(*layers)
